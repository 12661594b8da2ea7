"""memvos: video object segmentation with space-time memory networks.

The whole job in one call::

    import memvos
    labels = memvos.segment_frames(frames, {0: first_mask})   # (T, H, W) uint8 label maps

or frame by frame with the streaming engine::

    model, config = memvos.load_model(frame_size=(480, 854))  # the model `memvos segment` picks;
                                                              # pass the size: small frames get stride 8
    core = memvos.InferenceCore(model, config.inference)
    for t, frame in enumerate(memvos.open_frames("clip.mp4")):
        labels = core.labels(core.step(frame, masks.get(t)))

``InteractiveSession`` runs rounds of clicks and scribbles; ``read_mask`` reads palette, binary or
colour masks; bad input raises ``InputError`` with a one-line message naming the file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memvos.errors import InputError

__version__ = "0.1.0"
__all__ = ["InferenceConfig", "InferenceCore", "InputError", "InteractiveSession", "__version__", "load_model",
           "open_frames", "read_mask", "segment_frames", "segment_video"]

# Loaded on first use, so that `import memvos` (and `memvos --help`) does not import torch.
_LAZY = {
    "load_model": "memvos.model.factory",
    "InferenceCore": "memvos.inference.core",
    "InferenceConfig": "memvos.inference.core",
    "InteractiveSession": "memvos.inference.interactive",
    "open_frames": "memvos.data.frames",
    "read_mask": "memvos.data.masks",
    "segment_frames": "memvos.segment",
    "segment_video": "memvos.segment",
}

if TYPE_CHECKING:
    from memvos.data.frames import open_frames
    from memvos.data.masks import read_mask
    from memvos.inference.core import InferenceConfig, InferenceCore
    from memvos.inference.interactive import InteractiveSession
    from memvos.model.factory import load_model
    from memvos.segment import segment_frames, segment_video


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'memvos' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
