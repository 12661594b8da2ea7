"""The command line end to end: `memvos eval` and `memvos demo`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from memvos.cli import main
from memvos.data.masks import read_mask
from memvos.data.video import VideoFrames
from memvos.data.writers import write_palette_png
from memvos.eval.evaluate import evaluate_folders
from memvos.eval.metrics import jaccard


@pytest.fixture
def folders(tmp_path):
    for t in range(5):
        gt = np.zeros((30, 40), np.uint8)
        gt[5:15, 5 + t : 15 + t] = 2
        pred = np.zeros_like(gt)
        pred[5:15, 7 + t : 17 + t] = 2
        write_palette_png(tmp_path / "gt" / "clip" / f"{t:05d}.png", gt)
        write_palette_png(tmp_path / "pred" / "clip" / f"{t:05d}.png", pred)
    return tmp_path


def test_eval_prints_tables_and_writes_json_and_csv(folders, capsys):
    code = main(["eval", str(folders / "gt"), str(folders / "pred"),
                 "--json", str(folders / "r.json"), "--csv", str(folders / "csv")])
    assert code == 0
    out = capsys.readouterr().out
    assert "J&F-Mean" in out and "clip" in out
    data = json.loads((folders / "r.json").read_text())
    assert data["J-Mean"] == pytest.approx(8 / 12)  # 10x8 overlap, 10x12 union
    assert (folders / "csv" / "global_results.csv").is_file()


@pytest.mark.parametrize("args, fragment", [
    (["eval", "{root}/nope", "{root}/pred"], "ground-truth folder not found"),
    (["eval", "{root}/gt", "{root}/nope"], "prediction folder not found"),
])
def test_eval_bad_input_is_one_line_error(folders, capsys, args, fragment):
    code = main([a.format(root=folders) for a in args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and fragment in err and "nope" in err


def test_eval_missing_frame_names_it(folders, capsys):
    (folders / "pred" / "clip" / "00002.png").unlink()
    assert main(["eval", str(folders / "gt"), str(folders / "pred"), "--json", str(folders / "r.json")]) == 2
    assert "00002.png" in capsys.readouterr().err
    assert not (folders / "r.json").exists()  # no partial output


def test_demo_writes_masks_video_and_scores(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    frames = sorted((out / "frames").glob("*.jpg"))
    masks = sorted((out / "masks" / "demo").glob("*.png"))
    assert len(frames) == len(masks) == 40
    np.testing.assert_array_equal(read_mask(masks[0]), read_mask(out / "gt" / "demo" / "00000.png"))
    video = VideoFrames(out / "overlay.mp4")
    assert len(video) == 40 and video.fps == pytest.approx(12.0) and video.size == (360, 640)
    expected = evaluate_folders(out / "gt", out / "masks", workers=1).global_statistics()["J&F-Mean"]
    assert f"{expected:.3f}" in printed


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "memvos", "--help"], capture_output=True, text=True, check=True)
    assert "demo" in proc.stdout and "eval" in proc.stdout


@pytest.fixture(scope="module")
def video_and_masks(tmp_path_factory):
    from memvos.data.synthetic import make_synthetic_clip
    from memvos.data.video import write_video

    root = tmp_path_factory.mktemp("seg")
    clip = make_synthetic_clip(n_frames=8, size=(96, 160), n_objects=2, seed=6, appear_at={2: 3})
    write_video(root / "in.mp4", clip.frames, fps=10)
    write_palette_png(root / "first.png", clip.labels[0])
    masks = root / "masks"
    write_palette_png(masks / "00000.png", clip.labels[0])
    write_palette_png(masks / "00003.png", np.where(clip.labels[3] == 2, 2, 0).astype(np.uint8))
    return root, clip


def test_segment_video_end_to_end(video_and_masks, capsys):
    root, clip = video_and_masks
    out = root / "out"
    code = main(["segment", str(root / "in.mp4"), "--mask", str(root / "first.png"), "--out", str(out),
                 "--overlay", str(root / "overlay.mp4")])
    assert code == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == [f"{i:05d}.png" for i in range(8)]
    assert len(VideoFrames(root / "overlay.mp4")) == 8
    np.testing.assert_array_equal(read_mask(out / "00000.png"), clip.labels[0])
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "config frozen-key-lite0," in printed  # small frames: the stride-8 network


def test_override_read_sets_given_switches_and_keeps_the_rest():
    from types import SimpleNamespace

    from memvos.model.loading import override_read
    from memvos.model.memory_read import ReadConfig

    models = [SimpleNamespace(read=SimpleNamespace(config=ReadConfig(mode="kmn", sigma=4.0, argmax_stride=2)))
              for _ in range(2)]
    override_read(models, mode="stm", argmax_stride=None)
    for model in models:
        assert model.read.config == ReadConfig(mode="stm", sigma=4.0, argmax_stride=2)
    with pytest.raises(ValueError, match="read mode"):
        override_read(models, mode="dot")


def test_segment_read_flag_switches_the_memory_read(video_and_masks, capsys):
    root, _clip = video_and_masks
    assert main(["segment", str(root / "in.mp4"), "--mask", str(root / "first.png"),
                 "--out", str(root / "out-stm"), "--read", "stm"]) == 0
    assert "read stm)" in capsys.readouterr().out


def test_segment_480p_runs_the_fast_network_by_default(tmp_path, capsys):
    from memvos.data.synthetic import make_synthetic_clip

    clip = make_synthetic_clip(n_frames=4, size=(480, 640), n_objects=1, seed=3)
    clip.save(tmp_path / "frames")
    write_palette_png(tmp_path / "first.png", clip.labels[0])
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "frames"), "--mask", str(tmp_path / "first.png"), "--out", str(out)]) == 0
    assert "config frozen-key-lite0-fast," in capsys.readouterr().out
    assert jaccard(read_mask(out / f"{clip.names[-1]}.png") == 1, clip.labels[-1] == 1) > 0.8
    small = tmp_path / "small"  # processed at 240p: the stride-8 network
    assert main(["segment", str(tmp_path / "frames"), "--mask", str(tmp_path / "first.png"), "--out", str(small),
                 "--scales", "240"]) == 0
    assert "config frozen-key-lite0," in capsys.readouterr().out


def test_segment_with_a_mask_folder_adds_the_late_object(video_and_masks):
    root, _clip = video_and_masks
    out = root / "out_folder"
    assert main(["segment", str(root / "in.mp4"), "--masks", str(root / "masks"), "--out", str(out)]) == 0
    assert not (read_mask(out / "00002.png") == 2).any()
    assert (read_mask(out / "00005.png") == 2).any()


@pytest.mark.parametrize("mode", ["--reid", "--offline"])
def test_segment_with_reidentification_or_offline(tmp_path, mode):
    """Both modes write a full set of masks from a video; nothing is lost on this clip, so both
    objects are still tracked at the end."""
    from memvos.data.synthetic import make_synthetic_clip
    from memvos.data.video import write_video

    clip = make_synthetic_clip(n_frames=8, size=(160, 256), n_objects=2, seed=6)
    write_video(tmp_path / "in.mp4", clip.frames, fps=10)
    write_palette_png(tmp_path / "first.png", clip.labels[0])
    out = tmp_path / "out"
    assert main(["segment", str(tmp_path / "in.mp4"), "--mask", str(tmp_path / "first.png"), "--out", str(out),
                 mode]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:05d}.png" for i in range(8)]
    np.testing.assert_array_equal(read_mask(out / "00000.png"), clip.labels[0])
    last = read_mask(out / "00007.png")
    for obj in (1, 2):
        assert jaccard(last == obj, clip.labels[7] == obj) > 0.7


@pytest.mark.parametrize("extra, fragment", [
    (["--mask", "{root}/nope.png"], "nope.png"),
    (["--mask", "{root}/first.png", "--mask-frame", "99"], "outside the video"),
    (["--mask", "{root}/first.png", "--scales", "abc"], "--scales"),
    (["--mask", "{root}/first.png", "--config", "{repo}/configs/networks/kmn-lite0.yaml"], "checkpoint"),
])
def test_segment_bad_input_one_line_and_no_output(video_and_masks, capsys, extra, fragment):
    root, _ = video_and_masks
    out = root / "never"
    repo = Path(__file__).resolve().parents[1]
    code = main(["segment", str(root / "in.mp4"), "--out", str(out), *[a.format(root=root, repo=repo) for a in extra]])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1
    assert not out.exists()


def test_segment_refuses_an_empty_first_mask(video_and_masks, capsys):
    root, clip = video_and_masks
    write_palette_png(root / "empty.png", np.zeros_like(clip.labels[0]))
    assert main(["segment", str(root / "in.mp4"), "--mask", str(root / "empty.png"), "--out", str(root / "x")]) == 2
    assert "no object" in capsys.readouterr().err


def test_segment_fails_midway_on_a_corrupt_frame_and_leaves_nothing(tmp_path, capsys):
    from memvos.data.synthetic import make_synthetic_clip

    clip = make_synthetic_clip(n_frames=5, size=(64, 96), n_objects=1, seed=2)
    clip.save(tmp_path / "frames")
    (tmp_path / "frames" / "00003.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    write_palette_png(tmp_path / "m.png", clip.labels[0])
    code = main(["segment", str(tmp_path / "frames"), "--mask", str(tmp_path / "m.png"),
                 "--out", str(tmp_path / "out"), "--overlay", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and "00003.jpg" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "m.png"]  # no masks, no video, no temp files


def test_interactive_eval_runs_the_protocol_on_a_davis_folder(tmp_path, capsys):
    """The real interactive model (shipped weights) on a tiny synthetic DAVIS folder: the robot's
    scribbles drive two rounds, and the summary is written as JSON."""
    pytest.importorskip("davisinteractive")
    from memvos.data.synthetic import make_synthetic_clip

    root = tmp_path / "davis"
    clip = make_synthetic_clip(n_frames=6, size=(96, 128), n_objects=2, seed=2)
    clip.save(root / "JPEGImages" / "480p" / "blobs", root / "Annotations" / "480p" / "blobs")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "train.txt").write_text("blobs\n")
    out = tmp_path / "summary.json"
    rc = main(["interactive-eval", "--davis", str(root), "--max-interactions", "2", "--threads", "1",
               "--json", str(out)])
    assert rc == 0
    summary = json.loads(out.read_text())
    assert 0 < summary["auc"] <= 1 and len(summary["per_sequence"]["blobs"]["jf_per_interaction"]) == 2
    assert summary["per_sequence"]["blobs"]["jf_per_interaction"][0] > 0.3  # strokes on 2 objects, one round
    assert "AUC" in capsys.readouterr().out


def test_interactive_eval_bad_folder_is_one_line_error(tmp_path, capsys):
    assert main(["interactive-eval", "--davis", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("memvos: error:") and "nope" in err and "\n" not in err
