import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from memvos.inference.core import InferenceConfig, InferenceCore
from memvos.model.frozen_key import FrozenKeyConfig, FrozenKeySTM
from memvos.model.memory_read import ReadConfig


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False,
                          read=ReadConfig(mode="stm", top_k=5, temperature=0.1))
    return FrozenKeySTM(cfg)


def test_backbone_is_frozen_and_stays_in_eval_mode(model):
    model.train()
    assert not model.backbone.training
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())


def test_training_pass_shapes_distribution_and_gradients(model):
    model.train()
    frames = torch.rand(2, 3, 3, 64, 64)
    labels = torch.zeros(2, 3, 64, 64, dtype=torch.long)
    labels[:, :, 10:30, 10:30] = 1
    labels[0, :, 40:60, 40:60] = 2
    counts = torch.tensor([2, 1])
    out = model(frames, labels, counts)
    assert out.shape == (2, 2, 3, 64, 64)
    assert torch.allclose(out.exp().sum(2), torch.ones(2, 2, 64, 64), atol=1e-4)
    assert out.exp()[1, :, 2].max() < 1e-3  # sample 1 has one object: channel 2 holds no mass
    out.mean().backward()
    assert model.value_encoder.conv_in.weight.grad is not None and model.decoder.predict.weight.grad is not None
    model.zero_grad()


def test_value_maps_start_with_the_pooled_mask(model):
    query = model.encode_query(torch.rand(1, 3, 64, 64))
    probs = torch.zeros(1, 2, 64, 64)
    probs[0, 0, :32] = 1
    probs[0, 1, 32:, :16] = 1
    values = model.encode_values(query, probs)  # (1, 2, 1 + 8, 8, 8)
    assert values.shape == (1, 2, 9, 8, 8)
    assert torch.allclose(values[:, :, 0], F.adaptive_avg_pool2d(probs, (8, 8)))


def test_engine_tracks_an_object_added_later(model):
    model.eval()
    core = InferenceCore(model, InferenceConfig())
    frame = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    first = np.zeros((64, 80), np.uint8)
    first[5:25, 5:25] = 1
    core.step(frame, first)
    later = np.zeros((64, 80), np.uint8)
    later[40:60, 40:70] = 4
    probs = core.step(frame, later)
    assert core.object_ids == (1, 4)
    labels = core.labels(probs)
    assert ((labels == 4) == (later == 4)).all()  # the new object exactly where annotated
    assert set(np.unique(labels[later == 0]).tolist()) <= {0, 1}  # elsewhere: the earlier object's prediction
    probs = core.step(frame)
    assert probs.shape == (3, 64, 80)
    assert torch.allclose(probs.sum(0), torch.ones(64, 80), atol=1e-5)


def test_residual_decoder_starts_as_label_propagation():
    """Before training, the prediction is the read mask itself (the training-free result)."""
    torch.manual_seed(1)
    net = FrozenKeySTM(FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False,
                                       read=ReadConfig(mode="stm", top_k=5, temperature=0.1))).eval()
    with torch.no_grad():
        frame = torch.rand(1, 3, 64, 64)
        query = net.encode_query(frame)
        probs = torch.zeros(1, 1, 64, 64)
        probs[..., 16:48, 8:40] = 1
        keys = query.key[:, :, None]
        values = net.encode_values(query, probs)[:, :, :, None]  # (1, K, Cr, 1, h, w)
        logits = net.object_logits(query, keys, values)
        read_mask = net.read(keys, values.flatten(1, 2), query.key)[:, 0:1]
        prior = F.interpolate(read_mask, size=(64, 64), mode="bilinear", align_corners=False).clamp(0.01, 0.99)
    torch.testing.assert_close(torch.sigmoid(logits), prior, atol=1e-5, rtol=1e-4)  # (1, K=1, H, W)


@pytest.fixture(scope="module")
def interactive():
    torch.manual_seed(1)
    cfg = FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False, scribbles=True,
                          read=ReadConfig(mode="stm", top_k=5, temperature=0.1))
    return FrozenKeySTM(cfg)


def test_strokes_are_painted_into_the_memorised_mask_and_reach_the_encoder(interactive):
    interactive.eval()
    query = interactive.encode_query(torch.rand(1, 3, 64, 64))
    probs = torch.zeros(1, 1, 64, 64)
    strokes = torch.zeros(1, 1, 2, 64, 64)
    strokes[0, 0, 0, 8:16, 8:16] = 1  # positive: a cell's worth of pixels becomes object
    values = interactive.encode_values(query, probs, strokes)
    assert values[0, 0, 0, 1, 1] == 1 and values[0, 0, 0].sum() == 1  # channel 0: the painted, pooled mask
    torch.nn.init.normal_(interactive.value_encoder.conv_in.weight)
    thin = torch.zeros(1, 1, 2, 64, 64)
    thin[0, 0, 1, 40, :] = 1  # a 1-pixel negative line survives pooling as a stroke channel
    assert not torch.equal(interactive.encode_values(query, probs, thin), interactive.encode_values(query, probs))


def test_interactive_training_pass_predicts_the_annotated_frame_too(interactive):
    interactive.train()
    frames = torch.rand(2, 3, 3, 64, 64)
    labels = torch.zeros(2, 3, 64, 64, dtype=torch.long)
    labels[:, :, 10:30, 10:30] = 1
    labels[0, :, 40:60, 40:60] = 2
    counts = torch.tensor([2, 1])
    prior = torch.zeros(2, 2, 64, 64)
    strokes = torch.zeros(2, 2, 2, 64, 64)
    strokes[:, 0, 0, 16:24, 8:24] = 1  # a thick positive stroke filling two key cells
    torch.nn.init.normal_(interactive.decoder.predict.weight, std=0.01)  # as after some training (it starts at 0)
    out = interactive(frames, labels, counts, (prior, strokes))
    assert out.shape == (2, 3, 3, 64, 64)  # all three frames, the annotated one first
    assert torch.allclose(out.exp().sum(2), torch.ones(2, 3, 64, 64), atol=1e-4)
    assert out[:, 0, 1, 18:22, 10:22].exp().mean() > 0.5  # the painted prior carries the stroke (decoder untrained)
    out.mean().backward()
    assert interactive.value_encoder.conv_in.weight.grad[:, -2:].abs().sum() > 0  # stroke channels learn
    interactive.zero_grad()


def test_semi_supervised_weights_widen_into_an_interactive_model_unchanged(model, interactive):
    from memvos.train.trainer import widen_inputs

    state = widen_inputs(model.state_dict(), interactive.state_dict())
    interactive.load_state_dict(state)
    assert interactive.value_encoder.conv_in.weight[:, -2:].abs().sum() == 0
    model.eval(), interactive.eval()
    query = model.encode_query(torch.rand(1, 3, 64, 64))
    probs = torch.rand(1, 2, 64, 64)
    assert torch.allclose(model.encode_values(query, probs), interactive.encode_values(query, probs), atol=1e-6)


def test_keys_at_stride_16_pool_the_stride_8_features_onto_their_grid():
    """The fast preset's network: the same parameters as at stride 8 (weights carry over), keys
    and values on a grid 2x coarser, masks still at full size."""
    torch.manual_seed(0)
    cfg = FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False, output_stride=16,
                          read=ReadConfig(mode="kmn", sigma=2.0, top_k=5, temperature=0.1))
    net16 = FrozenKeySTM(cfg).eval()
    net8 = FrozenKeySTM(FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False))
    assert net8.load_state_dict(net16.state_dict())  # every key fits: only the grid differs
    query = net16.encode_query(torch.rand(1, 3, 96, 128))
    assert query.key.shape[-2:] == query.f8.shape[-2:] == (6, 8) and query.f4.shape[-2:] == (24, 32)
    core = InferenceCore(net16, InferenceConfig())
    frame = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    first = np.zeros((96, 128), np.uint8)
    first[16:64, 32:96] = 1
    core.step(frame, first)
    probs = core.step(frame)
    assert probs.shape == (2, 96, 128)
    assert torch.allclose(probs.sum(0), torch.ones(96, 128), atol=1e-5)


def test_learned_key_projection_starts_as_the_frozen_keys_and_trains():
    torch.manual_seed(0)
    read = ReadConfig(mode="stm", top_k=5, temperature=0.1)
    plain = FrozenKeySTM(FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False, output_stride=16, read=read))
    learned = FrozenKeySTM(FrozenKeyConfig(value_dim=8, decoder_dim=8, pretrained=False, output_stride=16, read=read,
                                           key_projection=True))
    missing, unexpected = learned.load_state_dict(plain.state_dict(), strict=False)
    assert all(k.startswith("key_proj.") for k in missing) and not unexpected
    assert "key_proj." in learned.optional_weights
    rgb = torch.rand(1, 3, 64, 64)
    torch.testing.assert_close(learned.encode_query(rgb).key, plain.encode_query(rgb).key)  # zero start
    frames = torch.rand(1, 3, 3, 64, 64)
    labels = torch.zeros(1, 3, 64, 64, dtype=torch.long)
    labels[:, :, 8:40, 8:40] = 1
    learned.train()
    learned(frames, labels, torch.tensor([1])).mean().backward()
    assert learned.key_proj.weight.grad.abs().sum() > 0


def test_training_from_features_equals_training_from_frames(model):
    model.eval()
    frames = torch.rand(1, 3, 3, 64, 64)
    labels = torch.zeros(1, 3, 64, 64, dtype=torch.long)
    labels[:, :, 10:40, 20:50] = 1
    with torch.no_grad():
        f4, f8, fk = model.backbone(frames.flatten(0, 1))
        from_features = model(None, labels, torch.tensor([1]),
                              features=tuple(x.unflatten(0, (1, 3)) for x in (f4, f8, fk)))
        from_frames = model(frames, labels, torch.tensor([1]))
    torch.testing.assert_close(from_features, from_frames)


def test_a_coarse_entry_averages_cells_and_keeps_unit_keys(model):
    model.eval()
    query = model.encode_query(torch.rand(1, 3, 64, 96))
    probs = torch.zeros(1, 1, 64, 96)
    probs[0, 0, :16, :8] = 1  # an object in the top-left corner
    entry = model.memorize(torch.rand(1, 3, 64, 96), query, torch.cat([1 - probs[0], probs[0]]), (1,))
    coarse = model.coarsen_entry(entry, 2)
    h, w = entry.key.shape[-2:]
    assert coarse.key.shape[-2:] == ((h + 1) // 2, (w + 1) // 2) and coarse.object_ids == entry.object_ids
    assert torch.allclose(coarse.key.norm(dim=1), torch.ones(1, *coarse.key.shape[-2:]), atol=1e-5)
    assert torch.allclose(coarse.value[:, :, 0, 0], entry.value[:, :, :2, :2].mean((-2, -1)), atol=1e-6)
    assert torch.allclose(coarse.value[:, 0].mean(), entry.value[:, 0].mean(), atol=1e-6)  # the mask's mass is kept
    odd = model.coarsen_entry(dataclasses.replace(entry, key=entry.key[..., :3, :5], value=torch.ones(1, 9, 3, 5)), 2)
    assert odd.key.shape[-2:] == (2, 3) and torch.equal(odd.value, torch.ones(1, 9, 2, 3))  # edge cells: their own mean


def test_segment_reads_entries_of_different_sizes(model):
    model.eval()
    frames = [torch.rand(1, 3, 64, 96) for _ in range(3)]
    queries = [model.encode_query(f) for f in frames]
    probs = torch.zeros(2, 64, 96)
    probs[1, 16:48, 32:64] = 1
    probs[0] = 1 - probs[1]
    entries = [model.memorize(f, q, probs, (1,)) for f, q in zip(frames, queries, strict=True)]
    with torch.no_grad():
        full = model.segment(queries[2], entries, (1,))
        mixed = model.segment(queries[2], [entries[0], model.coarsen_entry(entries[1], 2), entries[2]], (1,))
        stacked = soft_aggregate_of_stacked(model, queries[2], entries)
    assert mixed.shape == full.shape == (2, 64, 96)
    assert torch.allclose(mixed.sum(0), torch.ones(64, 96), atol=1e-5)
    assert torch.equal(full, stacked)  # cells in frame order: the same read as stacking the frames


def soft_aggregate_of_stacked(model, query, entries):
    """The read as it was before entries could differ in size: frames stacked along T."""
    from memvos.model.modules import soft_aggregate

    keys = torch.stack([e.key for e in entries], dim=2)
    values = torch.stack([e.value for e in entries], dim=2)[None]
    return soft_aggregate(torch.sigmoid(model.object_logits(query, keys, values)[0]))


def test_the_engine_keeps_old_long_term_frames_coarse(model):
    from memvos.inference.memory import MemoryPolicy

    model.eval()
    core = InferenceCore(model, InferenceConfig(memory=MemoryPolicy(every=2, recent=1, coarse=2, fine=1)))
    rng = np.random.default_rng(0)
    first = np.zeros((64, 96), np.uint8)
    first[16:48, 32:64] = 1
    for t in range(8):
        core.step(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8), first if t == 0 else None)
    memory = core.branches[0][0].memory
    sizes = {i: tuple(e.key.shape[-2:]) for i, e in zip(memory.frame_indices, memory.entries(), strict=True)}
    h, w = sizes[0]  # annotated: full resolution, as the newest long-term frame (6) and the previous one (7)
    assert sizes == {0: (h, w), 2: (h // 2, w // 2), 4: (h // 2, w // 2), 6: (h, w), 7: (h, w)}
