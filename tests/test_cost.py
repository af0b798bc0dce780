"""Cost in US dollars (docs/cost.md): steps priced when their run is recorded, from the operator's
price file, then the bundled table (genai-prices), with Letta's names mapped to the table's, and
models without a price counted as unpriced tokens and said once in the log.

Expectations come from outside the exporter's pricing code: the providers' published prices, the
table's own arithmetic (``genai_prices.calc_price``), or the simulator's ground truth priced by hand
(``expected_cost``). The last test is the integration tier: a real Prometheus scraping the real
exporter process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from genai_prices import Usage, calc_price

from exporter.config import ConfigError, load_settings
from exporter.cost import pricing as pricing_module
from exporter.cost.price_file import PriceFileError, load_price_file, parse_price_file
from exporter.cost.pricing import Pricing
from exporter.cost.providers import StepModel
from exporter.cost.table import PriceTable
from exporter.letta.models import Run, Step
from tests.support import (
    ROOT,
    ExporterProcess,
    make_exporter,
    poll_new_runs,
    run,
    runs_counted,
    select,
    served_samples,
    settle,
    wait_for,
)

REAL = ROOT / "tests" / "fixtures" / "letta-real"
REAL_0_11 = ROOT / "tests" / "fixtures" / "letta-real-0.11.7"
MILLION = 1_000_000
ENDED = datetime(2026, 11, 22, 17, 50, tzinfo=UTC)

# Published list prices, US dollars per million tokens (the providers' pricing pages).
PUBLISHED = {
    ("openai", "gpt-4o-mini"): {"input": 0.15, "output": 0.60, "cache_read": 0.075},
    ("anthropic", "claude-sonnet-4-5"): {
        "input": 3.0,
        "output": 15.0,
        "cache_read": 0.30,
        "cache_write": 3.75,
    },
}
# Claude Sonnet 4.5 above 200k prompt tokens (its long-context price).
SONNET_LONG = {"input": 6.0, "output": 22.5}


def step(**fields: Any) -> Step:
    return Step.model_validate(fields)


def ended_run(when: datetime = ENDED) -> Run:
    return Run(id="run-1", status="completed", created_at=when, completed_at=when)


def priced(pricing: Pricing, *steps: Step, when: datetime = ENDED) -> dict[tuple[str, str], float]:
    return pricing.price_run(ended_run(when), steps).usd


def real_steps(directory: Path, pattern: str) -> list[Step]:
    steps = []
    for path in sorted(directory.glob(pattern)):
        doc = json.loads(path.read_text())
        if isinstance(doc, list):  # some 0.11.7 captures are the bare body
            doc = {"status": 200, "body": doc}
        if doc["status"] == 200:
            steps += [Step.model_validate(item) for item in doc["body"]]
    return [s for s in steps if s.model]


@pytest.fixture(scope="module")
def table_pricing() -> Pricing:
    return Pricing.build(None)


def table_price(s: Step, provider: str, when: datetime = ENDED) -> float:
    """The table's own arithmetic for one step (Usage counts cache reads and writes inside input)."""
    details = s.prompt_tokens_details
    usage = Usage(
        input_tokens=s.prompt_tokens or 0,
        cache_read_tokens=(details.cache_read_tokens if details else None) or s.cached_input_tokens or 0,
        cache_write_tokens=(details.cache_creation_tokens if details else None) or s.cache_write_tokens or 0,
        output_tokens=s.completion_tokens or 0,
    )
    return float(calc_price(usage, s.model, provider_id=provider, genai_request_timestamp=when).total_price)


# ---------------------------------------------------------------------------------------------------
# The default table


@pytest.mark.parametrize("key", PUBLISHED, ids=lambda key: key[1])
def test_the_default_table_prices_common_models_at_their_published_rates(table_pricing, key) -> None:
    provider, model = key
    n = 100_000  # under every long-prompt tier
    one_type = {
        "input": step(prompt_tokens=n, completion_tokens=0),
        "output": step(prompt_tokens=0, completion_tokens=n),
        "cache_read": step(prompt_tokens=n, completion_tokens=0, cached_input_tokens=n),
        "cache_write": step(prompt_tokens=n, completion_tokens=0, cache_write_tokens=n),
    }
    for rate, published in PUBLISHED[key].items():
        shaped = one_type[rate].model_copy(update={"provider_name": provider, "model": model})
        (usd,) = priced(table_pricing, shaped).values()
        assert usd * MILLION / n == pytest.approx(published, rel=1e-9), rate


def test_a_long_prompt_pays_the_long_context_tier_on_all_its_tokens(table_pricing) -> None:
    base, long = PUBLISHED[("anthropic", "claude-sonnet-4-5")], SONNET_LONG
    for prompt, rates in ((200_000, base), (200_001, long)):  # the tier starts above 200k
        s = step(provider_name="anthropic", model="claude-sonnet-4-5", prompt_tokens=prompt,
                 completion_tokens=1000)  # fmt: skip
        (usd,) = priced(table_pricing, s).values()
        assert usd == pytest.approx((prompt * rates["input"] + 1000 * rates["output"]) / MILLION, rel=1e-9)


def test_dated_prices_are_those_in_force_when_the_run_ended(table_pricing) -> None:
    """OpenAI cut o3's price on 2025-06-10; DeepSeek prices its chat model by the time of day."""
    o3 = step(provider_name="openai", model="o3", prompt_tokens=MILLION, completion_tokens=MILLION)
    before, after = datetime(2025, 6, 1, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)
    assert priced(table_pricing, o3, when=before)[("o3", "openai")] == pytest.approx(10 + 40)
    assert priced(table_pricing, o3, when=after)[("o3", "openai")] == pytest.approx(2 + 8)
    chat = step(provider_name="deepseek", model="deepseek-chat", prompt_tokens=MILLION, completion_tokens=1)
    costs = set()
    for hour in (2, 20):
        when = datetime(2026, 11, 22, hour, tzinfo=UTC)
        usd = priced(table_pricing, chat, when=when)[("deepseek-chat", "deepseek")]
        assert usd == pytest.approx(table_price(chat, "deepseek", when), rel=1e-9)
        costs.add(round(usd, 9))
    assert len(costs) == 2  # two prices, each where the table has it


@pytest.mark.parametrize(
    "directory, pattern", [(REAL, "*_steps.json"), (REAL_0_11, "*steps*.json")], ids=["0.16.8", "0.11.7"]
)
def test_real_step_shapes_cost_what_the_tables_own_arithmetic_says(table_pricing, directory, pattern) -> None:
    steps = real_steps(directory, pattern)
    assert steps and any(s.prompt_tokens for s in steps)
    cost = table_pricing.price_run(ended_run(), steps)
    expected = sum(table_price(s, "openai") for s in steps)
    assert expected > 0
    assert cost.usd == {("gpt-4o-mini", "openai"): pytest.approx(expected, rel=1e-9)}


# ---------------------------------------------------------------------------------------------------
# Letta's names and the table's


REAL_STEP = real_steps(REAL, "*_steps.json")[0]


def named(provider: str | None, model: str | None, handle: str | None) -> Step:
    """A real 0.16.8 step, as another provider and model would write it."""
    return REAL_STEP.model_copy(update={"provider_name": provider, "model": model, "model_handle": handle})


@pytest.mark.parametrize(
    "provider, model, handle, table_provider",
    [
        ("openai", "gpt-4o-mini", "openai/gpt-4o-mini", "openai"),
        ("openai", "gpt-4o-mini", "openai-proxy/gpt-4o-mini", "openai"),  # an OpenAI-compatible endpoint
        ("anthropic", "claude-sonnet-4-5-20250929", "anthropic/claude-sonnet-4-5-20250929", "anthropic"),
        ("google_ai", "gemini-2.5-flash", "google_ai/gemini-2.5-flash", "google"),
        ("google_vertex", "gemini-2.5-pro", "google_vertex/gemini-2.5-pro", "google"),
        ("xai", "grok-4", "xai/grok-4", "x-ai"),
        ("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo",
         "together/meta-llama/Llama-3.3-70B-Instruct-Turbo", "together"),
        ("azure", "gpt-4o-mini", "my-azure/gpt-4o-mini", "azure"),
        ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
         "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "aws"),
        ("groq", "llama-3.3-70b-versatile", "groq/llama-3.3-70b-versatile", "groq"),
        ("deepseek", "deepseek-chat", "deepseek/deepseek-chat", "deepseek"),
        (None, "gpt-4o-mini", None, None),  # no provider said: the table finds it by the model
        (None, None, "openai/gpt-4o-mini", "openai"),  # only a handle
    ],
)  # fmt: skip
def test_letta_provider_and_model_names_map_to_the_tables(
    table_pricing, provider, model, handle, table_provider
) -> None:
    s = named(provider, model, handle)
    cost = table_pricing.price_run(ended_run(), [s])
    labels = (s.model_label, provider or (handle or "").partition("/")[0] or "unknown")
    model_name = model or handle.partition("/")[2]
    expected = table_price(s.model_copy(update={"model": model_name}), table_provider)
    assert expected > 0
    assert cost.usd == {labels: pytest.approx(expected, rel=1e-9)}
    assert not any(cost.unpriced_tokens.values())


@pytest.mark.parametrize(
    "provider, model, handle",
    [
        ("ollama", "llama3.1:8b", "ollama/llama3.1:8b"),
        ("vllm", "gpt-4o-mini", "vllm/gpt-4o-mini"),  # self-hosted, whatever the model is called
        ("lmstudio_openai", "qwen2.5-7b-instruct", "lmstudio/qwen2.5-7b-instruct"),
        ("openai", "my-finetune-xyz", "openai/my-finetune-xyz"),  # not in the table
        ("chatgpt_oauth", "gpt-5", "chatgpt-plus/gpt-5"),  # a subscription, not a price per token
        ("some-new-provider", "gpt-4o-mini", "some-new-provider/gpt-4o-mini"),  # never guessed
    ],
)
def test_models_without_a_price_are_counted_as_unpriced_tokens(
    table_pricing, provider, model, handle
) -> None:
    s = named(provider, model, handle)
    cost = table_pricing.price_run(ended_run(), [s])
    assert cost.usd == {}
    tokens = {t: n for t, n in {"prompt": s.prompt_tokens, "completion": s.completion_tokens}.items()}
    for token_type, count in tokens.items():
        assert cost.unpriced_tokens[(model, token_type)] == count


def test_letta_free_model_costs_nothing_and_says_so(table_pricing) -> None:
    for provider, model, handle in (("letta", "letta-free", "letta/letta-free"),
                                    ("openai", "memgpt-openai", "letta/letta-free")):  # fmt: skip
        cost = table_pricing.price_run(ended_run(), [named(provider, model, handle)])
        assert cost.usd == {(model, provider): 0.0}  # a series at zero, not a missing one
        assert not any(cost.unpriced_tokens.values())


def test_a_lookup_is_a_dict_hit_after_the_first(monkeypatch) -> None:
    table = PriceTable()
    looked_up = Counter()
    find = table.find
    monkeypatch.setattr(table, "find", lambda p, m: looked_up.update([(p, m)]) or find(p, m))
    pricing = Pricing(None, table)
    steps = [named("openai", "gpt-4o-mini", "openai/gpt-4o-mini"), named("ollama", "x", "ollama/x")]
    for _ in range(50):
        pricing.price_run(ended_run(), steps)
    assert looked_up == {("openai", "gpt-4o-mini"): 1}


def test_invented_model_names_grow_no_cache_past_the_bound(monkeypatch) -> None:
    monkeypatch.setattr(pricing_module, "MAX_KEPT", 2)
    pricing = Pricing(None, PriceTable())
    models = ["gpt-4o-mini", "gpt-4o", "gpt-4.1"]  # all in the table
    cost = pricing.price_run(ended_run(), [named("openai", m, None) for m in models])
    assert set(cost.usd) == {("gpt-4o-mini", "openai"), ("gpt-4o", "openai")}
    assert cost.unpriced_tokens[("gpt-4.1", "prompt")] == REAL_STEP.prompt_tokens
    assert len(pricing._found) == 2


# ---------------------------------------------------------------------------------------------------
# The operator's price file


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("LETTA")}


def write_prices(tmp_path: Path, prices: dict[str, Any], name: str = "prices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(prices) if name.endswith(".json") else yaml.safe_dump(prices))
    return path


def test_the_price_file_wins_over_the_table_and_prices_what_it_lacks(tmp_path) -> None:
    path = write_prices(tmp_path, {"models": {
        "OpenAI/GPT-4o-mini": {"input": 0.1, "output": 0.4},  # keys are matched without case
        "ollama/*": {"input": 0, "output": 0},  # a glob: every model on ollama
        "my-finetune": {"input": 1, "output": 2, "tiers": [{"above": 1000, "input": 5}]},
    }})  # fmt: skip
    pricing = Pricing.build(load_price_file(path))
    gpt = named("openai", "gpt-4o-mini", "openai/gpt-4o-mini")
    p, c = gpt.prompt_tokens, gpt.completion_tokens
    assert priced(pricing, gpt) == {("gpt-4o-mini", "openai"): pytest.approx((p * 0.1 + c * 0.4) / MILLION)}
    assert priced(pricing, named("ollama", "llama3.1:8b", "ollama/llama3.1:8b")) == {
        ("llama3.1:8b", "ollama"): 0.0
    }
    tuned = named("openai", "my-finetune", "openai/my-finetune")
    for prompt, input_rate in ((1000, 1), (1001, 5)):  # the tier changes input only
        s = tuned.model_copy(update={"prompt_tokens": prompt, "completion_tokens": 10})
        assert priced(pricing, s) == {
            ("my-finetune", "openai"): pytest.approx((prompt * input_rate + 20) / MILLION)
        }
    # Still the table for the rest.
    sonnet = named("anthropic", "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5")
    assert priced(pricing, sonnet)[("claude-sonnet-4-5", "anthropic")] == pytest.approx(
        table_price(sonnet, "anthropic"), rel=1e-9
    )


def test_price_file_keys_from_most_to_least_specific() -> None:
    prices = parse_price_file({"models": {
        "gpt-4o-mini": {"input": 1, "output": 1},
        "openai/gpt-4o-mini": {"input": 2, "output": 2},
        "openai-proxy/gpt-4o-mini": {"input": 3, "output": 3},
        "gpt-*": {"input": 4, "output": 4},
    }})  # fmt: skip

    def rate(provider: str | None, model: str | None, handle: str | None) -> float | None:
        found = prices.find(StepModel.of(named(provider, model, handle)).file_keys())
        return found.base.input if found else None

    assert rate("openai", "gpt-4o-mini", "openai-proxy/gpt-4o-mini") == 3  # the handle
    assert rate("openai", "gpt-4o-mini", "byok-openai/gpt-4o-mini") == 2  # provider/model
    assert rate("azure", "gpt-4o-mini", "azure/gpt-4o-mini") == 1  # the model alone
    assert rate("azure", "gpt-4.1", "azure/gpt-4.1") == 4  # then the globs
    assert rate("azure", "o3", "azure/o3") is None


def test_table_false_prices_only_the_files_models(tmp_path) -> None:
    path = write_prices(tmp_path, {"table": False, "models": {"gpt-4o-mini": {"input": 1, "output": 1}}})
    pricing = Pricing.build(load_price_file(path))
    assert pricing.table is None
    sonnet = named("anthropic", "claude-sonnet-4-5", "anthropic/claude-sonnet-4-5")
    assert pricing.price_run(ended_run(), [sonnet]).usd == {}


@pytest.mark.parametrize(
    "prices, says",
    [
        ({"models": {"gpt-4o-mini": {"input": 1}}}, "models.gpt-4o-mini.output: Field required"),
        ({"models": {"gpt-4o-mini": {"input": -1, "output": 1}}}, "greater than or equal to 0"),
        ({"models": {"gpt-4o-mini": {"input": 1, "output": 1, "cached": 1}}}, "cached: Extra inputs"),
        ({"models": {"x": {"input": 1, "output": 1, "tiers": [{"above": 9}, {"above": 5}]}}}, "increasing"),
        ({"models": {"X": {"input": 1, "output": 1}, "x": {"input": 1, "output": 1}}}, "listed twice"),
        ({"model": {}}, "model: Extra inputs"),
        ({"models": {"x": {"input": "cheap", "output": 1}}}, "models.x.input"),
    ],
)
def test_a_bad_price_file_is_refused_saying_where(prices, says) -> None:
    with pytest.raises(PriceFileError, match=says):
        parse_price_file(prices)


def test_a_bad_price_file_stops_start_up_with_one_line_naming_the_setting(tmp_path) -> None:
    (tmp_path / "prices.yaml").write_text("models:\n  gpt-4o-mini: {input: 0.1, output: 0.4\n")
    with pytest.raises(ConfigError, match=r"^invalid setting LETTA_EXPORTER_PRICE_FILE \(--price-file\): "):
        load_settings({"price_file": tmp_path / "prices.yaml"})
    result = subprocess.run(
        [sys.executable, "-m", "exporter", "--price-file", str(tmp_path / "missing.json")],
        cwd=ROOT, env={**clean_env(), "LETTA_BASE_URL": "http://127.0.0.1:9"}, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "LETTA_EXPORTER_PRICE_FILE" in line and "missing.json" in line


def test_json_and_yaml_price_files_say_the_same(tmp_path) -> None:
    prices = {"models": {"gpt-4o-mini": {"input": 0.2, "output": 0.8, "cache_read": 0.1}}}
    from_yaml = load_price_file(write_prices(tmp_path, prices, "p.yaml"))
    from_json = load_price_file(write_prices(tmp_path, prices, "p.json"))
    assert from_yaml.exact == from_json.exact and from_json.exact


# ---------------------------------------------------------------------------------------------------
# The arithmetic over overlapping token types


def test_overlapping_token_types_are_each_priced_once(tmp_path) -> None:
    rates = {"input": 2.0, "output": 8.0, "cache_read": 0.5, "cache_write": 2.5, "reasoning": 20.0}
    pricing = Pricing(parse_price_file({"models": {"m": rates}}), None)

    def usd(**tokens: Any) -> float:
        s = step(provider_name="p", model="m", **tokens)
        return pricing.price_run(ended_run(), [s]).usd[("m", "p")] * MILLION

    plain = usd(prompt_tokens=1000, completion_tokens=100)
    assert plain == pytest.approx(1000 * 2.0 + 100 * 8.0)
    # 300 of the prompt read from the cache: they move from the input rate to the cache-read rate,
    # however Letta names them (cached, cache_read, or both for the same tokens).
    read = plain + 300 * (0.5 - 2.0)
    for details in ({"cached_tokens": 300}, {"cache_read_tokens": 300},
                    {"cached_tokens": 300, "cache_read_tokens": 300}):  # fmt: skip
        assert usd(prompt_tokens=1000, completion_tokens=100, prompt_tokens_details=details) == pytest.approx(
            read
        )
    assert usd(prompt_tokens=1000, completion_tokens=100, cached_input_tokens=300) == pytest.approx(read)
    # Cache writes are inside prompt too; reasoning inside completion.
    assert usd(prompt_tokens=1000, completion_tokens=100, cache_write_tokens=200) == pytest.approx(
        plain + 200 * (2.5 - 2.0)
    )
    assert usd(prompt_tokens=1000, completion_tokens=100, reasoning_tokens=40) == pytest.approx(
        plain + 40 * (20.0 - 8.0)
    )
    # Without a reasoning rate, reasoning is completion at the output rate.
    flat = Pricing(parse_price_file({"models": {"m": {"input": 2.0, "output": 8.0}}}), None)
    s = step(provider_name="p", model="m", prompt_tokens=1000, completion_tokens=100, reasoning_tokens=40)
    assert flat.price_run(ended_run(), [s]).usd[("m", "p")] * MILLION == pytest.approx(plain)


# ---------------------------------------------------------------------------------------------------
# Unpriced models: counted, named, said once


def test_an_unpriced_model_is_said_once_in_the_log(table_pricing, caplog) -> None:
    pricing = Pricing(None, table_pricing.table)
    steps = [
        named("ollama", "llama3.1:8b", "ollama/llama3.1:8b"),
        named("ollama", "llama3.1:8b", None),  # the same model named another way: still once
        named("openai", "gpt-4o-mini", None),
    ]
    with caplog.at_level(logging.WARNING, logger=pricing_module.__name__):
        for _ in range(20):
            pricing.price_run(ended_run(), steps)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert "llama3.1:8b" in said[0] and "self-hosted" in said[0] and "LETTA_EXPORTER_PRICE_FILE" in said[0]
    assert 'letta_unpriced_tokens_total{model="llama3.1:8b"}' in said[0]


def test_pricing_fetches_nothing() -> None:
    """The table is read from the installed package: with every connection refused, pricing works."""
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network use')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "from exporter.cost.pricing import Pricing\n"
        "from exporter.letta.models import Run, Step\n"
        "s = Step(provider_name='openai', model='gpt-4o-mini', prompt_tokens=1000, completion_tokens=10)\n"
        "print(Pricing.build(None).price_run(Run(id='run-1'), [s]).usd)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "gpt-4o-mini" in result.stdout


# ---------------------------------------------------------------------------------------------------
# Against the simulator's ground truth


SIM_PRICES = {
    "table": False,  # so the simulator's third model (gemini-2.5-flash) is unpriced
    "models": {
        "openai/gpt-4o-mini": {"input": 0.2, "output": 0.8, "cache_read": 0.1},
        "claude-sonnet-4-5": {"input": 3.3, "output": 16.5, "cache_read": 0.33, "cache_write": 4.125,
                              "reasoning": 20.0},
        "gemini-*-pro": {"input": 1, "output": 1},  # matches no simulated model
    },
}  # fmt: skip
SIM_PRICED = {"gpt-4o-mini": SIM_PRICES["models"]["openai/gpt-4o-mini"],
              "claude-sonnet-4-5": SIM_PRICES["models"]["claude-sonnet-4-5"]}  # fmt: skip
UNPRICED_MODEL = "gemini-2.5-flash"


def expected_cost(truth: Iterable, prices: dict[str, dict[str, float]]) -> tuple[dict, Counter]:
    """By hand, from ground truth: US dollars by (agent, model), and unpriced tokens by (model, type).
    Cache reads and writes are inside prompt, reasoning inside completion (docs/cost.md)."""
    cost: dict[tuple[str, str], float] = {}
    unpriced: Counter = Counter()
    for truth_run in truth:
        for s in truth_run.steps:
            rates = prices.get(s.model)
            if rates is None:  # every token type, as letta_step_tokens_total counts them
                for token_type in (
                    "prompt",
                    "completion",
                    "cached",
                    "cache_read",
                    "cache_creation",
                    "reasoning",
                ):
                    unpriced[(s.model, token_type)] += getattr(s, f"{token_type}_tokens")
                continue
            read, write, reasoning = (
                max(s.cached_tokens, s.cache_read_tokens),
                s.cache_creation_tokens,
                s.reasoning_tokens,
            )
            usd = (
                max(s.prompt_tokens - read - write, 0) * rates["input"]
                + read * rates.get("cache_read", rates["input"])
                + write * rates.get("cache_write", rates["input"])
                + (s.completion_tokens - reasoning) * rates["output"]
                + reasoning * rates.get("reasoning", rates["output"])
            ) / MILLION
            key = (truth_run.agent_id, s.model)
            cost[key] = cost.get(key, 0.0) + usd
    return {key: usd for key, usd in cost.items() if usd}, +unpriced  # as served: no zero series


def assert_cost_matches(measured: dict, expected: dict) -> None:
    assert measured.keys() == expected.keys()
    for key, usd in expected.items():
        assert usd > 0 and math.isclose(measured[key], usd, rel_tol=1e-3), (key, measured[key], usd)


def test_cost_per_agent_and_model_equals_ground_truth_priced_by_hand(sim_factory, tmp_path, caplog) -> None:
    sim = sim_factory()
    path = write_prices(tmp_path, SIM_PRICES)

    async def scenario():
        exporter = make_exporter(sim, price_file=path)
        await poll_new_runs(exporter, sim, 60)
        return exporter

    with caplog.at_level(logging.WARNING, logger=pricing_module.__name__):
        exporter = run(scenario())
    samples = served_samples(exporter)
    cost, unpriced = expected_cost(sim.truth(), SIM_PRICED)
    assert_cost_matches(select(samples, "letta_run_cost_usd_total", ("agent_id", "model")), cost)
    assert select(samples, "letta_unpriced_tokens_total", ("model", "type")) == unpriced
    # The priced models' unpriced series exist, at zero.
    assert samples[("letta_unpriced_tokens_total", (("model", "gpt-4o-mini"), ("type", "prompt")))] == 0
    said = [r.getMessage() for r in caplog.records if UNPRICED_MODEL in r.getMessage()]
    assert len(said) == 1, said


def test_cost_survives_a_restart_through_the_state_file(sim_factory, tmp_path) -> None:
    sim = sim_factory()
    path, state_file = write_prices(tmp_path, SIM_PRICES), tmp_path / "state.json"

    async def scenario():
        first = make_exporter(sim, price_file=path, state_file=state_file)
        await poll_new_runs(first, sim, 20)
        await first.client.aclose()
        sim.burst(15)  # finished while the exporter was down
        second = make_exporter(sim, price_file=path, state_file=state_file)
        await settle(second, sim)
        return second

    samples = served_samples(run(scenario()))
    assert runs_counted(samples) == len(sim.truth()) == 35
    cost, unpriced = expected_cost(sim.truth(), SIM_PRICED)
    assert_cost_matches(select(samples, "letta_run_cost_usd_total", ("agent_id", "model")), cost)
    assert select(samples, "letta_unpriced_tokens_total", ("model", "type")) == unpriced


def test_a_state_file_from_before_cost_loads_and_cost_starts_from_zero(sim_factory, tmp_path) -> None:
    """tests/fixtures/state-6e0cc2c.json predates the cost families: it loads, resets nothing, and
    cost counts from the runs recorded after it."""
    sim = sim_factory()
    state_file = tmp_path / "state.json"
    state_file.write_text((ROOT / "tests" / "fixtures" / "state-6e0cc2c.json").read_text())
    path = write_prices(tmp_path, SIM_PRICES)

    async def scenario():
        exporter = make_exporter(sim, price_file=path, state_file=state_file)
        loaded = served_samples(exporter)
        await poll_new_runs(exporter, sim, 12)
        return loaded, exporter

    loaded, exporter = run(scenario())
    assert loaded[("letta_exporter_state_load_failures_total", ())] == 0
    assert runs_counted(loaded) == 12
    assert not select(loaded, "letta_run_cost_usd_total", ()) and not select(
        loaded, "letta_unpriced_tokens_total", ()
    )
    samples = served_samples(exporter)
    assert runs_counted(samples) == 12 + 12
    cost, _ = expected_cost(sim.truth(), SIM_PRICED)
    assert_cost_matches(select(samples, "letta_run_cost_usd_total", ("agent_id", "model")), cost)


@pytest.mark.integration
def test_a_real_prometheus_reports_the_cost_of_ground_truth(sim_factory, tmp_path) -> None:
    from tests.test_dashboards import prom_api, start_prometheus, stop

    sim = sim_factory()
    path = write_prices(tmp_path, SIM_PRICES)
    exporter = ExporterProcess(
        tmp_path,
        ["--poll-interval", "0.5", "--discovery-overlap", "5", "--max-requests-per-second", "0"],
        env={"LETTA_BASE_URL": sim.base_url, "LETTA_EXPORTER_PRICE_FILE": str(path)},
    ).start()
    procs: list = []
    try:
        job, instance = "letta-exporter", f"127.0.0.1:{exporter.port}"
        prometheus = start_prometheus(tmp_path, job, instance, procs)
        sim.burst(80)
        assert sim.wait_idle(30)
        truth = sim.truth()
        scraped = exporter.scrape_caught_up(len(truth), timeout=60)
        cost, unpriced = expected_cost(truth, SIM_PRICED)

        def query(expr: str, keys: tuple[str, ...]) -> dict[tuple[str, ...], float]:
            result = prom_api(prometheus, "query", query=expr)["result"]
            return {tuple(r["metric"].get(k, "") for k in keys): float(r["value"][1]) for r in result}

        by_agent_model = f'sum by (agent_id, model) (letta_run_cost_usd_total{{job="{job}"}})'
        runs = f'sum(letta_runs_total{{job="{job}"}})'
        # Prometheus has the scrape that counted every run.
        wait_for(lambda: query(runs, ()).get((), 0) == len(truth), timeout=30, what="Prometheus to catch up")
        measured = query(by_agent_model, ("agent_id", "model"))
        assert measured == pytest.approx(select(scraped, "letta_run_cost_usd_total", ("agent_id", "model")))
        assert_cost_matches(measured, cost)
        unpriced_measured = query(f'letta_unpriced_tokens_total{{job="{job}"}} > 0', ("model", "type"))
        assert unpriced_measured == unpriced
        assert {model for model, _ in unpriced_measured} == {UNPRICED_MODEL}
        assert exporter.logs().count(f"no price for model '{UNPRICED_MODEL}'") == 1
    finally:
        for proc, _ in reversed(procs):
            stop(proc)
        exporter.stop()
