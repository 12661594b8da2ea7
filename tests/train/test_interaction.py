"""The interaction network's training: the simulated user, the held-out split, the config, a
tiny run that resumes, and the exported weights loading for inference."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from memvos.errors import InputError
from memvos.model.interaction import (
    InteractionNet,
    InteractionNetConfig,
    guidance_planes,
    load_click_to_mask,
    save_interaction_net,
)
from memvos.train.interaction import (
    add_click,
    click_ious,
    corrective_click,
    deepest_point,
    is_held_out,
    load_interaction_config,
    mask_loss,
    simulate_marks,
    train_interaction,
)

from .conftest import make_static_root, write_yaml


def rectangle(shape=(60, 80), box=(10, 50, 20, 70)) -> np.ndarray:
    out = np.zeros(shape, bool)
    r0, r1, c0, c1 = box
    out[r0:r1, c0:c1] = True
    return out


def test_deepest_point_is_the_middle_of_a_rectangle_and_none_for_nothing():
    assert deepest_point(rectangle()) in {(29, 44), (29, 45), (30, 44), (30, 45)}
    assert deepest_point(np.zeros((5, 5), bool)) is None


def test_corrective_click_goes_to_the_larger_error_with_its_sign():
    truth = rectangle()
    missed = truth.copy()
    missed[10:50, 45:70] = False  # the right part is missed (wide), nothing extra
    r, c, positive = corrective_click(truth, missed)
    assert positive and truth[r, c] and not missed[r, c] and 52 <= c <= 62
    extra = truth | rectangle(box=(0, 60, 0, 8))  # a strip of background added on the left
    r, c, positive = corrective_click(truth, extra)
    assert not positive and c < 8
    assert corrective_click(truth, truth) is None


def test_simulated_marks_are_on_the_right_side_of_the_boundary():
    truth = rectangle((96, 128), (20, 80, 30, 100))
    others = rectangle((96, 128), (5, 15, 5, 40))
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos, neg = simulate_marks(truth, others, rng, click_p=0.5)
        assert pos.any() and not (pos & ~truth).any() and not (neg & truth).any()


def test_guidance_planes_hold_the_marks_exactly_and_their_neighbourhood():
    pos = np.zeros((40, 60), bool)
    pos[20, 30] = True
    neg = np.zeros_like(pos)
    current = np.full(pos.shape, 0.25, np.float32)
    planes = guidance_planes(pos, neg, current)
    assert planes.shape == (5, 40, 60) and planes.dtype == np.float32
    np.testing.assert_array_equal(planes[0], pos)
    assert planes[2][20, 30] == 1 and planes[2][20, 35] < planes[2][20, 31] < 1  # falls off with distance
    assert not planes[1].any() and not planes[3].any()  # no negative marks: nothing
    np.testing.assert_array_equal(planes[4], current)


def test_click_ious_of_a_perfect_predictor_are_one_after_the_first_click():
    truth = rectangle()
    calls = []

    def predict(positive, negative, current):
        calls.append(current)
        return truth.astype(np.float32)

    assert click_ious(predict, truth, clicks=3) == [1.0, 1.0, 1.0]
    assert len(calls) == 1  # no error left: no more clicks


def test_a_positive_click_replaces_a_negative_mark_under_it():
    pos, neg = np.zeros((30, 30), bool), np.ones((30, 30), bool)
    pos, neg = add_click((pos, neg), (15, 15, True))
    assert pos[15, 15] and not neg[15, 15] and neg[0, 0]


def test_mask_loss_ignores_void_and_is_lowest_for_the_truth():
    truth = torch.zeros(1, 1, 8, 8)
    truth[..., 2:6, 2:6] = 1
    valid = torch.ones_like(truth)
    right, wrong = (truth * 20 - 10), (10 - truth * 20)
    assert mask_loss(right, truth, valid) < 0.1 < mask_loss(wrong, truth, valid)
    valid[..., :, :4] = 0  # only the right half counts: an error on the left costs nothing
    left_wrong = right.clone()
    left_wrong[..., :, :4] *= -1
    assert mask_loss(left_wrong, truth, valid) == pytest.approx(float(mask_loss(right, truth, valid)), rel=1e-4)


def test_held_out_split_is_stable_and_about_one_in_ten():
    names = [f"/data/img{i:04d}.jpg" for i in range(2000)]
    held = [n for n in names if is_held_out(n, 10)]
    assert 150 < len(held) < 250 and held == [n for n in names if is_held_out(n, 10)]
    assert not any(is_held_out(n, 0) for n in names)


def test_config_errors_are_one_line_and_name_the_file(tmp_path):
    bad = write_yaml(tmp_path / "bad.yaml", {"data": {"kind": "interaction", "roots": ["x"], "colour": 1}})
    with pytest.raises(InputError, match="bad.yaml: unknown key"):
        load_interaction_config(bad)
    crop = write_yaml(tmp_path / "crop.yaml", {"data": {"kind": "interaction", "roots": ["x"], "crop": 100}})
    with pytest.raises(InputError, match="multiple of 16"):
        load_interaction_config(crop)


def tiny_run(tmp_path, iterations: int):
    root = tmp_path / "static"
    if not root.exists():
        make_static_root(root, n=6)
    return write_yaml(tmp_path / "interaction.yaml", {
        "out": str(tmp_path / "run"),
        "data": {"kind": "interaction", "roots": [str(root)], "feature_cache": str(tmp_path / "cache"),
                 "cache_short_side": 64, "crop": 64, "held_out_every": 0, "self_correct": 0.5},
        "train": {"width": 16, "iterations": iterations, "batch_size": 2, "warmup": 1, "checkpoint_every": 2,
                  "log_every": 1, "threads": 1}})


def test_a_tiny_run_resumes_and_its_weights_load_for_inference(tmp_path):
    cfg = load_interaction_config(tiny_run(tmp_path, 2))
    train_interaction(cfg)
    first = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert first["iteration"] == 2
    cfg = load_interaction_config(tiny_run(tmp_path, 4))
    weights = train_interaction(cfg, resume=True)
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["iteration"] == 4 and len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 4
    assert any(not torch.equal(state["net"][k], first["net"][k]) for k in state["net"])  # it learned on resume

    model = load_click_to_mask(weights)
    assert model.net.config.width == 16
    rgb = torch.rand(1, 3, 72, 100)
    pos = np.zeros((72, 100), bool)
    pos[30:34, 40:44] = True
    prob = model.predict(model.features(rgb), pos, np.zeros_like(pos))
    assert prob.shape == (72, 100) and 0 <= float(prob.min()) and float(prob.max()) <= 1
    reference = InteractionNet(InteractionNetConfig(width=16), channels=model.backbone.channels)
    reference.load_state_dict(state["net"])
    planes = torch.from_numpy(guidance_planes(pos, np.zeros_like(pos)))[None]
    with torch.no_grad():
        expected = torch.sigmoid(reference(model.features(rgb), planes))[0, 0]
    assert torch.allclose(prob, expected, atol=2e-3)  # fp16 weights: the same network

    # mirrored: the mean of the frame's reading and the mirror image's, mirrored back
    both = model.predict(model.features(rgb, mirror=True), pos, np.zeros_like(pos))
    flipped = model.predict(model.features(rgb.flip(-1)), pos[:, ::-1].copy(), np.zeros_like(pos))
    assert torch.allclose(both, (prob + flipped.flip(-1)) / 2, atol=1e-5)


def test_a_run_starts_from_saved_weights_and_refuses_another_networks(tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(3)
    start = tmp_path / "start.safetensors"
    save_interaction_net(InteractionNet(InteractionNetConfig(width=16)), start)
    cfg = dataclasses.replace(load_interaction_config(tiny_run(tmp_path, 1)), init=str(start), lr=0.0)
    weights = train_interaction(cfg)  # a step at learning rate 0 leaves the start as it was
    saved, trained = load_file(str(start)), load_file(str(weights))
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)

    other = tmp_path / "other.safetensors"
    save_interaction_net(InteractionNet(InteractionNetConfig(width=32)), other)
    with pytest.raises(InputError, match="other.safetensors: weights of another interaction network"):
        train_interaction(dataclasses.replace(cfg, init=str(other), out=str(tmp_path / "run2")))


def test_snapshots_are_exported_and_memvos_average_takes_their_mean(tmp_path, capsys):
    from safetensors.torch import load_file

    from memvos.cli import main

    path = tiny_run(tmp_path, 3)
    cfg = dataclasses.replace(load_interaction_config(path), snapshots=[1, 3])
    train_interaction(cfg)
    one, three = tmp_path / "run" / "snapshot-1.safetensors", tmp_path / "run" / "snapshot-3.safetensors"
    a, b = load_file(str(one)), load_file(str(three))
    assert any(not torch.equal(a[k], b[k]) for k in a)  # two different points of the run

    out = tmp_path / "mean.safetensors"
    assert main(["average", str(out), str(one), str(three)]) == 0
    mean = load_file(str(out))
    for k in a:
        assert torch.allclose(mean[k].float(), (a[k].float() + b[k].float()) / 2, atol=2e-3, rtol=1e-3)
    assert load_click_to_mask(out).net.config == InteractionNetConfig(width=16)

    other = tmp_path / "other.safetensors"
    save_interaction_net(InteractionNet(InteractionNetConfig(width=32)), other)
    assert main(["average", str(tmp_path / "bad.safetensors"), str(one), str(other)]) == 2
    assert "other.safetensors: weights of another interaction network" in capsys.readouterr().err
    assert not (tmp_path / "bad.safetensors").exists()

    bad = write_yaml(tmp_path / "late.yaml", {"data": {"kind": "interaction", "roots": ["x"]},
                                              "train": {"iterations": 10, "snapshots": [20]}})
    with pytest.raises(InputError, match="late.yaml: train.snapshots must be iterations from 1 to 10"):
        load_interaction_config(bad)
