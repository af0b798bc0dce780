"""How a step names its model, and which price table provider Letta's provider names mean
(docs/cost.md, "Names").

A step says ``provider_name`` (Letta's provider type: ``openai``, ``google_ai``, ...), ``model`` (the
provider's model name, ``gpt-4o-mini``) and, from Letta 0.12 on, ``model_handle``
(``<provider>/<model>``, where the provider part is the name the provider was registered under: a
BYOK provider's own name, ``openai-proxy`` for an OpenAI-compatible endpoint, ``letta`` for Letta's
free model). Letta 0.11 has no handle.
"""

from __future__ import annotations

from dataclasses import dataclass

from exporter.labels import free_label
from exporter.letta.models import Step

# Letta's provider types and the price table's provider IDs. A provider not listed here is unpriced
# unless the price file prices it: the exporter never guesses a provider Letta named differently.
TABLE_PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google_ai": "google",
    "google_vertex": "google",
    "azure": "azure",
    "bedrock": "aws",
    "groq": "groq",
    "together": "together",
    "xai": "x-ai",
    "deepseek": "deepseek",
    "mistral": "mistral",
    "cerebras": "cerebras",
    "fireworks": "fireworks",
    "openrouter": "openrouter",
    "baseten": "baseten",
    "minimax": "minimax",
    "zai": "zai",
}
# Models served by the operator's own hardware: no list price applies.
SELF_HOSTED = frozenset({"ollama", "vllm", "lmstudio", "lmstudio_openai", "sglang"})
# Letta's own free model (handle letta/letta-free).
FREE = frozenset({"letta"})


@dataclass(frozen=True, slots=True)
class StepModel:
    provider_name: str | None
    model: str | None  # the provider's model name: the step's, else the handle's model part
    handle: str | None
    handle_provider: str | None
    # (model, provider) as labels: the model as letta_step_tokens_total labels it.
    labels: tuple[str, str]

    @classmethod
    def of(cls, step: Step) -> StepModel:
        handle = step.model_handle or None
        prefix, _, rest = handle.partition("/") if handle else ("", "", "")
        provider_name = step.provider_name or None
        handle_provider = prefix if rest else None
        return cls(
            provider_name=provider_name,
            model=step.model or rest or None,
            handle=handle,
            handle_provider=handle_provider,
            labels=(free_label(step.model_label), free_label(provider_name or handle_provider)),
        )

    @property
    def provider(self) -> str | None:
        """Letta's provider name, else the handle's provider part."""
        return self.provider_name or self.handle_provider

    def named(self, names: frozenset[str]) -> bool:
        """Whether the provider name or the handle's provider part is one of ``names``."""
        return bool({self.provider_name, self.handle_provider} & names)

    def file_keys(self) -> tuple[str, ...]:
        """What a price file entry may be keyed by, most specific first: the handle, provider/model,
        the model alone (lower case: keys are matched without case)."""
        keys = [self.handle]
        if self.provider and self.model:
            keys.append(f"{self.provider}/{self.model}")
        keys.append(self.model)
        return tuple(dict.fromkeys(key.lower() for key in keys if key))

    def table_provider(self) -> tuple[bool, str | None]:
        """(known, the table's provider ID): no provider at all is known (the table finds the
        provider from the model name); a provider Letta named that is not mapped is not."""
        if self.provider is None:
            return True, None
        table = TABLE_PROVIDERS.get(self.provider)
        return table is not None, table
