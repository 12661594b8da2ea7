"""Parameter-wise means of weights of one network (points of one training run: a free ensemble at
no inference cost, as stochastic weight averaging); ``memvos average`` uses it for both networks."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torch import Tensor

from memvos.errors import InputError


def mean_state(states: Iterable[tuple[str | Path, dict[str, Tensor]]]) -> dict[str, Tensor]:
    """(file, state dict) pairs -> the float32 mean of the states. A state whose parameter names
    or shapes differ from the first one's is refused with a one-line error naming its file."""
    total: dict[str, Tensor] = {}
    first, count = None, 0
    for path, state in states:
        if first is None:
            first, total = path, {name: value.float().clone() for name, value in state.items()}
        elif state.keys() != total.keys() or any(state[k].shape != total[k].shape for k in total):
            raise InputError(path, f"not the same network as {first} (parameter names or shapes differ)")
        else:
            for name, value in state.items():
                total[name] += value.float()
        count += 1
    return {name: value / max(count, 1) for name, value in total.items()}
