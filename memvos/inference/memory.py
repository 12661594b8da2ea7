"""Which frames stay in memory: annotated frames forever, the most recent frames, and every
N-th frame up to a cap, so that time and RAM per frame stay bounded on any video length."""

from __future__ import annotations

from dataclasses import dataclass

from memvos.model.base import MemoryEntry


@dataclass
class MemoryPolicy:
    """every: memorise every N-th frame long-term (0: never); recent: keep the last R frames
    (1 = the previous frame, as STM); max_frames: cap on memory frames — the oldest
    long-term frames are evicted first, annotated frames never."""

    every: int = 5
    recent: int = 1
    max_frames: int = 20

    def __post_init__(self) -> None:
        if self.every < 0 or self.recent < 0 or self.max_frames < 1:
            raise ValueError("memory policy: every >= 0, recent >= 0 and max_frames >= 1 are required")


@dataclass
class _Slot:
    entry: MemoryEntry
    permanent: bool
    long_term: bool


class MemoryBank:
    """Memory entries by frame index, pruned by a ``MemoryPolicy`` after each addition."""

    def __init__(self, policy: MemoryPolicy | None = None) -> None:
        self.policy = policy or MemoryPolicy()
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

    def clear(self) -> None:
        self._slots.clear()
        self._recent.clear()
        self._first = None
