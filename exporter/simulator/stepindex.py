"""Every visible step row of the world in ``(created_at, id)`` order, for ``GET /v1/steps/``.

A page costs a bisection plus the rows it returns, never a pass over every step ever made. Rows
arrive almost in order (a row becomes visible at its start, or when its run's row commits, if
later), so an insertion moves only the short tail behind it. The index keeps keys and owners only;
what a row says is derived from its run on demand.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from exporter.simulator.runs import SimRun

Key = tuple[int, str]  # (created_at in µs, step id)
# Sorts after every step id: (t, AFTER_IDS) is past every row created at t.
AFTER_IDS = "\U0010ffff"


class StepIndex:
    def __init__(self) -> None:
        self._keys: list[Key] = []
        self._owners: dict[str, SimRun] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: Key, run: SimRun) -> None:
        bisect.insort(self._keys, key)
        self._owners[key[1]] = run

    def remove(self, key: Key) -> None:
        if self._owners.pop(key[1], None) is None:
            return
        index = bisect.bisect_left(self._keys, key)
        if index < len(self._keys) and self._keys[index] == key:
            del self._keys[index]

    def owner(self, step_id: str) -> SimRun | None:
        return self._owners.get(step_id)

    def walk(self, descending: bool, lower: Key | None, upper: Key | None) -> Iterator[tuple[SimRun, str]]:
        """(run, step id) of the rows strictly between ``lower`` and ``upper``, in the order asked."""
        keys = self._keys
        start = bisect.bisect_right(keys, lower) if lower is not None else 0
        stop = bisect.bisect_left(keys, upper) if upper is not None else len(keys)
        indexes = range(stop - 1, start - 1, -1) if descending else range(start, stop)
        for index in indexes:
            step_id = keys[index][1]
            run = self._owners.get(step_id)
            if run is not None and not run.deleted:
                yield run, step_id

    def prune(self, cutoff_us: int) -> None:
        """Drop the rows created before ``cutoff_us`` whose run is gone (deleted or pruned). Rows of a
        gone run created later stay, unlisted, until a later cutoff passes them."""
        keys = self._keys
        kept: list[Key] = []
        index = 0
        while index < len(keys) and keys[index][0] < cutoff_us:
            key = keys[index]
            run = self._owners.get(key[1])
            if run is not None and not run.deleted:
                kept.append(key)
            else:
                self._owners.pop(key[1], None)
            index += 1
        if index:
            keys[:index] = kept
