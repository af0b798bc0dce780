"""What finished runs cost, in US dollars (docs/cost.md).

Each step of a run is priced when the run is recorded: ``rates`` holds a price and the arithmetic
over Letta's overlapping token types, ``table`` reads the bundled price table (genai-prices),
``price_file`` the operator's own prices, ``providers`` maps Letta's provider and model names to
the table's, and ``pricing`` puts them together with a lookup cache, so that a step costs a dict hit
and a few multiplications.
"""
