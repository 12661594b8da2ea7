"""Guided-filter refinement: hand-checkable cases."""

from __future__ import annotations

import torch

from memvos.model.refine import box_filter, guided_filter, refine_probabilities


def test_box_filter_mean_and_border():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 9.0
    out = box_filter(x, 1)
    assert out[0, 0, 2, 2] == 1.0  # 9 / 9
    assert out[0, 0, 0, 0] == 0.0
    corner = torch.ones(1, 1, 4, 4)
    torch.testing.assert_close(box_filter(corner, 1), corner)  # clipped windows: still a mean


def test_flat_guide_reduces_to_box_smoothing_and_constants_stay():
    guide = torch.full((1, 1, 8, 8), 0.5)
    src = torch.rand(1, 2, 8, 8)
    torch.testing.assert_close(guided_filter(guide, src, 1, 1e-3), box_filter(box_filter(src, 1), 1))
    const = torch.full((1, 1, 8, 8), 0.3)
    torch.testing.assert_close(guided_filter(torch.rand(1, 1, 8, 8), const, 2, 1e-3), const)


def test_refinement_snaps_a_blurry_edge_to_the_image_edge():
    h, w = 32, 32
    rgb = torch.zeros(1, 3, h, w)
    rgb[..., :, 16:] = 1.0  # image edge at column 16
    ramp = torch.clamp((torch.arange(w) - 8) / 16, 0, 1).expand(h, w)  # blurry object edge
    probs = torch.stack([1 - ramp, ramp])
    out = refine_probabilities(rgb, probs, radius=4, eps=1e-4)
    torch.testing.assert_close(out.sum(0), torch.ones(h, w))
    labels_after = out.argmax(0)[0]
    assert (labels_after[:16] == 0).all() and (labels_after[17:] == 1).all()
    # sharper: the object probability right of the edge rises, left of it falls
    assert out[1, 0, 18] > probs[1, 0, 18] and out[1, 0, 13] < probs[1, 0, 13]
