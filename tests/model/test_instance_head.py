"""The instance-aware head (issue 7): object features, dynamic kernels, ASPP, the streaming
statistics, and that with the switches off (or at initialisation) nothing changes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from memvos.config import config_from_dict
from memvos.data.synthetic import make_synthetic_clip
from memvos.inference.core import InferenceConfig, InferenceCore
from memvos.inference.memory import MemoryBank, MemoryPolicy
from memvos.model.base import MemoryEntry
from memvos.model.factory import DEFAULT_WEIGHTS, build_model, load_checkpoint, save_checkpoint
from memvos.model.frozen_key import FrozenKeyConfig, FrozenKeySTM
from memvos.model.instance_head import (
    ASPP,
    DynamicKernelHead,
    ObjectFeatureStats,
    dynamic_conv,
    object_features,
    stats_from_entries,
)
from memvos.model.memory_read import ReadConfig

READ = ReadConfig(mode="stm", top_k=5, temperature=0.1)
ALL_ON = {"local_kernel": True, "global_kernel": True, "aspp": True}


def tiny(seed: int = 0, **switches) -> FrozenKeySTM:
    torch.manual_seed(seed)
    return FrozenKeySTM(FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False, read=READ, **switches))


def clip_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    frames = torch.rand(2, 3, 3, 64, 64)
    labels = torch.zeros(2, 3, 64, 64, dtype=torch.long)
    labels[:, :, 10:30, 10:30] = 1
    labels[0, :, 40:60, 40:60] = 2
    return frames, labels, torch.tensor([2, 1])


def as_trained(model: FrozenKeySTM) -> FrozenKeySTM:
    """Non-zero zero-initialised layers, as after some training (else no gradient passes them)."""
    torch.manual_seed(5)
    with torch.no_grad():
        model.decoder.predict.weight.normal_(std=0.1)
        if model.decoder.kernel is not None:
            model.decoder.kernel.last.weight.normal_(std=0.01)
        if model.aspp is not None:
            model.aspp.project.weight.normal_(std=0.1)
    return model


# ---- the pieces ------------------------------------------------------------------------------
def test_object_features_are_the_hand_computed_masked_mean():
    features = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]],
                              [[10.0, 0.0], [0.0, -10.0]]]])  # (B=1, C=2, 2, 2)
    masks = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]],  # object 1: the top-left cell
                           [[0.5, 0.5], [0.0, 1.0]],  # object 2: soft
                           [[0.0, 0.0], [0.0, 0.0]]]])  # object 3: empty
    o = object_features(features, masks)
    expected = torch.tensor([[[1.0, 10.0],
                              [(0.5 * 1 + 0.5 * 2 + 4) / 2, (0.5 * 10 - 10) / 2],
                              [0.0, 0.0]]])
    torch.testing.assert_close(o, expected)
    per_object = torch.stack([features, 2 * features, features], dim=1)  # (1, K=3, C, 2, 2)
    torch.testing.assert_close(object_features(per_object, masks)[0, 1], 2 * expected[0, 1])
    big = masks.repeat_interleave(4, -1).repeat_interleave(4, -2)  # (1, 3, 8, 8): area-resized to the grid
    torch.testing.assert_close(object_features(features, big), expected)


def test_dynamic_conv_equals_a_static_conv_with_its_weights():
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 1, 3, padding=1)
    x = torch.randn(4, 6, 9, 11)
    with torch.no_grad():
        out = dynamic_conv(x, conv.weight.expand(4, -1, -1, -1), conv.bias.expand(4))
        torch.testing.assert_close(out, conv(x))
        head = DynamicKernelHead(16, 6)
        head.start_as(conv)  # every object's generated kernel is the conv's
        torch.testing.assert_close(head(x, torch.randn(4, 16)), conv(x))
        shifted = dynamic_conv(x, conv.weight.expand(4, -1, -1, -1), conv.bias.expand(4) + 1)
        assert not torch.allclose(shifted, conv(x))


def test_kernels_differ_per_object():
    torch.manual_seed(1)
    head = DynamicKernelHead(16, 6, zero_init=False)
    x = torch.randn(1, 6, 9, 11).expand(3, -1, -1, -1)  # the same feature map for every object
    objects = torch.randn(3, 16)
    objects[2] = objects[0]
    with torch.no_grad():
        weight, bias = head.kernels(objects)
        logits = head(x, objects)
    assert weight.shape == (3, 6, 3, 3) and bias.shape == (3,)
    assert not torch.allclose(weight[0], weight[1]) and not torch.allclose(logits[0], logits[1])
    torch.testing.assert_close(weight[0], weight[2])
    torch.testing.assert_close(logits[0], logits[2])
    # in the model: swapping two objects' summaries swaps their dynamic logits
    model = as_trained(tiny(local_kernel=True, kernel_mode="replace")).eval()
    features = torch.randn(2, model.config.decoder_dim // 2, 16, 16)
    summaries = torch.randn(1, 2, 8)
    with torch.no_grad():
        a = model.decoder.last_conv(features, summaries)
        b = model.decoder.last_conv(features, summaries.flip(1))
    assert not torch.allclose(a, b)
    torch.testing.assert_close(model.decoder.last_conv(features[[1, 0]], summaries.flip(1)), a[[1, 0]])


def test_aspp_starts_as_the_identity_and_never_touches_the_read_mask():
    torch.manual_seed(2)
    aspp = ASPP(8)
    read = torch.randn(2, 3, 9, 12, 10)  # (B, K, 1 + 8, h, w)
    with torch.no_grad():
        assert torch.equal(aspp.on_read(read), read)
        aspp.project.weight.normal_()
        out = aspp.on_read(read)
    assert torch.equal(out[:, :, 0], read[:, :, 0]) and not torch.allclose(out[:, :, 1:], read[:, :, 1:])


def _entry(ids: tuple[int, ...], features: torch.Tensor) -> MemoryEntry:
    return MemoryEntry(key=torch.zeros(1, 1, 1, 1), value=torch.zeros(len(ids), 1, 1, 1), object_ids=ids,
                       object_features=features)


def test_streaming_running_mean_equals_the_batch_mean_after_evictions():
    torch.manual_seed(4)
    bank = MemoryBank(MemoryPolicy(every=3, recent=1, max_frames=3))
    stats = ObjectFeatureStats()
    fed = []
    for t in range(12):
        ids = (1,) if t < 4 else (1, 7)  # object 7 appears at frame 4
        entry = _entry(ids, torch.randn(len(ids), 5) * 10 + t)
        bank.add(t, entry, permanent=t == 0)
        stats.update(entry)
        fed.append(entry)
    stats.update(MemoryEntry(torch.zeros(1), torch.zeros(1), (1,)))  # no object features: ignored
    assert len(bank) < len(fed)  # entries were evicted ...
    for obj in (1, 7):  # ... the statistics still cover all of them
        all_o = torch.stack([e.object_features[e.object_ids.index(obj)] for e in fed if obj in e.object_ids])
        torch.testing.assert_close(stats.global_mean([obj])[0], all_o.mean(0))
        torch.testing.assert_close(stats.latest([obj])[0], all_o[-1])
    assert stats.count(1) == 12 and stats.count(7) == 8
    torch.testing.assert_close(stats.global_mean([7, 1]), stats_from_entries(fed).global_mean([7, 1]))
    assert not torch.allclose(stats.global_mean([1]), stats_from_entries(bank.entries()).global_mean([1]))
    assert torch.equal(stats.global_mean([9], like=torch.ones(5)), torch.zeros(1, 5))  # unknown id: zeros


# ---- the model ------------------------------------------------------------------------------
def test_switches_are_validated():
    with pytest.raises(ValueError, match="kernel_mode"):
        FrozenKeyConfig(kernel_mode="multiply", pretrained=False)
    with pytest.raises(TypeError, match="aspp"):
        FrozenKeyConfig(aspp="yes", pretrained=False)
    with pytest.raises(ValueError, match="kernel_mode"):
        build_model(config_from_dict({"model": {"type": "frozen-key-stm", "kernel_mode": "mul"}}), pretrained=False)


def test_switches_off_the_state_dict_and_the_outputs_are_unchanged():
    """Keys as the shipped weights'; outputs as recorded before the head existed."""
    from safetensors import safe_open

    with safe_open(str(DEFAULT_WEIGHTS), framework="pt") as fh:
        shipped = set(fh.keys())
    off = FrozenKeySTM(FrozenKeyConfig(pretrained=False, local_kernel=False, global_kernel=False, aspp=False))
    assert set(off.state_dict()) == shipped and not off.uses_instance_stats and off.optional_weights == ()

    model, config = load_checkpoint(DEFAULT_WEIGHTS)
    # recorded when the KMN argmax always ran in bfloat16 on CPU, now what a bfloat16 read does
    model.read.compute_dtype = torch.bfloat16
    model.read.config = dataclasses.replace(model.read.config, fast_select=False)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (3, 64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[10:40, 10:40] = 1
    mask[30:60, 50:90] = 2
    core = InferenceCore(model, config.inference)
    out = [core.step(f, mask if t == 0 else None) for t, f in enumerate(frames)]
    recorded = [[236.82028, 1133.38147, 5110.50244, 0.84898, 0.10326],  # computed with the code before issue 7
                [59.66761, 298.04114, 5646.02686, 0.06751, 0.46294]]
    for p, numbers in zip(out[1:], recorded):
        got = [float(x) for x in (p[1].sum(), p[2].sum(), (p**2).sum(), p[1, 20, 20], p[2, 45, 70])]
        assert got == pytest.approx(numbers, rel=1e-4, abs=1e-4)
    model.train()
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()[None] / 255
    labels = torch.from_numpy(mask.astype(np.int64))[None, None].expand(1, 3, 64, 96)
    with torch.no_grad():
        probs = model(x, labels, torch.tensor([2])).exp()
    assert [float(probs[:, :, 1].sum()), float(probs[:, :, 2].sum())] == pytest.approx([296.4879, 1431.4221], rel=1e-4)


@pytest.mark.parametrize("switches", [{"local_kernel": True, "global_kernel": True, "aspp": True},
                                      {"global_kernel": True, "kernel_mode": "replace"}])
def test_a_head_loaded_from_weights_without_it_starts_as_those_weights(tmp_path, caplog, switches):
    """``add``: zero-initialised generator and ASPP projection; ``replace``: the generator makes the
    loaded static conv. Both load through ``memvos train --init``'s loader, which logs the new keys."""
    from memvos.train.trainer import load_initial_weights

    base = as_trained(tiny(seed=0))
    path = tmp_path / "base.safetensors"
    save_checkpoint(base, config_from_dict({"model": {"type": "frozen-key-stm", "value_dim": 8, "decoder_dim": 8},
                                            "read": {"mode": "stm", "top_k": 5, "temperature": 0.1}}), path)
    base = load_checkpoint(path)[0]  # the fp16-rounded weights both models get
    head = tiny(seed=9, **switches)
    with caplog.at_level("INFO", logger="memvos.train.trainer"):
        load_initial_weights(head, str(path))
    assert "decoder.kernel.fc.0.weight" in caplog.text
    exact = switches.get("kernel_mode", "add") == "add"
    tol = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-5, "atol": 1e-5}

    frames, labels, counts = clip_batch()
    base.train(), head.train()
    with torch.no_grad():
        torch.testing.assert_close(head(frames, labels, counts), base(frames, labels, counts), **tol)
    base.eval(), head.eval()
    clip = make_synthetic_clip(n_frames=4, size=(48, 64), n_objects=2, seed=2)
    cores = [InferenceCore(m, InferenceConfig(memory=MemoryPolicy(every=0, recent=1, max_frames=2))) for m in (base, head)]
    for t, frame in enumerate(clip.frames):
        a, b = (c.step(frame, clip.labels[0] if t == 0 else None) for c in cores)
        torch.testing.assert_close(b, a, **tol)


def test_training_step_with_every_switch_on_reaches_the_kernel_generator():
    model = tiny(**ALL_ON)
    with torch.no_grad():
        model.decoder.predict.weight.normal_(std=0.1)  # as the shipped weights: the static conv is trained
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    frames, labels, counts = clip_batch()
    fc = model.decoder.kernel.fc
    for step in range(2):
        optimizer.zero_grad()
        out = model(frames, labels, counts)
        assert out.shape == (2, 2, 3, 64, 64) and torch.isfinite(out).all()
        torch.nn.functional.nll_loss(out.flatten(0, 1), labels[:, 1:].flatten(0, 1)).backward()
        assert fc[-1].weight.grad.abs().sum() > 0 and model.aspp.project.weight.grad.abs().sum() > 0
        if step == 0:  # zero-initialised last layer: nothing passes it yet
            assert fc[0].weight.grad.abs().sum() == 0
        optimizer.step()
    assert fc[0].weight.grad.abs().sum() > 0 and fc[2].weight.grad.abs().sum() > 0  # after one step: all layers
    assert model.aspp.branches[1].weight.grad.abs().sum() > 0


def test_interactive_training_pass_with_the_head():
    model = as_trained(tiny(scribbles=True, **ALL_ON)).train()
    frames, labels, counts = clip_batch()
    prior = torch.zeros(2, 2, 64, 64)
    strokes = torch.zeros(2, 2, 2, 64, 64)
    strokes[:, 0, 0, 16:24, 8:24] = 1
    out = model(frames, labels, counts, (prior, strokes))
    assert out.shape == (2, 3, 3, 64, 64)
    assert torch.allclose(out.exp().sum(2), torch.ones(2, 3, 64, 64), atol=1e-4)
    out.mean().backward()
    assert model.decoder.kernel.fc[0].weight.grad.abs().sum() > 0


def test_streaming_engine_with_the_head_keeps_running_statistics():
    model = as_trained(tiny(**ALL_ON)).eval()
    entries = []
    memorize = model.memorize

    def recording(*args, **kwargs):
        entries.append(memorize(*args, **kwargs))
        return entries[-1]

    model.memorize = recording
    clip = make_synthetic_clip(n_frames=5, size=(48, 64), n_objects=2, seed=1)
    core = InferenceCore(model, InferenceConfig(memory=MemoryPolicy(every=0, recent=1, max_frames=2)))
    for t, frame in enumerate(clip.frames):
        probs = core.step(frame, clip.labels[0] if t == 0 else None)
        assert probs.shape == (3, 48, 64)
        torch.testing.assert_close(probs.sum(0), torch.ones(48, 64), rtol=0, atol=1e-4)
    branch = core.branches[0][0]
    assert len(branch.memory) == 2 and len(entries) == 5  # the bank evicted, the statistics did not
    assert entries[0].object_features.shape == (2, 8)
    features = torch.stack([e.object_features for e in entries])  # (T, K, C)
    torch.testing.assert_close(branch.instance.global_mean(core.object_ids), features.mean(0))
    torch.testing.assert_close(branch.instance.latest(core.object_ids), features[-1])
    # without the engine's statistics, segment falls back to those of the entries it is given
    query = model.encode_query(torch.rand(1, 3, 48, 64))
    memory = branch.memory.entries()
    with torch.no_grad():
        fallback = model.segment(query, memory, core.object_ids)
        torch.testing.assert_close(fallback, model.segment(query, memory, core.object_ids,
                                                           instance=stats_from_entries(memory)))
        assert not torch.allclose(fallback, model.segment(query, memory, core.object_ids, instance=branch.instance))
