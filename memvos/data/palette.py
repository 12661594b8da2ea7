"""The DAVIS / PASCAL VOC colour palette used by every palette PNG memvos writes."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

VOID_ID = 255  # palette index that means "not scored"


@lru_cache(maxsize=1)
def davis_palette() -> np.ndarray:
    """(256, 3) uint8 palette: the bit-interleaving PASCAL VOC generator DAVIS uses.

    Entry i spreads the bits of i over the high bits of R, G and B:
    1 = (128, 0, 0), 2 = (0, 128, 0), 3 = (128, 128, 0), ..., 255 = (224, 224, 192).
    """
    ids = np.arange(256)
    palette = np.zeros((256, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    out = palette.astype(np.uint8)
    out.setflags(write=False)
    return out


def palette_bytes() -> list[int]:
    """The palette flattened for ``PIL.Image.putpalette``."""
    return davis_palette().reshape(-1).tolist()
