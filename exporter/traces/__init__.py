"""Run traces over OTLP: Letta's own ``/trace`` rows re-emitted with their original IDs,
or a trace synthesised from the run and its steps where Letta has none.

``rows`` turns ClickHouse ``otel_traces`` rows into spans, ``synth`` builds spans from a run,
``spans`` holds what both share (IDs, attribute values, limits, the deny list), ``availability``
remembers whether Letta has trace storage at all (501), and ``pipeline`` queues and exports.
"""
