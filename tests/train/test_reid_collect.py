"""Region collection for the re-id projection reads every mask format the project accepts."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from memvos.data.synthetic import make_synthetic_clip
from memvos.model.frozen_key import FrozenKeyConfig, FrozenKeySTM
from memvos.train.reid import ReidTrainConfig, collect


def _tiny_model() -> FrozenKeySTM:
    torch.manual_seed(0)
    return FrozenKeySTM(FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False)).eval()


def _binary_folder(root, n: int):
    """Photos with one object each, masks saved as 0/255 greyscale (the human-seg layout)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for k in range(n):
        clip = make_synthetic_clip(n_frames=1, size=(96, 128), n_objects=1, seed=10 + k)
        Image.fromarray(clip.frames[0]).save(root / "images" / f"{k}.png")
        Image.fromarray(((clip.labels[0] > 0) * 255).astype(np.uint8)).save(root / "masks" / f"{k}.png")
    return root


def test_binary_0_255_masks_give_one_object_seen_twice(tmp_path):
    root = _binary_folder(tmp_path / "human", 3)
    cfg = ReidTrainConfig(static=[str(root)], short_side=96, min_cells=1)
    descriptors, groups = collect(cfg, _tiny_model())
    # each photo: its object in the photo and in the augmented copy, one group per photo
    assert len(descriptors) == 6
    assert sorted(np.bincount(groups).tolist()) == [2, 2, 2]
    assert np.isfinite(descriptors).all()
