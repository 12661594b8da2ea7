"""Re-identification: region embeddings, the learned whitening, the tracked/lost logic, and the
engine re-identifying an object after a full occlusion while a look-alike is in view."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from memvos.inference.reid import (
    ObjectTrack,
    Projection,
    RegionEmbedder,
    ReidConfig,
    ReIdentifier,
    components,
    region_descriptor,
)
from memvos.train.reid import fit_whitening, pair_scores, roc_auc


def test_region_descriptor_is_the_weighted_mean_and_std():
    features = torch.tensor([[[1.0, 3.0], [5.0, 7.0]], [[2.0, 2.0], [0.0, 4.0]]])  # (C=2, 2, 2)
    weights = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.5, 0.0], [0.0, 0.5]]])
    d = region_descriptor(features, weights)
    # region 0: cells (1, 2) and (3, 2): mean (2, 2), std (1, 0)
    # region 1: half of (1, 2) and half of (7, 4): mean (4, 3), std (3, 1)
    expected = torch.tensor([[2.0, 2.0, 1.0, 0.0], [4.0, 3.0, 3.0, 1.0]])
    assert torch.allclose(d, expected, atol=1e-5)


def test_roc_auc_counts_ordered_pairs():
    assert roc_auc(np.array([0.9, 0.8]), np.array([0.85, 0.1])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5]), np.array([0.5])) == pytest.approx(0.5)


def test_learned_whitening_suppresses_the_nuisance_direction():
    """Objects differ along axes 0-2; views of one object differ along a large nuisance axis 3.
    Raw cosines confuse them; the whitening learns to ignore axis 3."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 3))
    x, groups = [], []
    for g, c in enumerate(centres):
        for _ in range(4):
            nuisance = rng.normal(scale=5.0)
            x.append(np.concatenate([c + rng.normal(scale=0.05, size=3), [nuisance], [10.0]]))
            groups.append(g)
    x, groups = np.array(x), np.array(groups)
    projection = fit_whitening(x, groups, dim=3)
    assert projection.matrix.shape == (3, 5)
    raw = roc_auc(*pair_scores(x, groups))
    whitened = roc_auc(*pair_scores(projection(torch.from_numpy(x).float()).numpy(), groups))
    assert whitened > 0.97 and whitened > raw + 0.1
    # the nuisance axis barely moves the embedding
    a = torch.tensor([[0.3, -0.2, 0.5, 0.0, 10.0], [0.3, -0.2, 0.5, 8.0, 10.0]])
    e = projection(a)
    assert float(e[0] @ e[1]) > 0.95


def test_components_filters_small_regions():
    mask = np.zeros((8, 8), bool)
    mask[0:3, 0:3] = True
    mask[6, 6] = True
    found = components(mask, min_cells=2)
    assert len(found) == 1 and found[0].sum() == 9


# ---- the tracked / lost logic on hand-made features ----------------------------------------------
OBJECT, LOOKALIKE, BACKGROUND = torch.eye(3)


def scene(object_box=None, lookalike_box=None, size=16):
    """(3, size, size) features: background everywhere, the object and a distractor in boxes."""
    f = BACKGROUND[:, None, None].repeat(1, size, size)
    for box, vec in ((object_box, OBJECT), (lookalike_box, LOOKALIKE)):
        if box is not None:
            y0, y1, x0, x1 = box
            f[:, y0:y1, x0:x1] = vec[:, None, None]
    return f


def probs_with(*boxes, size=16):
    """(2, size, size) probabilities: object 1 is 0.95 inside the boxes."""
    p = torch.zeros(2, size, size)
    for y0, y1, x0, x1 in boxes:
        p[1, y0:y1, x0:x1] = 0.95
    p[0] = 1 - p[1]
    return p


@pytest.fixture
def reid():
    r = ReIdentifier(RegionEmbedder(None), ReidConfig(min_cells=2))
    box = (2, 7, 2, 7)
    r.annotate(0, scene(box), probs_with(box), (1,), (1,))
    return r


def test_a_spill_onto_a_lookalike_is_dropped(reid):
    features = scene((2, 7, 2, 7), (10, 14, 10, 14))
    probs, reseeded = reid.update(1, features, probs_with((2, 7, 2, 7), (10, 14, 10, 14)), (1,))
    assert reseeded == ()
    assert not reid.tracks[1].lost
    assert probs[1, 2:7, 2:7].min() > 0.9  # the object stays
    assert probs[1, 10:14, 10:14].max() == 0  # the look-alike is dropped
    assert torch.allclose(probs.sum(0), torch.ones(16, 16))


def test_a_collapse_marks_the_object_lost_and_removes_it(reid):
    probs, _ = reid.update(1, scene((2, 7, 2, 4)), probs_with((2, 3, 2, 4)), (1,))
    track = reid.tracks[1]
    assert track.lost and track.events == [(1, "lost")]
    assert probs[1].max() == 0 and torch.allclose(probs[0], torch.ones(16, 16))


def test_a_lost_object_is_reidentified_only_by_its_own_appearance(reid):
    reid.update(1, scene(None), probs_with(), (1,))  # fully hidden: lost
    # the read spills onto a look-alike: not accepted, the object stays absent
    features = scene((9, 14, 2, 7), (9, 13, 9, 13))
    probs, reseeded = reid.update(2, features, probs_with((9, 13, 9, 13)), (1,))
    assert reseeded == () and probs[1].max() == 0 and reid.tracks[1].lost
    # the template read finds the object itself: re-identified and re-seeded
    probs, reseeded = reid.update(3, features, probs_with((9, 13, 9, 13)), (1,),
                                  template_read=lambda: probs_with((9, 14, 2, 7)))
    assert reseeded == (1,) and not reid.tracks[1].lost
    assert probs[1, 9:14, 2:7].min() > 0.5 and probs[1, 9:13, 9:13].max() < 0.05
    assert reid.tracks[1].events == [(1, "lost"), (3, "reidentified")]


def test_a_candidate_that_matches_another_object_better_is_not_taken():
    r = ReIdentifier(RegionEmbedder(None), ReidConfig(min_cells=2))
    a, b = (2, 7, 2, 7), (9, 14, 9, 14)
    features = scene(a, b)
    labels = torch.zeros(3, 16, 16)
    labels[1, 2:7, 2:7] = 1
    labels[2, 9:14, 9:14] = 1
    labels[0] = 1 - labels[1] - labels[2]
    r.annotate(0, features, labels, (1, 2), (1, 2))
    r.tracks[1].lost = True
    spill = labels.clone()
    spill[1] = 0
    spill[1, 9:14, 9:14] = 0.9  # object 1's read lands on object 2
    spill[2] = 0.1 * labels[2]
    spill[0] = 1 - spill[1] - spill[2]
    probs, reseeded = r.update(1, features, spill, (1, 2))
    assert reseeded == () and probs[1].max() == 0


def test_projection_round_trip(tmp_path):
    from memvos.inference.reid import load_projection, save_projection

    p = Projection(torch.randn(6), torch.randn(4, 6))
    save_projection(p, tmp_path / "p.safetensors")
    q = load_projection(tmp_path / "p.safetensors")
    assert torch.allclose(q.mean, p.mean, atol=1e-2, rtol=1e-2) and q.matrix.shape == (4, 6)
    x = torch.randn(3, 6)
    assert torch.allclose(p(x), q(x), atol=2e-2)


def test_track_templates_keep_given_ones_first():
    t = ObjectTrack(given=[torch.ones(2)], learned=[torch.zeros(2)])
    assert torch.equal(t.templates(), torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


def test_bad_thresholds_are_refused():
    with pytest.raises(ValueError):
        ReidConfig(keep=0.9, accept=0.5)
    with pytest.raises(ValueError):
        dataclasses.replace(ReidConfig(), candidate_threshold=1.5)


@pytest.mark.parametrize("preset", ["frozen-key-lite0", "frozen-key-lite0-fast"])
def test_each_shipped_trained_model_has_a_projection_for_its_features(preset):
    """Both trained presets re-identify with a whitening fitted on their own features (stride 8
    and 16): the embedder gets a 256-d projection whose input width is the features' width."""
    from memvos.inference.reid import reid_inputs
    from memvos.model.factory import load_model

    model, _ = load_model(preset)
    embedder = RegionEmbedder.for_model(model)
    assert embedder.projection is not None and embedder.projection.matrix.shape[0] == 256
    rgb = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        features = reid_inputs(model, model.encode_query(rgb), rgb)
    weights = torch.zeros(1, *features.shape[-2:])
    weights[0, 1:3, 1:4] = 1
    embedding = embedder(features, weights)
    assert embedding.shape == (1, 256) and torch.allclose(embedding.norm(dim=-1), torch.ones(1), atol=1e-4)
