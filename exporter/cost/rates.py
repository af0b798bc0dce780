"""A model's price and what a step's tokens cost at it (docs/cost.md, "The arithmetic").

Letta's token types overlap (exporter/figures.py, ``OVERLAPPING_TOKEN_TYPES``): cache reads and
cache writes are inside ``prompt``, reasoning is inside ``completion``, and ``cached`` and
``cache_read`` are two names for the same cache reads. So a step is priced as

    (prompt - cache reads - cache writes) x input + cache reads x cache_read
    + cache writes x cache_write + (completion - reasoning) x output + reasoning x reasoning

where a rate a price does not give falls back to what the provider charges without it: cache reads
and writes at the input rate, reasoning at the output rate (so the last two terms are
completion x output for a model that does not price reasoning apart).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PER_MILLION = 1e-6


@dataclass(frozen=True, slots=True)
class Rates:
    """US dollars per million tokens, every rate filled in (``rates`` applies the fallbacks)."""

    input: float
    output: float
    cache_read: float
    cache_write: float
    reasoning: float


def rates(
    input: float,
    output: float,
    cache_read: float | None = None,
    cache_write: float | None = None,
    reasoning: float | None = None,
) -> Rates:
    """Rates with the fallbacks applied once, so pricing a step needs no branch per rate."""
    return Rates(
        input=input,
        output=output,
        cache_read=input if cache_read is None else cache_read,
        cache_write=input if cache_write is None else cache_write,
        reasoning=output if reasoning is None else reasoning,
    )


@dataclass(frozen=True, slots=True)
class Price:
    """A model's rates, and the tiers that replace them for long prompts: a step whose prompt is
    above a tier's ``above`` tokens pays that tier's rates on all of its tokens (the "cliff" that
    Anthropic and Google price long contexts with)."""

    base: Rates
    tiers: tuple[tuple[int, Rates], ...] = ()  # (above, rates), ``above`` ascending

    def rates_for(self, prompt: int) -> Rates:
        for above, tier in reversed(self.tiers):
            if prompt > above:
                return tier
        return self.base


FREE = Price(Rates(0.0, 0.0, 0.0, 0.0, 0.0))


def step_cost(price: Price, tokens: Mapping[str, int]) -> float:
    """US dollars for one step's tokens by type (``figures.step_tokens``)."""
    prompt, completion = tokens["prompt"], tokens["completion"]
    read = max(tokens["cache_read"], tokens["cached"])  # one figure under two names: never both
    write = tokens["cache_creation"]
    reasoning = min(tokens["reasoning"], completion)
    # A server that reports more cache tokens than prompt tokens leaves no uncached part, not less.
    uncached = max(prompt - read - write, 0)
    r = price.rates_for(prompt)
    return (
        uncached * r.input
        + read * r.cache_read
        + write * r.cache_write
        + (completion - reasoning) * r.output
        + reasoning * r.reasoning
    ) * PER_MILLION
