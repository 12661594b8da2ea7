"""Telling a training checkpoint (torch.save) from exported weights (safetensors) by their first bytes."""

from __future__ import annotations

import io
import json
import struct

import torch
from safetensors.torch import save

from memvos.model.factory import is_training_state


def _safetensors_with_header_length(remainder: int) -> bytes:
    """A safetensors file whose header length is ``remainder`` mod 256 (padded through metadata)."""
    for pad in range(512):
        data = save({"w": torch.zeros(2)}, metadata={"pad": "x" * pad})
        (length,) = struct.unpack("<Q", data[:8])
        if length % 256 == remainder:
            return data
    raise AssertionError("no padding gave that header length")


def test_safetensors_whose_length_byte_looks_like_a_pickle_is_not_a_training_state():
    data = _safetensors_with_header_length(0x80)
    assert data[:1] == b"\x80" and data[8:9] == b"{"
    assert json.loads(data[8:8 + struct.unpack("<Q", data[:8])[0]])["__metadata__"]["pad"]
    assert not is_training_state(data[:9])
    assert not is_training_state(_safetensors_with_header_length(0x10)[:9])


def test_torch_save_files_are_training_states():
    for zipped in (True, False):
        buffer = io.BytesIO()
        torch.save({"model": {"w": torch.zeros(2)}, "iteration": 3}, buffer, _use_new_zipfile_serialization=zipped)
        assert is_training_state(buffer.getvalue()[:9]), zipped
