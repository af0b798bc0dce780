"""Benchmark harness for letta-exporter (issue 7): throughput, offered load, memory, /metrics latency.

Run ``python -m bench`` (``--quick`` for about a minute); see docs/bench.md.
"""
