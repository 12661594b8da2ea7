"""STM network pieces with a small random-initialised backbone: shapes and aggregation."""

from __future__ import annotations

import pytest
import torch

from memvos.model.base import MemoryEntry
from memvos.model.memory_read import ReadConfig
from memvos.model.modules import Decoder, Refine, area_to_grid, channel_argmax, hard_probabilities, soft_aggregate
from memvos.model.stm import STMConfig, STMNetwork


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return STMNetwork(STMConfig(backbone="efficientnet-lite0", pretrained=False, decoder_dim=32,
                                read=ReadConfig(mode="kmn", sigma=2.0))).eval()


def test_soft_aggregation_sums_to_one_and_orders_objects():
    p = torch.rand(3, 8, 9)
    out = soft_aggregate(p)
    assert out.shape == (4, 8, 9)
    torch.testing.assert_close(out.sum(0), torch.ones(8, 9))
    confident = torch.zeros(2, 1, 1)
    confident[1] = 0.99
    assert soft_aggregate(confident)[:, 0, 0].argmax() == 2
    assert soft_aggregate(torch.zeros(0, 4, 4)).shape == (1, 4, 4)


def test_refine_and_decoder_shapes():
    refine = Refine(16, 8)
    assert refine(torch.rand(2, 16, 12, 20), torch.rand(2, 8, 6, 10)).shape == (2, 8, 12, 20)
    dec = Decoder(in_dim=20, skip8_dim=16, skip4_dim=12, dim=8)
    out = dec(torch.rand(2, 20, 4, 6), torch.rand(2, 16, 8, 12), torch.rand(2, 12, 16, 24), size=(61, 95))
    assert out.shape == (2, 2, 61, 95)


@torch.inference_mode()
def test_network_round_trip_shapes_with_an_object_added_later(net):
    rgb = torch.rand(1, 3, 64, 96)
    q = net.encode_query(rgb)
    c16 = net.query_encoder.channels[2]
    assert q.key.shape == (1, c16 // 8, 4, 6) and q.value.shape == (1, c16 // 2, 4, 6)
    probs = torch.zeros(3, 64, 96)
    probs[0] = 1
    probs[1, 10:30, 10:40], probs[0, 10:30, 10:40] = 1, 0
    first = net.memorize(rgb, q, probs[:2], (5,))  # only object 5 at first
    assert first.key.shape == (1, c16 // 8, 4, 6)
    second = net.memorize(rgb, q, probs, (5, 9))  # object 9 joins
    assert second.value.shape == (2, c16 // 2, 4, 6)
    out = net.segment(q, [first, second], (5, 9))
    assert out.shape == (3, 64, 96)
    torch.testing.assert_close(out.sum(0), torch.ones(64, 96), rtol=0, atol=1e-5)


@torch.inference_mode()
def test_memory_encoder_sees_the_mask(net):
    rgb = torch.rand(1, 3, 64, 96)
    a = torch.zeros(1, 64, 96)
    b = a.clone()
    b[0, 20:40, 20:60] = 1
    _ka, va = net.encode_memory(rgb, a)
    _kb, vb = net.encode_memory(rgb, b)
    assert not torch.allclose(va, vb)


def test_scribble_channels_plug_in():
    torch.manual_seed(0)
    net = STMNetwork(STMConfig(pretrained=False, decoder_dim=16, scribbles=True)).eval()
    with torch.inference_mode():
        rgb = torch.rand(1, 3, 32, 48)
        probs = torch.rand(2, 32, 48)
        k0, v0 = net.encode_memory(rgb, probs)
        scribbles = torch.zeros(2, 2, 32, 48)
        scribbles[:, 0, 5:10, 5:20] = 1
        _k1, v1 = net.encode_memory(rgb, probs, scribbles)
    assert v0.shape == v1.shape and not torch.allclose(v0, v1)
    assert isinstance(MemoryEntry(k0, v0, (1, 2)).object_ids, tuple)


def test_training_pass_of_the_stm_network(net):
    net.train()
    frames = torch.rand(2, 3, 3, 64, 64)
    labels = torch.zeros(2, 3, 64, 64, dtype=torch.long)
    labels[:, :, 8:30, 8:30] = 1
    labels[1, :, 40:60, 30:60] = 2
    out = net(frames, labels, torch.tensor([1, 2]))
    assert out.shape == (2, 2, 3, 64, 64)
    assert torch.allclose(out.exp().sum(2), torch.ones(2, 2, 64, 64), atol=1e-4)
    assert out.exp()[0, :, 2].max() < 1e-3  # sample 0 has one object
    out.mean().backward()
    grads = [p.grad for p in (net.memory_encoder.parameters().__next__(), net.decoder.predict.weight)]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    net.zero_grad()
    net.eval()


@torch.inference_mode()
def test_batched_memory_encoding_matches_one_frame_at_a_time(net):
    rgb = torch.rand(2, 3, 64, 64)
    probs = torch.rand(2, 3, 64, 64) / 3
    keys, values = net.encode_memory(rgb, probs)
    k1, v1 = net.encode_memory(rgb[1:], probs[1])
    assert keys.shape[0] == 6
    torch.testing.assert_close(keys[3:], k1, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(values[3:], v1, atol=1e-5, rtol=1e-4)


def test_channel_argmax_is_argmax_over_channels_first_on_ties():
    torch.manual_seed(0)
    for channels in (1, 2, 5):
        probs = torch.rand(channels, 17, 23).softmax(0)
        index = channel_argmax(probs)
        assert index.dtype == torch.uint8 and index.shape == (17, 23)
        assert torch.equal(index.long(), probs.argmax(0))
    tied = torch.tensor([[[0.2, 0.5]], [[0.4, 0.5]], [[0.4, 0.0]]])  # (3, 1, 2)
    assert channel_argmax(tied).tolist() == [[1, 0]]


def test_hard_probabilities_are_the_one_hot_of_the_largest_channel():
    torch.manual_seed(1)
    probs = torch.rand(3, 9, 11).softmax(0)
    hard = hard_probabilities(probs)
    assert hard.dtype == probs.dtype and hard.shape == probs.shape
    assert torch.equal(hard, torch.nn.functional.one_hot(probs.argmax(0), 3).permute(2, 0, 1).float())


def test_area_to_grid_averages_blocks_and_keeps_maps_already_there():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    pooled = area_to_grid(x, (2, 2))
    expected = torch.tensor([[(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4], [(8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]])
    torch.testing.assert_close(pooled[0, 0], expected)
    assert area_to_grid(x, torch.Size([4, 4])) is x
