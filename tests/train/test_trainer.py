"""The training loop end to end on tiny configs: logs, export, exact resume after a kill,
two-process DDP on gloo, one-line errors."""

from __future__ import annotations

import csv
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from memvos.cli import main
from memvos.data.synthetic import make_synthetic_clip
from memvos.inference.core import InferenceCore
from memvos.model.factory import load_checkpoint
from memvos.train.config import OptimSpec, load_train_config, train_config_from_dict
from memvos.train.trainer import Trainer, lr_factor

from .conftest import tiny_config, write_yaml


def _log_rows(out: Path) -> list[dict]:
    with open(out / "log.csv") as fh:
        return list(csv.DictReader(fh))


def test_tiny_static_run_logs_checkpoints_and_exports(tmp_path):
    cfg = train_config_from_dict(tiny_config(tmp_path))
    final = Trainer(cfg).run()
    out = Path(cfg.out)
    rows = _log_rows(out)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert float(rows[1]["hide_p"]) == pytest.approx(0.25)  # Hide-and-Seek at 2/4 of the stage: 0.5 * 0.5
    assert (out / "last.pt").is_file()
    model, config = load_checkpoint(final)
    assert config.read.mode == "kmn"  # trained with the plain read, shipped with the kernel
    clip = make_synthetic_clip(n_frames=3, size=(48, 64), n_objects=1, seed=1)
    core = InferenceCore(model, config.inference)
    for t, frame in enumerate(clip.frames):
        probs = core.step(frame, clip.labels[0] if t == 0 else None)
    assert probs.shape == (2, 48, 64)


def test_video_stage_with_validation_keeps_the_best(tmp_path):
    data = tiny_config(tmp_path, kind="video")
    data["validate"] = {"every": 2, "root": data["data"]["roots"][0], "last": 1, "max_frames": 4, "short_side": 48}
    cfg = train_config_from_dict(data)
    Trainer(cfg).run()
    rows = _log_rows(Path(cfg.out))
    scores = [float(r["val_jf"]) for r in rows if r["val_jf"]]
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
    assert rows[0]["max_skip"] != ""
    best = torch.load(Path(cfg.out) / "best.pt", weights_only=False)
    assert best["best"] == pytest.approx(max(scores), abs=1e-4)


def _run_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "memvos", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_resume_after_a_kill_continues_as_if_never_interrupted(tmp_path):
    data = tiny_config(tmp_path, iterations=10, checkpoint_every=1)
    straight = write_yaml(tmp_path / "straight.yaml", {**data, "out": str(tmp_path / "straight")})
    killed = write_yaml(tmp_path / "killed.yaml", {**data, "out": str(tmp_path / "killed")})
    assert _run_cli(["train", "--config", str(straight)], tmp_path).wait(timeout=300) == 0

    proc = _run_cli(["train", "--config", str(killed)], tmp_path)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 300
    while time.time() < deadline and not last.exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = torch.load(last, weights_only=False)["iteration"]
    assert 1 <= interrupted_at < 10, "the run was not interrupted mid-way"
    assert _run_cli(["train", "--config", str(killed), "--resume"], tmp_path).wait(timeout=300) == 0

    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(last, weights_only=False)
    assert b["iteration"] == 10
    for key, value in a["model"].items():
        assert torch.allclose(value, b["model"][key], atol=1e-6), key
    assert [r["loss"] for r in _log_rows(tmp_path / "straight")] == [r["loss"] for r in _log_rows(tmp_path / "killed")]


def test_two_process_gloo_run_under_torchrun(tmp_path):
    cfg = write_yaml(tmp_path / "ddp.yaml", tiny_config(tmp_path, iterations=2, batch_size=1))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "memvos", "train", "--config", str(cfg)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = _log_rows(tmp_path / "run")
    assert [r["world_size"] for r in rows] == ["2", "2"]  # rank 0 alone writes the log
    assert result.stdout.count("trained 2 iterations") == 1
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["world_size"] == 2 and state["iteration"] == 2


def test_resume_without_a_checkpoint_is_a_one_line_error(tmp_path, capsys):
    cfg = write_yaml(tmp_path / "t.yaml", tiny_config(tmp_path))
    assert main(["train", "--config", str(cfg), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "last.pt" in err and "no checkpoint to resume" in err and err.count("\n") == 1


@pytest.mark.parametrize("patch,message", [
    ({"train": {"iterations": 0}}, "iterations"),
    ({"data": {"kind": "audio", "roots": ["x"]}}, "data.kind"),
    ({"optimizer": {}}, "unknown section"),
    ({"train": {"learning_rate": 1}}, "unknown key"),
    ({"train": {"iterations": 5, "snapshots": [6]}}, "train.snapshots"),
])
def test_bad_training_configs_name_the_file(tmp_path, patch, message):
    data = {"model": "frozen-key-lite0", "data": {"kind": "static", "roots": ["x"]}}
    for key, value in patch.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(data.get(key), dict) else value
    path = write_yaml(tmp_path / "bad.yaml", data)
    with pytest.raises(Exception) as info:
        load_train_config(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_export_cli_writes_what_segment_loads(tmp_path, capsys):
    cfg = train_config_from_dict(tiny_config(tmp_path, iterations=1, checkpoint_every=1))
    Trainer(cfg).run()
    out = tmp_path / "exported.safetensors"
    assert main(["export", str(Path(cfg.out) / "last.pt"), str(out)]) == 0
    model, _ = load_checkpoint(out)
    state = torch.load(Path(cfg.out) / "last.pt", weights_only=False)["model"]
    for key, value in model.state_dict().items():
        assert torch.allclose(value.float(), state[key].float(), atol=1e-2, rtol=1e-3), key  # fp16 round trip
    assert main(["export", str(tmp_path / "missing.pt"), str(out)]) == 2


def test_snapshots_are_exported_and_averaged_into_weights_segment_loads(tmp_path, capsys):
    """train.snapshots exports the weights at those iterations; `memvos average` writes their
    parameter-wise mean (fp16) with the first one's config, and refuses a different network."""
    from safetensors import safe_open

    data = tiny_config(tmp_path, iterations=3, checkpoint_every=1)
    data["train"] = {**data["train"], "snapshots": [1, 2]}
    cfg = train_config_from_dict(data)
    final = Trainer(cfg).run()
    out = Path(cfg.out)
    snapshots = [out / "snapshot-1.safetensors", out / "snapshot-2.safetensors"]
    assert all(path.is_file() for path in snapshots)
    averaged = tmp_path / "averaged.safetensors"
    assert main(["average", str(averaged), *map(str, snapshots), str(final)]) == 0
    tensors = []
    for path in (*snapshots, final, averaged):
        with safe_open(str(path), framework="pt") as fh:
            tensors.append({k: fh.get_tensor(k).float() for k in fh.keys()})  # noqa: SIM118 (a handle, not a dict)
    *inputs, mean = tensors
    changed = [k for k in mean if not torch.equal(inputs[0][k], inputs[2][k])]
    assert changed  # training moved some parameters between the snapshots
    for key in mean:
        expected = sum(t[key] for t in inputs) / 3
        assert torch.allclose(mean[key], expected, atol=2e-3, rtol=1e-3), key  # fp16 rounding
    model, config = load_checkpoint(averaged)
    assert config.to_dict() == load_checkpoint(final)[1].to_dict()
    assert torch.allclose(model.state_dict()[changed[0]].float(), mean[changed[0]])  # what segment loads
    assert main(["average", str(tmp_path / "one.safetensors"), str(final)]) == 2  # one input: nothing to average
    wider = tiny_config(tmp_path / "wider", iterations=1)
    wider["model"]["model"]["value_dim"] = 16
    other = Trainer(train_config_from_dict(wider)).run()
    assert main(["average", str(tmp_path / "mixed.safetensors"), str(final), str(other)]) == 2
    assert str(other) in capsys.readouterr().err and not (tmp_path / "mixed.safetensors").exists()


def test_learning_rate_warms_up_then_decays():
    spec = OptimSpec(iterations=100, warmup=10, min_lr_ratio=0.1)
    assert lr_factor(0, spec) == pytest.approx(0.1)
    assert lr_factor(9, spec) == pytest.approx(1.0)
    assert lr_factor(10, spec) == pytest.approx(1.0)
    assert lr_factor(55, spec) == pytest.approx(0.55)
    assert lr_factor(100, spec) == pytest.approx(0.1)
    factors = [lr_factor(i, spec) for i in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(factors))


def test_the_stm_network_trains_with_the_same_pipeline(tmp_path):
    data = tiny_config(tmp_path, iterations=2)
    data["model"] = {"model": {"type": "stm", "backbone": "efficientnet-lite0", "decoder_dim": 8, "pretrained": False},
                     "read": {"mode": "kmn", "sigma": 2.0}}
    cfg = train_config_from_dict(data)
    before = {k: v.clone() for k, v in Trainer(cfg, out=tmp_path / "unused").model.state_dict().items()}
    final = Trainer(cfg).run()
    _, config = load_checkpoint(final)
    assert config.model_type == "stm" and config.read.mode == "kmn"
    trained = torch.load(Path(cfg.out) / "last.pt", weights_only=False)["model"]
    changed = [k for k, v in trained.items() if k.startswith(("decoder", "memory_encoder"))
               and v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("decoder") for k in changed) and any(k.startswith("memory_encoder") for k in changed)


def test_interactive_model_trains_from_semi_supervised_weights_with_a_simulated_user(tmp_path):
    """scribbles: true trains with a simulated round on frame 0 and starts from a semi-supervised
    export (its value encoder widened with zero stroke weights); the stroke weights then learn."""
    semi = train_config_from_dict(tiny_config(tmp_path / "semi", iterations=1))
    start = Trainer(semi).run()
    data = tiny_config(tmp_path, kind="video", iterations=2)
    data["model"]["model"]["scribbles"] = True
    data["init"] = str(start)
    cfg = train_config_from_dict(data)
    trainer = Trainer(cfg, out=tmp_path / "unused")
    assert trainer.interactive and trainer.model.value_encoder.conv_in.weight[:, -2:].abs().sum() == 0
    _, _, counts, prior, strokes = trainer.batch(0)
    assert prior.shape == (2, int(counts.max()), 64, 64) and strokes.shape == (2, int(counts.max()), 2, 64, 64)
    assert strokes.any()  # simulated rounds draw strokes
    data["data"]["plain_fraction"] = 1.0  # every clip a plain mask: the stage-2 case through the same pass
    plain = Trainer(train_config_from_dict(data), out=tmp_path / "unused-plain")
    _, labels, counts, prior, strokes = plain.batch(0)
    assert not strokes.any()
    for b in range(len(counts)):
        for k in range(int(counts[b])):
            assert torch.equal(prior[b, k].bool(), labels[b, 0] == k + 1)
    final = Trainer(cfg).run()
    model, config = load_checkpoint(final)
    assert config.model["scribbles"] is True
    assert model.value_encoder.conv_in.weight[:, -2:].abs().sum() > 0
