"""The bundled price table: genai-prices (pydantic's maintained table of LLM prices, MIT), read from
the package installed with the exporter. Nothing is fetched: the package's opt-in updater
(``UpdatePrices``) is never started, so prices change only when the package is upgraded
(docs/cost.md, "The price table").

The table keeps each model's price history (a price with the date it took effect) and its long-prompt
tiers; ``TableEntry.at`` picks the price in force on a date and turns it into a ``Price`` once, so
later runs of the same model and price cost a dict hit.
"""

from __future__ import annotations

from datetime import datetime
from importlib.metadata import version
from typing import Any

from genai_prices import data_snapshot
from genai_prices.types import ModelInfo, TieredPrices

from exporter.cost.rates import Price, Rates, rates

# Our rates and the table's price keys, in US dollars per million tokens. Cache writes are priced at
# the table's default (5-minute) cache-write rate: Letta does not say which cache a write went to.
PRICE_KEYS = {
    "input": "input_mtok",
    "output": "output_mtok",
    "cache_read": "cache_read_mtok",
    "cache_write": "cache_write_mtok",
    "reasoning": "output_reasoning_mtok",
}


def table_version() -> str:
    return version("genai-prices")


class TableEntry:
    """One model of the table."""

    def __init__(self, model: ModelInfo) -> None:
        self.model = model
        # The table's price objects, by identity, and what each becomes: the table returns the same
        # object for every date it is in force, so this holds one entry per price the model has had.
        self._prices: dict[int, tuple[object, Price | None]] = {}

    def at(self, when: datetime) -> Price | None:
        """The price in force at ``when``; None when the table gives the model no token price."""
        found = self.model.get_prices(when)
        kept = self._prices.get(id(found))
        if kept is None:
            kept = self._prices[id(found)] = (found, _price(found))
        return kept[1]


class PriceTable:
    def __init__(self, snapshot: data_snapshot.DataSnapshot | None = None) -> None:
        self._snapshot = snapshot or data_snapshot.get_snapshot()

    def find(self, provider: str | None, model: str) -> TableEntry | None:
        """The table's entry for ``model`` at ``provider`` (a table provider ID), or for the model
        name alone when the provider is not known; None when the table has no such model."""
        try:
            _, info = self._snapshot.find_provider_model(model, None, provider, None)
        except LookupError:
            return None
        return TableEntry(info)


def _price(found: Any) -> Price | None:
    values = {ours: getattr(found, theirs, None) for ours, theirs in PRICE_KEYS.items()}
    if values["input"] is None or values["output"] is None:
        return None  # priced per request, per image, ...: not by the tokens Letta reports
    starts = sorted(
        {tier.start for value in values.values() if isinstance(value, TieredPrices) for tier in value.tiers}
    )
    return Price(_rates(values, None), tuple((start, _rates(values, start)) for start in starts))


def _rates(values: dict[str, Any], above: int | None) -> Rates:
    got = {key: _rate(value, above) for key, value in values.items()}
    return rates(got.pop("input") or 0.0, got.pop("output") or 0.0, **got)


def _rate(value: Any, above: int | None) -> float | None:
    """A rate for prompts just above ``above`` tokens (None: below every tier)."""
    if value is None:
        return None
    if not isinstance(value, TieredPrices):
        return float(value)
    price = value.base
    for tier in value.tiers:  # ascending; a tier applies to prompts above its start
        if above is not None and tier.start <= above:
            price = tier.price
    return float(price)
