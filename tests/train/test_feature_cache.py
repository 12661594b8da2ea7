"""Training from cached backbone features: exact aligned views, Hide-and-Seek cells, deterministic
clips, the cache round trip, and a short cached run of the trainer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from memvos.data.static_clips import ClipAugment
from memvos.model.backbones import build_backbone
from memvos.train.config import train_config_from_dict
from memvos.train.feature_cache import (
    PASTED_IDS,
    CachedImage,
    CachedStaticClips,
    CachedVideoClips,
    FeatureCache,
    MixedClips,
    cached_size,
    collate_features,
    hide_cells,
    paste_objects,
    warp_view,
)
from memvos.train.trainer import Trainer

from .conftest import make_davis_root, make_static_root, tiny_config


def _image(h: int = 64, w: int = 96, seed: int = 0) -> CachedImage:
    g = torch.Generator().manual_seed(seed)
    feats = tuple(torch.randn(c, h // s, w // s, generator=g).half() for c, s in ((3, 4), (5, 8), (7, 16)))
    labels = np.zeros((h, w), np.uint8)
    labels[16:40, 32:64] = 1
    labels[40:60, 0:20] = 2
    return CachedImage(feats, labels)


def test_cached_size_keeps_the_short_side_and_multiples_of_16():
    assert cached_size(480, 854, 384) == (384, 688)
    assert cached_size(300, 400, 384) == (384, 512)
    h, w = cached_size(241, 433, 100)
    assert h % 16 == 0 and w % 16 == 0


def test_aligned_crop_returns_the_cached_values_exactly():
    image = _image()
    matrix = np.array([[1.0, 0, -32], [0, 1.0, -16]])  # crop at x=32, y=16
    views, labels = warp_view(image, matrix, 32)
    for level, view, s in zip(image.features, views, (4, 8, 16)):
        expected = level[:, 16 // s: 16 // s + 32 // s, 32 // s: 32 // s + 32 // s].float()
        assert torch.equal(view, expected)
    assert np.array_equal(labels, image.labels[16:48, 32:64])


def test_flip_mirrors_features_and_labels():
    image = _image()
    matrix = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    (plain, _, _), labels = warp_view(image, matrix, 48)
    (flipped, _, _), flipped_labels = warp_view(image, matrix, 48, flip=True)
    assert torch.equal(flipped, plain.flip(-1))
    assert np.array_equal(flipped_labels, labels[:, ::-1])


def test_hide_cells_pastes_the_fill_and_clears_labels_under_hidden_cells():
    rng = np.random.default_rng(0)
    features = [torch.zeros(2, 8, 8), torch.zeros(2, 4, 4), torch.zeros(2, 2, 2)]  # a 32-pixel crop
    fill = [torch.ones_like(f) for f in features]
    labels = np.ones((32, 32), np.uint8)
    out, out_labels = hide_cells(features, labels, fill, 1.0, rng)
    assert all(torch.equal(o, f) for o, f in zip(out, fill)) and not out_labels.any()
    same, same_labels = hide_cells(features, labels, fill, 0.0, rng)
    assert same is features and np.array_equal(same_labels, labels)
    out, out_labels = hide_cells(features, labels, fill, 0.5, np.random.default_rng(3))
    hidden = out[2][0] > 0  # the 2x2 key-level cells that were hidden
    assert 0 < int(hidden.sum()) < 4
    for i in range(2):
        for j in range(2):
            cell = out_labels[16 * i: 16 * (i + 1), 16 * j: 16 * (j + 1)]
            assert (cell == 0).all() if hidden[i, j] else (cell == 1).all()
            assert bool((out[0][0, 4 * i: 4 * (i + 1), 4 * j: 4 * (j + 1)] > 0).all()) == bool(hidden[i, j])


def test_paste_objects_covers_features_and_labels_where_the_donor_objects_are():
    features = [torch.zeros(2, 8, 8), torch.zeros(2, 4, 4), torch.zeros(2, 2, 2)]  # a 32-pixel crop
    donor = [torch.ones_like(f) for f in features]
    labels = np.ones((32, 32), np.uint8)  # object 1 everywhere
    donor_labels = np.zeros((32, 32), np.uint8)
    donor_labels[0:16, 0:16] = 2  # the top-left key cell exactly
    donor_labels[20:22, 20:22] = 1  # 4 pixels: a quarter of a stride-4 cell, less of the others
    out, out_labels = paste_objects(features, labels, donor, donor_labels)
    assert out_labels[0, 0] == PASTED_IDS + 2 and out_labels[21, 21] == PASTED_IDS + 1 and out_labels[31, 31] == 1
    assert int((out_labels == 1).sum()) == 32 * 32 - 256 - 4
    assert torch.equal(out[2][0], torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # only the covered key cell
    assert int(out[0][0].sum()) == 16  # the 4x4 stride-4 cells under the top-left square, not the small one
    same, same_labels = paste_objects(features, labels, donor, np.zeros_like(donor_labels))
    assert same is features and same_labels is labels


def test_static_clips_with_paste_hold_objects_of_two_images(tmp_path, backbone):
    aug = ClipAugment(crop=64, max_objects=3, min_object_pixels=20)
    cache = FeatureCache(backbone, "lite0-s16", tmp_path / "cache", short_side=64)
    root = make_static_root(tmp_path / "static")
    plain = CachedStaticClips([root], aug, cache)
    pasted = CachedStaticClips([root], aug, cache, paste=1.0)
    more = sum(pasted.sample(2, n, 0, 10).num_objects > plain.sample(2, n, 0, 10).num_objects for n in range(8))
    assert more >= 1  # some clips gained the donor's objects
    for n in range(8):
        clip = pasted.sample(2, n, 0, 10)
        assert int(clip.labels.max()) <= clip.num_objects <= 3  # renumbered 1..K like any clip


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("efficientnet-lite0", output_stride=16, pretrained=False).eval()


def test_cache_computes_once_and_loads_the_same(tmp_path, backbone):
    root = make_static_root(tmp_path / "static", n=1)
    cache = FeatureCache(backbone, "lite0-s16", tmp_path / "cache", short_side=64)
    image, mask = root / "images" / "0.jpg", root / "masks" / "0.png"
    first = cache.get(image, mask)
    assert cache.path_for(image).is_file()
    again = cache.get(image, mask)
    assert first.labels.shape == (64, 80)  # 80x96 -> short side 64, 76.8 rounded to 80
    assert [f.shape[-2:] for f in first.features] == [(16, 20), (8, 10), (4, 5)]
    assert all(torch.equal(a, b) for a, b in zip(first.features, again.features))
    assert np.array_equal(first.labels, again.labels)
    cache.path_for(image).write_bytes(b"damaged")
    assert torch.equal(cache.get(image, mask).features[2], first.features[2])  # recomputed


def test_clips_are_a_function_of_seed_and_sample_number(tmp_path, backbone):
    aug = ClipAugment(crop=64, max_objects=2, min_object_pixels=20)
    cache = FeatureCache(backbone, "lite0-s16", tmp_path / "cache", short_side=64)
    static = CachedStaticClips([make_static_root(tmp_path / "static")], aug, cache, hide_and_seek=True)
    video = CachedVideoClips([make_davis_root(tmp_path / "davis")], aug, cache, exclude={"davis": ["c"]})
    assert len(video) == 2  # 'c' left out
    for clips in (static, video):
        a, b = clips.sample(5, 3, 9, 10), clips.sample(5, 3, 9, 10)
        assert all(torch.equal(x, y) for x, y in zip(a.features, b.features)) and torch.equal(a.labels, b.labels)
        assert a.features[2].shape == (3, 112, 4, 4) and a.labels.shape == (3, 64, 64)
        assert 1 <= a.num_objects <= 2 and int(a.labels.max()) <= a.num_objects
        assert set(torch.unique(a.labels[0]).tolist()) == set(range(a.num_objects + 1))  # frame 0 shows every object
    f4, f8, fk, labels, counts = collate_features([static.sample(1, n, 0, 10) for n in range(3)], 2)
    assert f4.shape[:2] == (3, 3) and f8.shape[-2:] == (8, 8) and fk.shape[-2:] == (4, 4) and labels.shape == (3, 3, 64, 64)
    assert counts.shape == (3,)


def test_cached_training_run_learns_keys_and_exports(tmp_path):
    data = tiny_config(tmp_path, kind="video", iterations=3)
    data["model"]["model"]["output_stride"] = 16
    data["model_options"] = {"key_projection": True}
    data["data"].update(feature_cache=str(tmp_path / "cache"), cache_short_side=64, exclude_last=0)
    trainer = Trainer(train_config_from_dict(data))
    assert len(list((tmp_path / "cache").glob("*/*.pt"))) == 3 * 8  # every frame cached up front
    before = trainer.model.key_proj.weight.detach().clone()
    final = trainer.run()
    assert not torch.equal(trainer.model.key_proj.weight.detach(), before)  # the keys learned
    from memvos.model.factory import load_checkpoint

    model, config = load_checkpoint(final)
    assert config.model["key_projection"] is True and model.key_proj is not None
    assert Path(trainer.out / "log.csv").is_file()


def test_exclude_split_leaves_the_validation_sequences_out(tmp_path):
    root = make_davis_root(tmp_path / "davis2016-train", names=("bear", "flamingo", "soccerball", "hockey"))
    data = tiny_config(tmp_path, kind="video")
    data["data"].update(roots=[str(root)], exclude_split="validation", exclude_last=0)
    trainer = Trainer(train_config_from_dict(data))
    assert [s.name for s in trainer.dataset.sequences] == ["bear"]
    data["data"]["exclude_split"] = "nope"
    with pytest.raises(ValueError, match="exclude_split"):
        train_config_from_dict(data)


def test_mixed_clips_take_the_static_share_deterministically(tmp_path, backbone):
    aug = ClipAugment(crop=64, max_objects=2, min_object_pixels=20)
    cache = FeatureCache(backbone, "lite0-s16", tmp_path / "cache", short_side=64)
    static = CachedStaticClips([make_static_root(tmp_path / "static")], aug, cache)
    video = CachedVideoClips([make_davis_root(tmp_path / "davis")], aug, cache)
    with pytest.raises(ValueError):
        MixedClips(video, static, 1.5)
    mixed = MixedClips(video, static, 0.5)
    assert len(mixed.items()) == len(video.items()) + len(static.items())
    kinds = []
    for n in range(40):
        sample = mixed.sample(2, n, 0, 10)
        from_static = np.random.default_rng([2, n, 13]).random() < 0.5
        expected = (static if from_static else video).sample(2, n, 0, 10)
        assert torch.equal(sample.labels, expected.labels)
        kinds.append(from_static)
    assert 10 < sum(kinds) < 30  # about half
    only_video = MixedClips(video, static, 0.0)
    assert all(torch.equal(only_video.sample(2, n, 0, 10).labels, video.sample(2, n, 0, 10).labels) for n in range(5))
