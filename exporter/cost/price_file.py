"""The operator's own prices (``LETTA_EXPORTER_PRICE_FILE``, docs/cost.md "The price file"): negotiated
or BYOK prices, custom and self-hosted models. They win over the bundled table.

    # US dollars per million tokens
    models:
      openai/gpt-4o-mini: {input: 0.15, output: 0.60, cache_read: 0.075}
      "ollama/*": {input: 0, output: 0}      # globs: * ? [...]

A key is a model handle (``openai/gpt-4o-mini``), ``<provider>/<model>`` or a model name alone,
matched without case; exact keys win over globs, and globs are tried in the file's order.
``table: false`` prices only what the file lists (every other model is unpriced).
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from exporter.cost.rates import Price, rates

Usd = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_GLOB = frozenset("*?[")


class PriceFileError(ValueError):
    """A price file that cannot be used: one line saying where and what."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Tier(_Strict):
    above: int = Field(ge=0, description="prompt tokens above which this tier's rates apply")
    input: Usd | None = None
    output: Usd | None = None
    cache_read: Usd | None = None
    cache_write: Usd | None = None
    reasoning: Usd | None = None


class _Model(_Strict):
    input: Usd
    output: Usd
    cache_read: Usd | None = None
    cache_write: Usd | None = None
    reasoning: Usd | None = None
    tiers: list[_Tier] = []

    @model_validator(mode="after")
    def _ascending(self) -> _Model:
        aboves = [tier.above for tier in self.tiers]
        if aboves != sorted(set(aboves)):
            raise ValueError("tiers must be in increasing order of 'above', each once")
        return self

    def price(self) -> Price:
        given = self.model_dump(exclude={"tiers"})
        tiers = []
        for tier in self.tiers:
            # A tier lists the rates that change; the others stay the model's own.
            changed = {k: v for k, v in tier.model_dump(exclude={"above"}).items() if v is not None}
            tiers.append((tier.above, rates(**{**given, **changed})))
        return Price(rates(**given), tuple(tiers))


class _File(_Strict):
    table: bool = True  # price models the file does not list from the bundled table
    models: dict[str, _Model] = {}


class PriceFile:
    """The file's prices, looked up by a step's keys (``StepModel.file_keys``)."""

    def __init__(self, exact: dict[str, Price], globs: list[tuple[str, Price]], table: bool) -> None:
        self.exact = exact
        self.globs = globs
        self.table = table

    def __len__(self) -> int:
        return len(self.exact) + len(self.globs)

    def find(self, keys: tuple[str, ...]) -> Price | None:
        for key in keys:
            if key in self.exact:
                return self.exact[key]
        for pattern, price in self.globs:
            if any(fnmatch.fnmatchcase(key, pattern) for key in keys):
                return price
        return None


def parse_price_file(data: Any) -> PriceFile:
    try:
        parsed = _File.model_validate(data if data is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        raise PriceFileError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
    exact: dict[str, Price] = {}
    globs: list[tuple[str, Price]] = []
    seen: set[str] = set()
    for key, model in parsed.models.items():
        name = key.strip().lower()
        if name in seen:
            raise PriceFileError(f"models.{key}: listed twice (keys are matched without case)")
        seen.add(name)
        if _GLOB & set(name):
            globs.append((name, model.price()))
        else:
            exact[name] = model.price()
    return PriceFile(exact, globs, parsed.table)


def load_price_file(path: Path) -> PriceFile:
    """The file at ``path`` (JSON when it ends in .json, else YAML), or PriceFileError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PriceFileError(f"cannot read {path} ({exc.strerror})") from None
    kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise PriceFileError(f"{path} is not valid {kind}: {_syntax_error(exc)}") from None
    return parse_price_file(data)


def _syntax_error(exc: Exception) -> str:
    """Where and what, on one line (as every start-up error is said)."""
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.MarkedYAMLError) and mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return " ".join(str(exc).split())
