"""Memory policy: annotated frames stay, recent and every-N-th frames rotate, the cap holds."""

from __future__ import annotations

import pytest
import torch

from memvos.inference.memory import MemoryBank, MemoryPolicy
from memvos.model.base import MemoryEntry


def entry(t: int) -> MemoryEntry:
    return MemoryEntry(key=torch.full((1, 1, 1, 1), float(t)), value=torch.zeros(1, 1, 1, 1), object_ids=(1,))


def run(policy: MemoryPolicy, n: int, annotated=(0,)) -> MemoryBank:
    bank = MemoryBank(policy)
    for t in range(n):
        bank.add(t, entry(t), permanent=t in annotated)
    return bank


def test_stm_policy_first_previous_and_every_fifth():
    bank = run(MemoryPolicy(every=5, recent=1, max_frames=100), 13)
    assert bank.frame_indices == [0, 5, 10, 12]
    assert [e.key.item() for e in bank.entries()] == [0, 5, 10, 12]  # entries in frame order


def test_recent_frames_window():
    bank = run(MemoryPolicy(every=0, recent=3, max_frames=100), 10)
    assert bank.frame_indices == [0, 7, 8, 9]


def test_cap_evicts_oldest_non_permanent_and_keeps_annotations():
    policy = MemoryPolicy(every=2, recent=1, max_frames=4)
    bank = run(policy, 40, annotated=(0, 3))
    assert len(bank) == 4
    assert bank.permanent_indices == [0, 3]
    assert bank.frame_indices == [0, 3, 38, 39]  # the newest long-term frame survives with the previous one


def test_size_stays_bounded_on_long_streams():
    bank = MemoryBank(MemoryPolicy(every=5, recent=1, max_frames=20))
    sizes = []
    for t in range(2000):
        bank.add(t, entry(t), permanent=t == 0)
        sizes.append(len(bank))
    assert max(sizes) == 20
    assert bank.frame_indices[0] == 0 and bank.frame_indices[-1] == 1999


def test_frame_given_a_mask_later_becomes_permanent():
    bank = MemoryBank(MemoryPolicy(every=0, recent=1, max_frames=5))
    for t in range(20):
        bank.add(t, entry(t), permanent=t in (0, 7))
    assert bank.frame_indices == [0, 7, 19]


def test_bad_policy_refused():
    with pytest.raises(ValueError):
        MemoryPolicy(max_frames=0)
    with pytest.raises(ValueError, match="coarse"):
        MemoryPolicy(coarse=0)


def halve(e: MemoryEntry, factor: int) -> MemoryEntry:
    """A stand-in for a model's coarsen_entry: the key's value divided by the factor."""
    return MemoryEntry(key=e.key / factor, value=e.value, object_ids=e.object_ids)


def test_long_term_frames_beyond_the_fine_newest_are_coarsened_once():
    calls = []
    bank = MemoryBank(MemoryPolicy(every=5, recent=1, max_frames=100, coarse=2, fine=2),
                      coarsen=lambda e, f: calls.append(e.key.item()) or halve(e, f))
    for t in range(27):
        bank.add(t, entry(t), permanent=t == 0)
    # long-term frames 5, 10, 15, 20, 25 (26 is the recent one): the two newest, 20 and 25, stay fine
    assert bank.frame_indices == [0, 5, 10, 15, 20, 25, 26]
    assert [e.key.item() for e in bank.entries()] == [0, 2.5, 5, 7.5, 20, 25, 26]
    assert calls == [5, 10, 15]  # each once, in the order they aged


def test_recent_and_annotated_frames_are_never_coarsened():
    bank = MemoryBank(MemoryPolicy(every=1, recent=2, max_frames=100, coarse=2, fine=0), coarsen=halve)
    for t in range(6):
        bank.add(t, entry(t), permanent=t in (0, 3))
    assert [e.key.item() for e in bank.entries()] == [0, 0.5, 1, 3, 4, 5]  # 4, 5 recent; 0, 3 annotated


def test_without_a_coarsen_function_or_with_coarse_1_entries_stay_as_given():
    for bank in (MemoryBank(MemoryPolicy(every=1, coarse=2, fine=0)),
                 MemoryBank(MemoryPolicy(every=1, coarse=1, fine=0), coarsen=halve)):
        for t in range(5):
            bank.add(t, entry(t), permanent=t == 0)
        assert [e.key.item() for e in bank.entries()] == [0, 1, 2, 3, 4]
