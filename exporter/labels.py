"""Label values: bounded, safe, and capped in number where users control the cardinality."""

from __future__ import annotations

import re

MAX_LABEL_LENGTH = 128
OTHER = "other"
NONE = "none"

_UNSAFE_ENUM = re.compile(r"[^a-z0-9_]+")


def enum_label(value: str | None, *, max_length: int = 64) -> str:
    """An enum-like value from Letta (status, stop reason) as a label: unknown values pass through,
    normalised to ``[a-z0-9_]`` and bounded, so a new Letta release cannot explode a series name."""
    if value is None or value == "":
        return NONE
    cleaned = _UNSAFE_ENUM.sub("_", str(value).strip().lower()).strip("_")
    return cleaned[:max_length] or "unknown"


def free_label(value: str | None, *, default: str = "unknown") -> str:
    """A free-form value (model name, agent name, tool ID): printable and bounded in length."""
    if value is None:
        return default
    text = "".join(ch if ch.isprintable() else "_" for ch in str(value)).strip()
    return text[:MAX_LABEL_LENGTH] or default


class AgentLabeler:
    """Maps agent IDs to label values; the first ``max_agents`` distinct agents keep their ID,
    later ones share ``other`` so a tenant with a million agents cannot blow up Prometheus."""

    def __init__(self, max_agents: int) -> None:
        self.max_agents = max_agents
        self._admitted: dict[str, None] = {}

    def label(self, agent_id: str | None) -> str:
        if not agent_id:
            return "unknown"
        agent_id = free_label(agent_id)
        if agent_id in self._admitted:
            return agent_id
        if len(self._admitted) < self.max_agents:
            self._admitted[agent_id] = None
            return agent_id
        return OTHER

    @property
    def admitted(self) -> list[str]:
        return list(self._admitted)
