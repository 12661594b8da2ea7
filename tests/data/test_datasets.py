"""DAVIS and YouTube-VOS layouts built in tmp_path from synthetic clips."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from memvos.data.datasets import DavisDataset, VideoSequence, YouTubeVOSDataset, open_dataset
from memvos.data.frames import FolderFrames
from memvos.data.masks import read_mask
from memvos.data.synthetic import make_synthetic_clip
from memvos.data.writers import write_palette_png
from memvos.errors import InputError

H, W = 64, 96


def _first_appearance_from_labels(clip) -> dict[int, str]:
    """Ground truth computed from the clip's own label maps."""
    first: dict[int, str] = {}
    for name, labels in zip(clip.names, clip.labels):
        for obj in sorted(set(np.unique(labels).tolist()) - {0, 255}):
            first.setdefault(obj, name)
    return first


def make_davis(root, sequences: dict[str, dict], split_files: dict[str, list[str]] | None = None):
    """DAVIS layout; ``sequences`` maps a name to make_synthetic_clip arguments. Returns the clips."""
    clips = {}
    for k, (name, kwargs) in enumerate(sequences.items()):
        clip = make_synthetic_clip(**{"n_frames": 4, "size": (H, W), "seed": k, **kwargs})
        clip.save(root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name)
        clips[name] = clip
    for rel, names in (split_files or {}).items():
        path = root / "ImageSets" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(names) + "\n")
    return clips


def make_ytvos(root, videos: dict[str, dict], split: str = "train", with_meta: bool = True):
    """YouTube-VOS layout: masks only on each object's first-appearance frame, plus meta.json."""
    clips, meta = {}, {}
    for k, (name, kwargs) in enumerate(videos.items()):
        clip = make_synthetic_clip(**{"n_frames": 8, "size": (H, W), "seed": 10 + k, **kwargs})
        clip.save(root / split / "JPEGImages" / name)
        first = _first_appearance_from_labels(clip)
        for obj, frame_name in first.items():
            index = clip.names.index(frame_name)
            # The mask of a first-appearance frame shows the new object only.
            write_palette_png(root / split / "Annotations" / name / f"{frame_name}.png",
                              np.where(clip.labels[index] == obj, obj, 0).astype(np.uint8))
        objects = {}
        for obj in first:
            frames = [n for n, lab in zip(clip.names, clip.labels) if (lab == obj).any()]
            objects[str(obj)] = {"category": "thing", "frames": list(reversed(frames))}  # order must not matter
        meta[name] = {"objects": objects}
        clips[name] = clip
    if with_meta:
        (root / split / "meta.json").write_text(json.dumps({"videos": meta}))
    return clips


# ---------------------------------------------------------------- DAVIS


def test_davis_without_split_lists_all_sequences_in_natural_order(tmp_path):
    make_davis(tmp_path, {"seq10": {}, "seq2": {}, "bear": {}})
    ds = DavisDataset(tmp_path)
    assert ds.sequences == ["bear", "seq2", "seq10"]
    assert len(ds) == 3
    assert [seq.name for seq in ds] == ["bear", "seq2", "seq10"]


def test_davis_sequence_frames_and_annotations(tmp_path):
    clips = make_davis(tmp_path, {"bear": {"n_frames": 5}})
    seq = DavisDataset(tmp_path)["bear"]
    assert isinstance(seq, VideoSequence) and isinstance(seq.frames, FolderFrames)
    assert seq.name == "bear"
    assert len(seq.frames) == 5
    assert list(seq.frames.names) == [f"{i:05d}" for i in range(5)]
    assert seq.frames.size == (H, W)
    assert sorted(seq.annotations) == [f"{i:05d}" for i in range(5)]
    assert seq.annotations["00003"] == tmp_path / "Annotations" / "480p" / "bear" / "00003.png"
    for i, name in enumerate(seq.frames.names):
        np.testing.assert_array_equal(seq.read_annotation(name), clips["bear"].labels[i])
        # JPEG quality 95: frames are close to the originals.
        assert np.abs(seq.frames[i].astype(int) - clips["bear"].frames[i]).mean() < 6
    with pytest.raises(KeyError):
        DavisDataset(tmp_path)["nope"]


@pytest.mark.parametrize("split_path", ["train.txt", "2017/train.txt"])
def test_davis_split_file(tmp_path, split_path):
    make_davis(tmp_path, {"a": {}, "b": {}, "c": {}}, {split_path: ["c", "a"]})
    ds = DavisDataset(tmp_path, split="train")
    assert ds.sequences == ["c", "a"]  # the split file's order
    assert [seq.name for seq in ds] == ["c", "a"]
    with pytest.raises(KeyError):
        ds["b"]  # on disk but not in the split


def test_davis_year_picks_the_year_folder(tmp_path):
    make_davis(tmp_path, {"a": {}, "b": {}}, {"2016/val.txt": ["a"], "2017/val.txt": ["a", "b"], "val.txt": ["b"]})
    assert DavisDataset(tmp_path, split="val", year="2016").sequences == ["a"]
    assert DavisDataset(tmp_path, split="val", year="2017").sequences == ["a", "b"]
    assert DavisDataset(tmp_path, split="val").sequences == ["b"]  # top-level file first
    with pytest.raises(InputError):
        DavisDataset(tmp_path, split="val", year="2019")


def test_davis_split_listing_a_missing_sequence(tmp_path):
    make_davis(tmp_path, {"a": {}}, {"train.txt": ["a", "ghost"]})
    with pytest.raises(InputError) as info:
        DavisDataset(tmp_path, split="train")
    message = str(info.value)
    assert str(tmp_path / "ImageSets" / "train.txt") in message
    assert "ghost" in message


def test_davis_missing_split_file(tmp_path):
    make_davis(tmp_path, {"a": {}}, {"train.txt": ["a"]})
    with pytest.raises(InputError) as info:
        DavisDataset(tmp_path, split="val")
    assert "val.txt" in str(info.value)


def test_davis_not_a_davis_layout(tmp_path):
    with pytest.raises(InputError) as info:
        DavisDataset(tmp_path / "missing")
    assert str(tmp_path / "missing") in str(info.value)
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(InputError) as info:
        DavisDataset(tmp_path)
    assert "480p" in str(info.value)
    (tmp_path / "JPEGImages" / "480p").mkdir()
    with pytest.raises(InputError):
        DavisDataset(tmp_path)  # no sequences


def test_davis_first_appearances_object_appearing_later(tmp_path):
    clips = make_davis(tmp_path, {"late": {"n_frames": 8, "appear_at": {2: 5}}})
    expected = _first_appearance_from_labels(clips["late"])
    assert expected == {1: "00000", 2: "00005"}  # the clip really has object 2 appear at frame 5
    seq = DavisDataset(tmp_path)["late"]
    assert seq.first_appearances() == expected


def test_davis_first_appearances_with_sparse_masks(tmp_path):
    # Like the judo example: masks only on the frames that introduce an object.
    clip = make_davis(tmp_path, {"judo": {"n_frames": 10, "n_objects": 3, "appear_at": {2: 4, 3: 7}}})["judo"]
    mask_dir = tmp_path / "Annotations" / "480p" / "judo"
    for name in clip.names:
        if name not in ("00000", "00004", "00007"):
            (mask_dir / f"{name}.png").unlink()
    for name, obj in (("00000", 1), ("00004", 2), ("00007", 3)):
        index = clip.names.index(name)
        write_palette_png(mask_dir / f"{name}.png", np.where(clip.labels[index] == obj, obj, 0).astype(np.uint8))
    seq = DavisDataset(tmp_path)["judo"]
    assert sorted(seq.annotations) == ["00000", "00004", "00007"]
    assert seq.first_appearances() == {1: "00000", 2: "00004", 3: "00007"}


def test_read_annotation_fits_a_slightly_smaller_mask(tmp_path, caplog):
    size = (64, 128)  # 1% of 128 px is 1.28 px: a one-pixel-narrower mask is tolerated
    clip = make_davis(tmp_path, {"s": {"size": size, "n_frames": 2}})["s"]
    path = tmp_path / "Annotations" / "480p" / "s" / "00001.png"
    narrow = clip.labels[1][:, :127]
    write_palette_png(path, narrow)
    seq = DavisDataset(tmp_path)["s"]
    with caplog.at_level(logging.WARNING):
        fitted = seq.read_annotation("00001")
    assert fitted.shape == size
    assert set(np.unique(fitted).tolist()) == set(np.unique(narrow).tolist())
    assert (fitted != clip.labels[1]).mean() < 0.02
    assert any("00001.png" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    # A clearly wrong size is an error naming the mask file.
    write_palette_png(path, clip.labels[1][:, :100])
    with pytest.raises(InputError) as info:
        seq.read_annotation("00001")
    assert str(path) in str(info.value)
    with pytest.raises(KeyError):
        seq.read_annotation("00099")


# ---------------------------------------------------------------- YouTube-VOS


def test_ytvos_sequences_annotations_and_first_appearances(tmp_path):
    clips = make_ytvos(tmp_path, {"vid_b": {"appear_at": {2: 5}}, "vid_a": {}})
    ds = YouTubeVOSDataset(tmp_path, "train")
    assert ds.sequences == ["vid_a", "vid_b"]
    assert len(ds) == 2 and [s.name for s in ds] == ["vid_a", "vid_b"]
    seq = ds["vid_b"]
    assert len(seq.frames) == 8 and seq.frames.size == (H, W)
    assert sorted(seq.annotations) == ["00000", "00005"]  # masks only where an object appears
    assert seq.first_appearances() == {1: "00000", 2: "00005"}
    assert seq.object_frames[2][0] == "00005"  # meta.json frame lists are sorted naturally
    assert seq.object_frames[2] == sorted(seq.object_frames[2])
    np.testing.assert_array_equal(seq.read_annotation("00005"),
                                  np.where(clips["vid_b"].labels[5] == 2, 2, 0))
    assert ds["vid_a"].first_appearances() == {1: "00000", 2: "00000"}
    with pytest.raises(KeyError):
        ds["vid_c"]


def test_ytvos_meta_json_takes_precedence_over_masks(tmp_path):
    make_ytvos(tmp_path, {"v": {}})
    meta = {"videos": {"v": {"objects": {"1": {"frames": ["00003", "00010", "00002"]}, "2": {"frames": []}}}}}
    (tmp_path / "train" / "meta.json").write_text(json.dumps(meta))
    seq = YouTubeVOSDataset(tmp_path)["v"]
    assert seq.first_appearances() == {1: "00002"}  # natural order; an object with no frames is skipped


def test_ytvos_without_meta_uses_masks(tmp_path):
    make_ytvos(tmp_path, {"v": {"appear_at": {2: 3}}}, with_meta=False)
    seq = YouTubeVOSDataset(tmp_path)["v"]
    assert seq.object_frames == {}
    assert seq.first_appearances() == {1: "00000", 2: "00003"}


@pytest.mark.parametrize("content", ["{not json", "[1, 2, 3]"])
def test_ytvos_bad_meta_json(tmp_path, content):
    make_ytvos(tmp_path, {"v": {}})
    meta = tmp_path / "train" / "meta.json"
    meta.write_text(content)
    with pytest.raises(InputError) as info:
        YouTubeVOSDataset(tmp_path)
    assert str(meta) in str(info.value)


def test_ytvos_missing_layout(tmp_path):
    with pytest.raises(InputError) as info:
        YouTubeVOSDataset(tmp_path, "valid")
    assert "JPEGImages" in str(info.value)
    (tmp_path / "valid" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(InputError):
        YouTubeVOSDataset(tmp_path, "valid")  # no videos


# ---------------------------------------------------------------- open_dataset


def test_open_dataset_detects_davis(tmp_path):
    make_davis(tmp_path, {"a": {}, "b": {}}, {"2017/train.txt": ["b"]})
    ds = open_dataset(tmp_path)
    assert isinstance(ds, DavisDataset) and ds.sequences == ["a", "b"]
    ds = open_dataset(str(tmp_path), split="train")
    assert isinstance(ds, DavisDataset) and ds.sequences == ["b"]


def test_open_dataset_detects_youtube_vos(tmp_path):
    make_ytvos(tmp_path, {"v1": {}}, split="train")
    ds = open_dataset(tmp_path)
    assert isinstance(ds, YouTubeVOSDataset)
    assert ds.root == tmp_path / "train" and ds.sequences == ["v1"]


def test_open_dataset_youtube_vos_split(tmp_path):
    make_ytvos(tmp_path, {"t": {}}, split="train")
    make_ytvos(tmp_path, {"v": {}}, split="valid")
    assert open_dataset(tmp_path).sequences == ["t"]  # train first by default
    ds = open_dataset(tmp_path, split="valid")
    assert isinstance(ds, YouTubeVOSDataset) and ds.sequences == ["v"]


def test_open_dataset_unknown_layout(tmp_path):
    (tmp_path / "frames").mkdir()
    with pytest.raises(InputError) as info:
        open_dataset(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_dataset_masks_read_back_as_written(tmp_path):
    clips = make_davis(tmp_path, {"s": {"n_objects": 3}})
    mask_dir = tmp_path / "Annotations" / "480p" / "s"
    for i, name in enumerate(clips["s"].names):
        np.testing.assert_array_equal(read_mask(mask_dir / f"{name}.png"), clips["s"].labels[i])
