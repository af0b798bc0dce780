"""A run's cost, step by step, from the operator's price file, then the bundled table (docs/cost.md).

Where a step's model gets its price is decided once per distinct naming (provider, model, handle) and
kept, so pricing a step is a dict hit and ``rates.step_cost``. A step whose model has no price is
never priced at zero in silence: its tokens are counted as unpriced, by model and type, and the log
says so once per model, with the reason and where to give it a price.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from exporter.cost import providers
from exporter.cost.price_file import PriceFile
from exporter.cost.providers import StepModel
from exporter.cost.rates import FREE, Price, step_cost
from exporter.cost.table import PriceTable, table_version
from exporter.families import COST, UNPRICED
from exporter.figures import step_tokens
from exporter.letta.models import Run, Step

log = logging.getLogger(__name__)

# Distinct model namings looked up and kept, and unpriced models said in the log. Past this, a server
# inventing model names gets its new ones unpriced: neither this cache nor the table's own grows.
MAX_KEPT = 10_000


class PriceSource(Protocol):
    def at(self, when: datetime) -> Price | None: ...


@dataclass(frozen=True, slots=True, eq=False)
class FixedPrice:
    """A price that does not change with the date: the price file's, Letta's free model."""

    price: Price

    def at(self, when: datetime) -> Price | None:
        return self.price


@dataclass(frozen=True, slots=True)
class _Found:
    labels: tuple[str, str]  # (model, provider)
    source: PriceSource | None  # None: unpriced


@dataclass(frozen=True)
class RunCost:
    """What a run's steps cost, as the run records it."""

    usd: dict[tuple[str, str], float]  # (model, provider) -> US dollars
    # (model, type) -> tokens of steps without a price; 0 for each type a priced model used, so a
    # model's series exist (and read 0) as soon as it is seen.
    unpriced_tokens: dict[tuple[str, str], int]


class Pricing:
    def __init__(self, price_file: PriceFile | None = None, table: PriceTable | None = None) -> None:
        self.file = price_file
        self.table = table
        self._found: dict[tuple[str | None, str | None, str | None], _Found] = {}
        self._said: set[tuple[str, str]] = set()

    @classmethod
    def build(cls, price_file: PriceFile | None) -> Pricing:
        """With the bundled table, unless the price file says ``table: false``."""
        return cls(price_file, PriceTable() if price_file is None or price_file.table else None)

    def describe(self) -> str:
        """Where prices come from, for the start-up log."""
        parts = [f"the price file ({len(self.file)} entries)"] if self.file is not None else []
        if self.table is not None:
            parts.append(f"the genai-prices {table_version()} table bundled with the exporter")
        return ", then ".join(parts) or "nowhere (every model unpriced)"

    def price_run(self, run: Run, steps: Iterable[Step]) -> RunCost:
        # Dated prices are those in force when the run ended: its steps ran just before.
        when = run.completed_at or run.created_at or datetime.now(UTC)
        usd: dict[tuple[str, str], float] = {}
        unpriced: dict[tuple[str, str], int] = {}
        prices: dict[PriceSource, Price | None] = {}
        for step in steps:
            found = self._find(step)
            price = None
            if found.source is not None:
                if found.source not in prices:  # once a run: its steps share the date
                    prices[found.source] = found.source.at(when)
                    if prices[found.source] is None:
                        self._say(found, "the price table has no price per token for it")
                price = prices[found.source]
            model = found.labels[0]
            tokens = step_tokens(step)
            if price is None:
                for token_type, count in tokens.items():
                    if count:
                        unpriced[(model, token_type)] = unpriced.get((model, token_type), 0) + count
                continue
            usd[found.labels] = usd.get(found.labels, 0.0) + step_cost(price, tokens)
            for token_type, count in tokens.items():
                if count:
                    unpriced.setdefault((model, token_type), 0)
        return RunCost(usd, unpriced)

    def _find(self, step: Step) -> _Found:
        key = (step.provider_name, step.model, step.model_handle)
        found = self._found.get(key)
        if found is None:
            named = StepModel.of(step)
            if len(self._found) >= MAX_KEPT:
                found = _Found(named.labels, None)
                self._say(found, f"the exporter has seen over {MAX_KEPT} distinct model names")
                return found
            found = self._found[key] = self._look_up(named)
        return found

    def _look_up(self, named: StepModel) -> _Found:
        source, why = self._source(named)
        found = _Found(named.labels, source)
        if source is None:
            self._say(found, why)
        return found

    def _source(self, named: StepModel) -> tuple[PriceSource | None, str]:
        """The model's price source, or None and why it has none."""
        if self.file is not None and (price := self.file.find(named.file_keys())) is not None:
            return FixedPrice(price), ""
        if named.named(providers.FREE):
            return FixedPrice(FREE), ""
        if named.named(providers.SELF_HOSTED):
            return None, "a self-hosted model has no list price"
        if self.table is None:
            return None, "the price file does not list it and says table: false"
        known, provider = named.table_provider()
        if not known:
            return None, f"the exporter does not know which price table provider {named.provider!r} is"
        if not named.model:
            return None, "the step names no model"
        entry = self.table.find(provider, named.model)
        if entry is None:
            return None, f"the price table has no {named.model!r} at {provider or 'any provider'}"
        return entry, ""

    def _say(self, found: _Found, why: str) -> None:
        model, provider = found.labels
        if found.labels in self._said or len(self._said) >= MAX_KEPT:
            return
        self._said.add(found.labels)
        log.warning(
            'no price for model %r (provider %r): %s. Its tokens are counted in %s{model="%s"}, not in %s; '
            "give it a price in LETTA_EXPORTER_PRICE_FILE (docs/cost.md)",
            model, provider, why, UNPRICED.exposed, model, COST.exposed,
        )  # fmt: skip
