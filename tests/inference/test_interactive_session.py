"""The interactive session on synthetic clips, driven by an untrained interactive frozen-key model
(ImageNet Lite0 keys; its decoder starts as label propagation, so results are meaningful)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from memvos.data.scribbles import grabcut_prior
from memvos.data.synthetic import make_synthetic_clip
from memvos.errors import InputError
from memvos.eval.metrics import jaccard
from memvos.inference.interactive import InteractiveConfig, InteractiveSession, _enforce
from memvos.inference.memory import MemoryPolicy
from memvos.model.frozen_key import FrozenKeyConfig, FrozenKeySTM
from memvos.model.memory_read import ReadConfig

CONFIG = InteractiveConfig(memory=MemoryPolicy(every=5, recent=1, max_frames=6), max_short_side=None)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = FrozenKeyConfig(value_dim=8, decoder_dim=8, scribbles=True,
                          read=ReadConfig(mode="kmn", sigma=8.0, top_k=5, temperature=0.1))
    return FrozenKeySTM(cfg).eval()


@pytest.fixture(scope="module")
def clip():
    made = make_synthetic_clip(n_frames=12, size=(128, 192), n_objects=2, seed=6)
    return SimpleNamespace(frames=np.stack(list(made.frames)), labels=np.stack(made.labels))


def session_for(clip, model, **overrides) -> InteractiveSession:
    config = InteractiveConfig(**{**vars(CONFIG), **overrides})
    return InteractiveSession(clip.frames, model=model, config=config)


def mean_j(pred: np.ndarray, truth: np.ndarray, obj: int, frames) -> float:
    return float(np.mean([jaccard(truth[t] == obj, pred[t] == obj) for t in frames]))


def test_a_mask_round_propagates_to_every_frame(clip, model):
    session = session_for(clip, model)
    for obj in (1, 2):
        session.interact(0, obj, mask=clip.labels[0] == obj)
    assert (session.mask(0) == clip.labels[0]).all()  # the given masks, exactly
    calls = []
    assert session.propagate(progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (11, 11) and len(calls) == 11
    masks = session.masks()
    assert masks.shape == clip.labels.shape and masks.dtype == np.uint8
    for obj in (1, 2):
        assert mean_j(masks, clip.labels, obj, range(1, 12)) > 0.5


def test_strokes_are_obeyed_and_grabcut_grows_them_into_the_object(clip, model):
    session = session_for(clip, model)
    truth = clip.labels[4] == 1
    ys, xs = np.nonzero(truth)
    positive = np.zeros_like(truth)
    positive[ys.min() + (ys.max() - ys.min()) // 2, xs.min() + 2 : xs.max() - 1] = True  # a line across the object
    positive &= truth
    negative = np.zeros_like(truth)
    negative[2:5, 2:30] = True
    labels = session.interact(4, 1, positive=positive, negative=negative)
    assert (labels[positive] == 1).all() and (labels[negative] != 1).all()
    painted_only = session_for(clip, model, prior="paint").interact(4, 1, positive=positive, negative=negative)
    assert jaccard(truth, labels == 1) > jaccard(truth, painted_only == 1)
    assert jaccard(truth, labels == 1) > 0.5


def test_a_correction_leaves_earlier_annotated_frames_and_the_far_side_alone(clip, model):
    session = session_for(clip, model)
    session.interact(5, 1, mask=clip.labels[5] == 1)
    session.propagate()
    before = session.masks()
    before_probs = [session.probabilities(t) for t in range(12)]
    session.interact(9, 1, mask=clip.labels[9] == 1)
    session.propagate()
    after = session.masks()
    for t in range(6):  # the earlier annotation and everything beyond it from frame 9
        assert torch.equal(session.probabilities(t), before_probs[t])
    assert (after[9] == (clip.labels[9] == 1)).all()
    assert session.annotated_frames == [5, 9]
    assert not np.array_equal(before[10:], after[10:]) or mean_j(after, clip.labels, 1, range(10, 12)) > 0.6


def test_frames_between_two_annotations_blend_by_distance(clip, model):
    """Frame 6 (next to the earlier annotation at 5) keeps more of the old result than frame 8
    (next to the new annotation at 9): compare with a session that only has the new round."""
    first = session_for(clip, model)
    first.interact(5, 1, mask=clip.labels[5] == 1)
    first.propagate()
    old = {t: first.probabilities(t) for t in (6, 8)}
    first.interact(9, 1, mask=np.zeros_like(clip.labels[9], dtype=bool))  # the object gone from frame 9 on
    first.propagate()
    # the new round's weight is 1/4 at frame 6 and 3/4 at frame 8: frame 8 moves further
    change6 = (first.probabilities(6)[1] - old[6][1]).abs().mean()
    change8 = (first.probabilities(8)[1] - old[8][1]).abs().mean()
    assert change8 > change6


def test_undo_restores_each_round_exactly(clip, model):
    session = session_for(clip, model)
    session.interact(0, 1, mask=clip.labels[0] == 1)
    session.propagate()
    round1 = session.masks()
    session.interact(6, 2, mask=clip.labels[6] == 2)
    session.propagate()
    assert set(np.unique(session.masks())) == {0, 1, 2}
    assert session.undo()
    assert np.array_equal(session.masks(), round1) and session.object_ids == (1,)
    assert session.undo()
    assert not session.masks().any() and session.object_ids == ()
    assert not session.undo()


def test_undo_and_redo_go_one_interaction_at_a_time(clip, model):
    session = session_for(clip, model, prior="paint")
    session.interact(0, 1, mask=clip.labels[0] == 1)
    one = session.masks()
    session.interact(0, 2, mask=clip.labels[0] == 2)
    session.propagate()
    propagated = session.masks()
    assert session.undo()  # the second interaction and the propagation after it
    assert np.array_equal(session.masks(), one) and session.object_ids == (1,)
    assert session.can_redo and session.redo()
    assert np.array_equal(session.masks(), propagated) and not session.can_redo
    assert session.undo() and session.undo() and not session.can_undo and not session.masks().any()
    session.interact(0, 1, mask=clip.labels[0] == 1)  # a new interaction drops what could be redone
    assert not session.redo()


def test_clicks_become_disks_and_negative_clicks_remove(clip, model):
    session = session_for(clip, model, prior="paint")
    ys, xs = np.nonzero(clip.labels[2] == 2)
    x, y = int(xs.mean()), int(ys.mean())
    labels = session.interact(2, 2, clicks=[(x, y)])
    assert labels[y, x] == 2 and (labels == 2).sum() > 10
    labels = session.interact(2, 2, clicks=[(x, y, False)])
    assert labels[y, x] != 2


def test_cancel_stops_between_frames_and_a_new_propagate_finishes(clip, model):
    session = session_for(clip, model)
    session.interact(0, 1, mask=clip.labels[0] == 1)
    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done == 3:
            stop.set()

    assert session.propagate(progress=progress, cancel=stop) is False
    assert seen == [1, 2, 3]
    assert not session.mask(8).any()  # not reached
    assert session.propagate() is True
    assert session.mask(8).any()


def test_remove_object_and_undo_it(clip, model):
    session = session_for(clip, model)
    for obj in (1, 2):
        session.interact(0, obj, mask=clip.labels[0] == obj)
    session.propagate()
    session.remove_object(2)
    assert 2 not in np.unique(session.masks())
    assert session.undo() and 2 in np.unique(session.masks())


def test_bad_input_gives_one_line_errors(clip, model):
    session = session_for(clip, model)
    with pytest.raises(InputError, match="64x32, the video is 192x128"):
        session.interact(0, 1, mask=np.zeros((32, 64), bool))
    with pytest.raises(InputError, match="frame 40 out of range"):
        session.interact(40, 1, clicks=[(3, 3)])
    with pytest.raises(InputError, match="outside|out of"):
        session.interact(0, 1, clicks=[(500, 3)])
    with pytest.raises(InputError, match="strokes, clicks or a mask"):
        session.interact(0, 1)


def test_enforce_obeys_strokes_and_keeps_a_distribution():
    probs = torch.softmax(torch.randn(3, 8, 8), 0)
    strokes = torch.zeros(2, 2, 8, 8)
    strokes[0, 0, 0, :] = 1  # object 1 positive on row 0
    strokes[1, 1, :, 0] = 1  # object 2 negative on column 0
    out = _enforce(probs, strokes)
    assert torch.allclose(out.sum(0), torch.ones(8, 8))
    assert (out[1, 0] == 1).all()
    assert (out[2, 1:, 0] == 0).all()


def test_grabcut_prior_fills_a_coloured_object_from_one_stroke():
    image = np.full((80, 100, 3), 40, np.uint8)
    image[20:60, 30:70] = (20, 200, 220)
    truth = np.zeros((80, 100), bool)
    truth[20:60, 30:70] = True
    positive = np.zeros_like(truth)
    positive[40, 35:65] = True
    guess = grabcut_prior(image, np.zeros(truth.shape, np.float32), positive, np.zeros_like(truth))
    assert jaccard(truth, guess > 0.5) > 0.8


def test_a_whole_mask_is_enforced_but_not_fed_to_the_encoder_as_strokes(clip, model):
    """A frame-wide 'stroke' is unlike anything the stroke inputs were trained on: an uploaded mask
    is kept exactly, while the memory encoder only sees the strokes the user really drew."""
    session = session_for(clip, model)
    session.interact(0, 1, mask=clip.labels[0] == 1)
    annotation = session._state.annotations[0]
    assert annotation.strokes == {} and annotation.masks[1][0].sum() == (clip.labels[0] == 1).sum()
    line = np.zeros(clip.labels[0].shape, bool)
    line[0, :] = True  # a positive stroke over the mask's outside corrects it there
    labels = session.interact(0, 1, positive=line)
    assert (labels[0] == 1).all() and (labels[1:] == 1).sum() == (clip.labels[0][1:] == 1).sum()
    assert set(annotation.strokes) == set() and set(session._state.annotations[0].strokes) == {1}


def test_bad_input_leaves_nothing_to_undo(clip, model):
    session = session_for(clip, model)
    with pytest.raises(InputError):
        session.interact(0, 1, mask=np.zeros((5, 5), bool))
    assert not session.undo() and session.object_ids == ()


def test_sessions_default_to_the_fast_model_and_the_interaction_network():
    """Interactive sessions propagate with the fast stride-16 model (seconds per round) and make the
    annotated frame's mask with the shipped interaction network; the stroke-conditioned model
    stays loadable by name."""
    from memvos.inference import interactive
    from memvos.model import factory
    from memvos.model.interaction import interaction_config_of, shipped_first_touch_weights, shipped_interaction_weights

    model, config = interactive.load_interactive_model()
    assert config.name == "frozen-key-lite0-fast" and model.config.output_stride == 16
    assert InteractiveConfig().prior == "network" and shipped_interaction_weights().is_file()
    assert interaction_config_of(shipped_first_touch_weights()) == interaction_config_of(shipped_interaction_weights())
    stroke_model, _ = interactive.load_interactive_model("frozen-key-lite0-interactive")
    assert stroke_model.config.scribbles and factory.DEFAULT_INTERACTIVE_WEIGHTS.is_file()


def test_an_interactive_stm_network_takes_the_same_stroke_input(clip):
    """Both networks name the stroke maps `strokes`: a session drives the STM network too."""
    from memvos.model.stm import STMConfig, STMNetwork

    torch.manual_seed(0)
    stm = STMNetwork(STMConfig(decoder_dim=16, scribbles=True, read=ReadConfig(mode="stm"))).eval()
    session = InteractiveSession(clip.frames[:4], model=stm, config=CONFIG)
    positive = np.zeros(clip.labels[0].shape, bool)
    positive[clip.labels[0] == 1] = True
    labels = session.interact(0, object_id=1, positive=positive)
    assert labels.shape == clip.labels[0].shape and (labels[positive] == 1).all()  # strokes are obeyed
    assert session.propagate()
    assert session.masks().shape == (4, *clip.labels[0].shape)


def test_network_prior_makes_the_frame_mask_from_the_interaction_network(clip, model, tmp_path, monkeypatch):
    """With prior='network' the annotated frame's mask is the interaction network's output (strokes
    enforced), computed from the frame, the marks and the object's current mask (here at the
    frame's own size; small frames are otherwise upscaled for it first)."""
    from memvos.inference import interactive
    from memvos.model.interaction import InteractionNet, InteractionNetConfig, load_click_to_mask, save_interaction_net

    monkeypatch.setattr(interactive, "CLICK_MIN_SIDE", 0)
    torch.manual_seed(1)
    save_interaction_net(InteractionNet(InteractionNetConfig(width=16)), tmp_path / "net.safetensors")
    weights = str(tmp_path / "net.safetensors")
    session = session_for(clip, model, prior="network", interaction_weights=weights, first_touch_weights=weights,
                          keep_near_marks=None, zoom_in=None)
    pos = np.zeros(clip.labels[0].shape, bool)
    pos[60:64, 90:100] = True
    labels = session.interact(0, 1, positive=pos)
    assert labels[pos].tolist() == [1] * int(pos.sum())  # the click is obeyed

    clicker = load_click_to_mask(tmp_path / "net.safetensors")
    rgb = torch.from_numpy(clip.frames[0]).permute(2, 0, 1)[None].float() / 255
    # the network reads the frame and its mirror image (mirror_clicks) and averages the two
    expected = clicker.predict(clicker.features(rgb, mirror=True), pos, np.zeros_like(pos),
                               np.zeros(pos.shape, np.float32))
    expected = (expected > 0.5).numpy() | pos
    assert (labels == 1).tolist() == expected.tolist()
    assert session.undo() and not session.masks().any()


def test_a_first_touch_uses_the_first_touch_network_and_corrections_the_other(clip, model, tmp_path, monkeypatch):
    """An object's first marks on a frame where it has no mask go to the first-touch network; once
    it has a mask there, the next marks go to the correction network."""
    from memvos.inference import interactive
    from memvos.model.interaction import InteractionNet, InteractionNetConfig, load_click_to_mask, save_interaction_net

    monkeypatch.setattr(interactive, "CLICK_MIN_SIDE", 0)
    paths = {}
    for role, seed in (("first", 2), ("correct", 3)):
        torch.manual_seed(seed)
        paths[role] = tmp_path / f"{role}.safetensors"
        save_interaction_net(InteractionNet(InteractionNetConfig(width=16)), paths[role])
    session = session_for(clip, model, prior="network", first_touch_weights=str(paths["first"]),
                          interaction_weights=str(paths["correct"]), keep_near_marks=None,
                          local_corrections=False, zoom_in=None)
    rgb = torch.from_numpy(clip.frames[0]).permute(2, 0, 1)[None].float() / 255
    pos = np.zeros(clip.labels[0].shape, bool)
    pos[60:64, 90:100] = True
    none = np.zeros_like(pos)

    def expected(role: str, current: np.ndarray, positive: np.ndarray) -> np.ndarray:
        clicker = load_click_to_mask(paths[role])
        prob = clicker.predict(clicker.features(rgb, mirror=True), positive, none, current)
        return (prob > 0.5).numpy() | positive

    first = session.interact(0, 1, positive=pos)
    assert (first == 1).tolist() == expected("first", np.zeros(pos.shape, np.float32), pos).tolist()
    assert expected("first", np.zeros(pos.shape, np.float32), pos).tolist() != \
        expected("correct", np.zeros(pos.shape, np.float32), pos).tolist()  # the two nets differ here
    current = session.probabilities(0)[1].numpy()
    more = pos.copy()
    more[30:34, 40:50] = True
    second = session.interact(0, 1, positive=more)
    assert (second == 1).tolist() == expected("correct", current, more).tolist()


def test_enlarged_frames_are_propagated_enlarged_but_read_at_their_own_size_by_the_interaction_network(
        clip, model, tmp_path, monkeypatch):
    """With min_short_side the session processes a small clip enlarged (as the fast preset asks),
    while the interaction network reads the frame at its own size: read enlarged, a 240p clip's
    first masks fell from J 0.67 to 0.45."""
    from memvos.inference import interactive
    from memvos.model.interaction import (
        ClickToMask,
        InteractionNet,
        InteractionNetConfig,
        load_click_to_mask,
        save_interaction_net,
    )

    monkeypatch.setattr(interactive, "CLICK_MIN_SIDE", 0)
    torch.manual_seed(1)
    weights = str(tmp_path / "net.safetensors")
    save_interaction_net(InteractionNet(InteractionNetConfig(width=16)), weights)
    read_sizes = []
    features = ClickToMask.features
    monkeypatch.setattr(ClickToMask, "features",
                        lambda self, rgb, mirror=False: read_sizes.append(tuple(rgb.shape[-2:])) or features(self, rgb, mirror))
    session = session_for(clip, model, prior="network", interaction_weights=weights, first_touch_weights=weights,
                          keep_near_marks=None, zoom_in=None, min_short_side=256, max_upscale=2.0)
    assert session.size == (256, 384)  # 128x192 enlarged 2x
    pos = np.zeros(clip.labels[0].shape, bool)
    pos[60:64, 90:100] = True
    labels = session.interact(0, 1, positive=pos)
    assert read_sizes == [(128, 192)]
    clicker = load_click_to_mask(weights)
    rgb = torch.from_numpy(clip.frames[0]).permute(2, 0, 1)[None].float() / 255
    expected = clicker.predict(features(clicker, rgb, mirror=True), pos, np.zeros_like(pos),
                               np.zeros(pos.shape, np.float32))
    expected = (expected > 0.5).numpy() | pos
    assert labels[pos].all() and np.mean((labels == 1) == expected) > 0.99  # up and down again: edges may move


def test_session_config_takes_the_presets_processing_size_rule():
    from memvos.inference.interactive import session_config
    from memvos.model.factory import FAST_WEIGHTS, checkpoint_config

    fast = checkpoint_config(FAST_WEIGHTS)
    config = session_config(fast, prior="paint")
    assert (config.min_short_side, config.max_upscale, config.prior) == (480, 2.0, "paint")
    assert config.memory == fast.inference.memory
    assert config.processing_size(240, 432) == (480, 864) and config.processing_size(1080, 1920) == (480, 853)
    assert session_config(fast, max_short_side=None).processing_size(1080, 1920) == (1080, 1920)


def test_zoom_box_grows_around_the_region_and_skips_large_ones():
    """zoom_box: the region's box grown by the margin on each side (at least min_side), clipped to
    the frame; None for an empty region or a box of more pixels than asked."""
    from memvos.inference.interactive import zoom_box

    region = np.zeros((200, 300), bool)
    region[100:110, 150:200] = True  # 10 x 50: rows grow to 48 (19 each side), columns by 20 each side
    assert zoom_box(region, 10_000) == (slice(81, 129), slice(130, 220))
    corner = np.zeros_like(region)
    corner[0:50, 0:50] = True  # grows by 20, clipped at the frame's edge
    assert zoom_box(corner, 10_000) == (slice(0, 70), slice(0, 70))
    assert zoom_box(corner, 4_000) is None  # 70 x 70 is more
    assert zoom_box(np.zeros_like(region), 10_000) is None


def test_zoom_in_reruns_the_network_on_an_enlarged_crop(clip, model, tmp_path, monkeypatch):
    """A small marked object: inside the box around the marks (and the mask parts they touch) the
    mask is the network's prediction on that crop enlarged to ZOOM_SIDE^2 pixels; outside it, the
    prediction on the whole frame. A large box is not zoomed."""
    from memvos.inference import interactive
    from memvos.inference.interactive import ZOOM_SIDE, parts_touching, zoom_box
    from memvos.model.interaction import InteractionNet, InteractionNetConfig, load_click_to_mask, save_interaction_net

    monkeypatch.setattr(interactive, "CLICK_MIN_SIDE", 0)
    torch.manual_seed(1)
    weights = tmp_path / "net.safetensors"
    save_interaction_net(InteractionNet(InteractionNetConfig(width=16)), weights)
    session = session_for(clip, model, prior="network", interaction_weights=str(weights),
                          first_touch_weights=str(weights), keep_near_marks=None, zoom_in=1.5)
    pos = np.zeros(clip.labels[0].shape, bool)
    pos[60:62, 90:94] = True
    labels = session.interact(0, 1, positive=pos)

    clicker = load_click_to_mask(weights)
    rgb = torch.from_numpy(clip.frames[0]).permute(2, 0, 1)[None].float() / 255
    none, empty = np.zeros_like(pos), np.zeros(pos.shape, np.float32)
    whole = clicker.predict(clicker.features(rgb, mirror=True), pos, none, empty)
    ys, xs = zoom_box(pos | parts_touching(whole.numpy() > 0.5, pos), (ZOOM_SIDE / 1.5) ** 2)
    h, w = ys.stop - ys.start, xs.stop - xs.start
    factor = ZOOM_SIDE / np.sqrt(h * w)
    size = (round(h * factor), round(w * factor))
    crop = torch.nn.functional.interpolate(rgb[..., ys, xs], size=size, mode="bilinear", align_corners=False)
    marks = cv2.resize(pos[ys, xs].astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA) > 0
    zoomed = clicker.predict(clicker.features(crop, mirror=True), marks, np.zeros_like(marks),
                             np.zeros(size, np.float32))
    expected = whole.clone()
    expected[ys, xs] = torch.nn.functional.interpolate(zoomed[None, None], size=(h, w), mode="bilinear",
                                                       align_corners=False)[0, 0]
    expected = (expected > 0.5).numpy() | pos
    assert factor >= 1.5  # the crop was enlarged
    assert (labels == 1).tolist() == expected.tolist()
    assert (labels == 1).tolist() != ((whole > 0.5).numpy() | pos).tolist()  # zooming changed the mask
    no_zoom = session_for(clip, model, prior="network", interaction_weights=str(weights),
                          first_touch_weights=str(weights), keep_near_marks=None, zoom_in=10.0)
    labels = no_zoom.interact(0, 1, positive=pos)  # 10x would be needed: the box is large enough
    assert (labels == 1).tolist() == ((whole > 0.5).numpy() | pos).tolist()


def test_a_first_touch_keeps_the_parts_near_its_marks():
    """keep_near_marks: the part holding the click and a piece close to it stay; a part far away
    (a look-alike elsewhere in the frame) goes; without a marked part nothing changes."""
    from memvos.inference.interactive import keep_near_marks

    proposed = np.zeros((100, 200), np.float32)
    proposed[20:60, 20:60] = 0.9  # the clicked part: 1600 px, reach 0.15 * 40 = 6 px
    proposed[20:60, 64:70] = 0.8  # a piece 4 px away (a leg behind a pole)
    proposed[20:60, 150:190] = 0.7  # a look-alike far away
    positive = np.zeros(proposed.shape, bool)
    positive[40, 40] = True
    out = keep_near_marks(proposed, positive, 0.15)
    np.testing.assert_array_equal(out[:, :100], proposed[:, :100])
    assert (out[:, 100:] == 0).all()
    elsewhere = np.zeros(proposed.shape, bool)
    elsewhere[90, 5] = True  # a mark outside the mask: nothing to anchor on
    np.testing.assert_array_equal(keep_near_marks(proposed, elsewhere, 0.15), proposed)


def test_a_correction_changes_only_what_its_marks_touch():
    """confine_changes: an addition and a removal that touch the new marks are taken; a change the
    network makes far from them (a part dropped, a blob added) is not."""
    from memvos.inference.interactive import confine_changes

    current = np.zeros((40, 80), np.float32)
    current[5:20, 5:20] = 0.9  # part A: the positive mark extends it to the right
    current[25:35, 5:15] = 0.8  # part B: the negative mark removes it
    current[5:20, 60:75] = 0.7  # part C, far away: the network would drop it
    proposed = current.copy()
    proposed[5:20, 20:30] = 0.95  # A grown
    proposed[25:35, 5:15] = 0.1  # B removed
    proposed[5:20, 60:75] = 0.2  # C dropped
    proposed[30:38, 50:58] = 0.9  # a new blob, untouched by any mark
    marks = np.zeros(current.shape, bool)
    marks[10, 22:28] = True  # positive, on the growth
    marks[30, 8:12] = True  # negative, on B
    out = confine_changes(current, proposed, marks)
    np.testing.assert_array_equal(out[5:20, 20:30], proposed[5:20, 20:30])
    np.testing.assert_array_equal(out[25:35, 5:15], proposed[25:35, 5:15])
    np.testing.assert_array_equal(out[5:20, 60:75], current[5:20, 60:75])
    np.testing.assert_array_equal(out[30:38, 50:58], current[30:38, 50:58])


def test_a_negative_only_interaction_removes_only_what_it_touches():
    from memvos.inference.interactive import confine_removal

    current = np.zeros((20, 40), np.float32)
    current[5:15, 2:12] = 0.9  # part A, where the negative click lands
    current[5:15, 25:35] = 0.8  # part B, far away
    proposed = np.zeros_like(current)
    proposed[0:3, 15:20] = 1.0  # the network would also add something
    negative = np.zeros(current.shape, bool)
    negative[9:11, 6:8] = True
    out = confine_removal(current, proposed, negative)
    assert (out[5:15, 2:12] == 0).all()  # A goes: it touches the click
    np.testing.assert_array_equal(out[5:15, 25:35], current[5:15, 25:35])  # B stays
    assert (out[0:3, 15:20] == 0).all()  # nothing is added
