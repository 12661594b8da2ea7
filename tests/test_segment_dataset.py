"""Dataset mode of `memvos segment ROOT --out OUT` on DAVIS and YouTube-VOS folders built from
synthetic clips: first-appearance annotations, failures kept to their sequence, re-runs,
--sequences, --shard and 2 processes under torchrun."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from memvos.cli import main
from memvos.data.datasets import DavisDataset
from memvos.data.frames import FolderFrames
from memvos.data.masks import read_mask
from memvos.data.synthetic import make_synthetic_clip
from memvos.data.writers import write_palette_png
from memvos.segment import segment_frames
from memvos.segment_dataset import DatasetReport, FirstAppearances, SequenceResult, is_complete

H, W = 64, 96


def make_davis(root, specs: dict[str, dict]) -> dict:
    """DAVIS layout, annotations on every frame (as DAVIS train/val); spec: make_synthetic_clip kwargs."""
    clips = {}
    for k, (name, kwargs) in enumerate(specs.items()):
        clip = make_synthetic_clip(**{"n_frames": 6, "size": (H, W), "n_objects": 2, "seed": k, **kwargs})
        clip.save(root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name)
        clips[name] = clip
    return clips


def pngs(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


@pytest.fixture(scope="module")
def davis(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    clips = make_davis(root, {"aa": {}, "bb": {"appear_at": {2: 3}}, "cc": {"n_objects": 1}})
    return root, clips


@pytest.fixture(scope="module")
def full_run(davis, tmp_path_factory):
    """One single-process run over the whole folder, one thread (the reference for the splits)."""
    root, _ = davis
    out = tmp_path_factory.mktemp("full") / "out"
    assert main(["segment", str(root), "--out", str(out), "--threads", "1"]) == 0
    return out


def engine_labels(frames_dir, masks: dict[int, np.ndarray]) -> np.ndarray:
    """The library's own loop (segment_frames) on the frames as stored, one thread: the reference."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return segment_frames(FolderFrames(frames_dir), masks)
    finally:
        torch.set_num_threads(threads)


def test_every_sequence_is_written_and_objects_start_where_they_first_appear(davis, full_run):
    """Dataset mode gives exactly the engine's result from each object's first annotation."""
    root, clips = davis
    for name, clip in clips.items():
        assert sorted(p.name for p in (full_run / name).iterdir()) == [f"{n}.png" for n in clip.names]
    labels = clips["bb"].labels
    given = {0: labels[0], 3: np.where(labels[3] == 2, 2, 0).astype(np.uint8)}  # object 2 from frame 3 on
    expected = engine_labels(root / "JPEGImages" / "480p" / "bb", given)
    got = np.stack([read_mask(full_run / "bb" / f"{t:05d}.png") for t in range(6)])
    np.testing.assert_array_equal(got, expected)
    assert not (got[:3] == 2).any() and (got[3] == 2).sum() == (labels[3] == 2).sum()
    np.testing.assert_array_equal(got[0], labels[0])


def test_later_annotations_of_known_objects_are_not_used(tmp_path):
    """DAVIS ships masks for every frame; only each object's first one may be used (the protocol):
    a false mask on frame 4 changes nothing."""
    clips = make_davis(tmp_path / "d", {"aa": {"n_objects": 1}})
    wrong = np.zeros((H, W), np.uint8)
    wrong[:8, :8] = 1
    write_palette_png(tmp_path / "d" / "Annotations" / "480p" / "aa" / "00004.png", wrong)
    assert main(["segment", str(tmp_path / "d"), "--out", str(tmp_path / "out"), "--threads", "1"]) == 0
    got = np.stack([read_mask(tmp_path / "out" / "aa" / f"{t:05d}.png") for t in range(6)])
    np.testing.assert_array_equal(got, engine_labels(tmp_path / "d" / "JPEGImages" / "480p" / "aa",
                                                     {0: clips["aa"].labels[0]}))
    assert not np.array_equal(got[4], wrong)


def test_first_appearances_gives_each_object_once_and_clears_the_others(tmp_path):
    make_davis(tmp_path, {"bb": {"appear_at": {2: 3}}})
    seq = DavisDataset(tmp_path)["bb"]
    given = FirstAppearances(seq)
    calls = [given(t) for t in range(6)]
    assert [c is None for c in calls] == [False, True, True, False, True, True]
    labels0, ids0 = calls[0]
    assert ids0 == (1,) and set(np.unique(labels0)) == {0, 1}
    labels3, ids3 = calls[3]
    assert ids3 == (2,) and set(np.unique(labels3)) == {0, 2}  # object 1's pixels cleared
    assert given.seen == {1, 2}


def test_youtube_vos_split_folder_with_masks_only_at_first_appearance(tmp_path):
    """ROOT may be the split folder itself or the dataset root; the late object's mask holds that
    object only, and the object tracked before it is not erased by that mask."""
    clip = make_synthetic_clip(n_frames=6, size=(H, W), n_objects=2, seed=3, appear_at={2: 2})
    split = tmp_path / "yt" / "valid"
    clip.save(split / "JPEGImages" / "v1")
    late = np.where(clip.labels[2] == 2, 2, 0).astype(np.uint8)
    write_palette_png(split / "Annotations" / "v1" / "00000.png", clip.labels[0])
    write_palette_png(split / "Annotations" / "v1" / "00002.png", late)
    for root, out in ((split, tmp_path / "o1"), (tmp_path / "yt", tmp_path / "o2")):
        assert main(["segment", str(root), "--out", str(out), "--threads", "1"]) == 0
    assert pngs(tmp_path / "o1") == pngs(tmp_path / "o2")
    got = np.stack([read_mask(tmp_path / "o1" / "v1" / f"{t:05d}.png") for t in range(6)])
    np.testing.assert_array_equal(got, engine_labels(split / "JPEGImages" / "v1", {0: clip.labels[0], 2: late}))
    assert (got[2] == 1).any() and (got[5] == 1).any() and (got[5] == 2).any()


def test_a_failing_sequence_is_reported_and_the_others_are_kept(tmp_path, capsys):
    clips = make_davis(tmp_path / "d", {"aa": {}, "bad": {}, "cc": {}, "empty": {}})
    (tmp_path / "d" / "JPEGImages" / "480p" / "bad" / "00003.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    for name in clips["empty"].names:
        write_palette_png(tmp_path / "d" / "Annotations" / "480p" / "empty" / f"{name}.png", np.zeros((H, W), np.uint8))
    code = main(["segment", str(tmp_path / "d"), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["aa", "cc"]  # no partial folder, no temp
    summary = captured.out.splitlines()[0]
    assert summary.startswith("segmented 2 sequences (12 frames)") and "2 failed: bad, empty" in summary
    assert "00003.jpg" in captured.out and "no object" in captured.out


def test_a_rerun_skips_complete_sequences_and_overwrite_redoes_them(davis, tmp_path, capsys):
    root, _ = davis
    out = tmp_path / "out"
    assert main(["segment", str(root), "--out", str(out), "--sequences", "aa", "cc"]) == 0
    stamp = (out / "aa" / "00000.png").stat().st_mtime_ns
    (out / "cc" / "00005.png").unlink()  # an incomplete folder is done again
    capsys.readouterr()
    assert main(["segment", str(root), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith("segmented 2 sequences (12 frames)")  # bb and cc
    assert (out / "aa" / "00000.png").stat().st_mtime_ns == stamp and is_complete(out / "cc", [f"{t:05d}" for t in range(6)])
    assert main(["segment", str(root), "--out", str(out), "--overwrite", "--sequences", "aa"]) == 0
    assert (out / "aa" / "00000.png").stat().st_mtime_ns != stamp


@pytest.mark.parametrize("extra, fragment", [
    (["--sequences", "aa", "nope"], "no sequence named nope"),
    (["--overlay", "{tmp}/o.mp4"], "--overlay is for one video"),
    (["--shard", "2/2"], "--shard"),
    (["--shard", "x"], "K/N"),
])
def test_dataset_mode_bad_arguments_are_one_line_errors(davis, tmp_path, one_line_error, extra, fragment):
    root, _ = davis
    args = [a.format(tmp=tmp_path) for a in extra]
    assert main(["segment", str(root), "--out", str(tmp_path / "out"), *args]) == 2
    one_line_error(fragment)
    assert not (tmp_path / "out").exists()


def test_a_plain_frame_folder_without_mask_is_a_one_line_error(davis, tmp_path, one_line_error):
    root, _ = davis
    assert main(["segment", str(root / "JPEGImages" / "480p" / "aa"), "--out", str(tmp_path / "o")]) == 2
    one_line_error("not a DAVIS or YouTube-VOS dataset folder")


def test_shards_partition_the_sequences_and_their_union_is_the_full_run(davis, full_run, tmp_path):
    root, _ = davis
    out = tmp_path / "out"
    parts = []
    for k in range(2):
        assert main(["segment", str(root), "--out", str(out / str(k)), "--shard", f"{k}/2", "--threads", "1"]) == 0
        parts.append({p.name for p in (out / str(k)).iterdir()})
    assert parts[0] & parts[1] == set() and parts[0] | parts[1] == {"aa", "bb", "cc"}
    union = {**pngs(out / "0"), **pngs(out / "1")}
    assert union == pngs(full_run)


def test_two_processes_under_torchrun_write_the_single_process_result(davis, full_run, tmp_path):
    """Two local CPU ranks split the sequences; rank 0 prints one merged summary."""
    root, _ = davis
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "memvos", "segment", str(root), "--out", str(out), "--threads", "1"],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    summaries = [line for line in run.stdout.splitlines() if line.startswith("segmented")]
    assert len(summaries) == 1 and "3 sequences (18 frames)" in summaries[0] and "over 2 processes" in summaries[0]
    assert pngs(out) == pngs(full_run)


def test_merged_report_counts_every_process():
    a = DatasetReport([SequenceResult("x", "done", 10, 1.0), SequenceResult("z", "failed", reason="bad")], 2.0)
    b = DatasetReport([SequenceResult("y", "done", 30, 3.0), SequenceResult("w", "skipped", 5)], 4.0)
    merged = DatasetReport.merge([a, b])
    assert [r.name for r in merged.results] == ["w", "x", "y", "z"]
    assert merged.frames == 40 and merged.seconds == 4.0 and merged.fps == 10.0
    assert merged.summary() == ("segmented 2 sequences (40 frames) in 4.0 s, 10.00 frames/s end to end over 2 "
                                "processes; 1 already complete, skipped; 1 failed: z")
