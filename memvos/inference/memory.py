"""Which frames stay in memory: annotated frames forever, the most recent frames, and every
N-th frame up to a cap, so that time and RAM per frame stay bounded on any video length."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from memvos.model.base import MemoryEntry

Coarsen = Callable[[MemoryEntry, int], MemoryEntry]  # (entry, factor) -> the entry at 1/factor resolution


@dataclass
class MemoryPolicy:
    """every: memorise every N-th frame long-term (0: never); recent: keep the last R frames
    (1 = the previous frame, as STM); max_frames: cap on memory frames — the oldest
    long-term frames are evicted first, annotated frames never.

    coarse: long-term frames older than the ``fine`` newest ones are kept at 1/coarse resolution
    (2: a quarter of the cells, so a read over 20 frames compares about half the pairs), when the
    model can coarsen its entries; annotated and recent frames always stay at full resolution."""

    every: int = 5
    recent: int = 1
    max_frames: int = 20
    coarse: int = 1
    fine: int = 4

    def __post_init__(self) -> None:
        if self.every < 0 or self.recent < 0 or self.max_frames < 1:
            raise ValueError("memory policy: every >= 0, recent >= 0 and max_frames >= 1 are required")
        if self.coarse < 1 or self.fine < 0:
            raise ValueError("memory policy: coarse >= 1 and fine >= 0 are required")


@dataclass
class _Slot:
    entry: MemoryEntry
    permanent: bool
    long_term: bool
    coarse: bool = False


class MemoryBank:
    """Memory entries by frame index, pruned by a ``MemoryPolicy`` after each addition.

    ``coarsen`` (the model's ``coarsen_entry``; None: the model has none) shrinks the long-term
    entries the policy wants coarse, once each."""

    def __init__(self, policy: MemoryPolicy | None = None, coarsen: Coarsen | None = None) -> None:
        self.policy = policy or MemoryPolicy()
        self.coarsen = coarsen
        self._slots: dict[int, _Slot] = {}
        self._recent: list[int] = []
        self._first: int | None = None

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def frame_indices(self) -> list[int]:
        return sorted(self._slots)

    @property
    def permanent_indices(self) -> list[int]:
        return sorted(i for i, s in self._slots.items() if s.permanent)

    def entries(self) -> list[MemoryEntry]:
        """Entries in frame order."""
        return [self._slots[i].entry for i in sorted(self._slots)]

    def permanent_entries(self) -> list[MemoryEntry]:
        """Entries of annotated (and re-seeded) frames, in frame order."""
        return [self._slots[i].entry for i in self.permanent_indices]

    def add(self, index: int, entry: MemoryEntry, permanent: bool = False) -> None:
        """Memorise frame ``index``; annotated frames (``permanent``) are never evicted."""
        if self._first is None:
            self._first = index
        every = self.policy.every
        long_term = every > 0 and (index - self._first) % every == 0
        previous = self._slots.get(index)
        permanent = permanent or (previous is not None and previous.permanent)
        self._slots[index] = _Slot(entry, permanent, long_term)
        if index in self._recent:
            self._recent.remove(index)
        self._recent.append(index)
        self._prune()

    def _prune(self) -> None:
        keep_recent = set(self._recent[-self.policy.recent :]) if self.policy.recent else set()
        self._recent = [i for i in self._recent if i in keep_recent]
        for index in list(self._slots):
            slot = self._slots[index]
            if not (slot.permanent or slot.long_term or index in keep_recent):
                del self._slots[index]
        evictable = sorted(i for i, s in self._slots.items() if not s.permanent and i not in keep_recent)
        while len(self._slots) > self.policy.max_frames and evictable:
            del self._slots[evictable.pop(0)]
        self._coarsen_old(keep_recent)

    def _coarsen_old(self, recent: set[int]) -> None:
        """Long-term frames (not annotated, not recent) older than the ``fine`` newest: coarse."""
        factor = self.policy.coarse
        if factor <= 1 or self.coarsen is None:
            return
        older = sorted(i for i, s in self._slots.items() if s.long_term and not s.permanent and i not in recent)
        for index in older[: max(len(older) - self.policy.fine, 0)]:
            slot = self._slots[index]
            if not slot.coarse:
                slot.entry, slot.coarse = self.coarsen(slot.entry, factor), True

    def clear(self) -> None:
        self._slots.clear()
        self._recent.clear()
        self._first = None
