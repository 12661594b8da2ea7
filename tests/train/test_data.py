from pathlib import Path

import numpy as np
import pytest
import torch

from memvos.data.static_clips import ClipAugment
from memvos.errors import InputError
from memvos.train.data import StaticClips, VideoClips, collate, item_for, skip_curriculum


def test_every_epoch_visits_each_item_once():
    size = 7
    for epoch in range(3):
        items = [item_for(1, epoch * size + i, size) for i in range(size)]
        assert sorted(items) == list(range(size))
    first, second = ([item_for(1, e * size + i, size) for i in range(size)] for e in (0, 1))
    assert first != second  # a fresh permutation per epoch (fixed seed: deterministic)


def test_skip_curriculum_grows_then_shrinks():
    points = [5, 25, 5]
    assert skip_curriculum(0.0, points) == 5
    assert skip_curriculum(0.25, points) == 15
    assert skip_curriculum(0.5, points) == 25
    assert skip_curriculum(1.0, points) == 5
    assert skip_curriculum(0.3, [7]) == 7


@pytest.mark.parametrize("n,skip", [(3, 5), (10, 1), (50, 25), (4, 25)])
def test_picked_frames_are_ordered_and_within_the_skip(n, skip):
    rng = np.random.default_rng(0)
    for _ in range(200):
        picks = VideoClips._pick_frames(n, skip, rng)
        assert all(0 <= p < n for p in picks)
        steps = np.diff(picks)
        assert (steps >= 1).all() and (steps <= skip).all()


def test_static_samples_are_deterministic_and_well_formed(static_root):
    data = StaticClips([static_root], ClipAugment(crop=48, max_objects=2), hide_and_seek=True)
    a, b = data.sample(3, 5, 10, 10), data.sample(3, 5, 10, 10)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.labels, b.labels)
    assert a.frames.shape == (3, 3, 48, 48) and a.labels.shape == (3, 48, 48)
    assert 1 <= a.num_objects <= 2
    assert set(a.labels[0].unique().tolist()) == set(range(a.num_objects + 1))  # the reference shows every object
    assert not torch.equal(a.frames, data.sample(3, 6, 10, 10).frames)


def test_hide_and_seek_follows_the_schedule(static_root):
    data = StaticClips([static_root], ClipAugment(crop=48, hide_grid=8), hide_and_seek=True, hide_max=0.5)
    off = StaticClips([static_root], ClipAugment(crop=48, hide_grid=8), hide_and_seek=False)
    # at the start nothing is hidden: same clip as with the switch off
    assert torch.equal(data.sample(0, 1, 0, 100).frames, off.sample(0, 1, 0, 100).frames)
    # at the end, later frames differ from the unhidden ones (about half the cells hidden)
    assert not torch.equal(data.sample(0, 1, 100, 100).frames[1:], off.sample(0, 1, 100, 100).frames[1:])


def test_video_samples_hold_out_the_last_sequences(davis_root):
    data = VideoClips(davis_root, ClipAugment(crop=48, max_objects=2), split="train", exclude_last=1, skip=[3])
    assert [s.name for s in data.sequences] == ["a", "b"]
    sample = data.sample(0, 0, 0, 10)
    assert sample.frames.shape == (3, 3, 48, 48)
    assert sample.num_objects >= 1 and (sample.labels[0] > 0).any()
    assert int(sample.labels.max()) <= sample.num_objects


def test_static_root_without_folders_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="images/ and masks/"):
        StaticClips([tmp_path], ClipAugment())


def test_collate_stacks_and_rejects_too_many_objects(static_root):
    data = StaticClips([static_root], ClipAugment(crop=32, max_objects=2))
    samples = [data.sample(0, i, 0, 1) for i in range(3)]
    frames, labels, counts = collate(samples, 2)
    assert frames.shape == (3, 3, 3, 32, 32) and labels.shape == (3, 3, 32, 32)
    assert counts.tolist() == [s.num_objects for s in samples]
    with pytest.raises(ValueError, match="max_objects"):
        collate(samples, 0)


def test_shipped_training_configs_parse():
    from memvos.train.config import load_train_config
    from memvos.train.interaction import is_interaction_config, load_interaction_config
    from memvos.train.reid import is_reid_config, load_reid_config

    files = sorted((Path(__file__).resolve().parents[2] / "configs" / "train").glob("*.yaml"))
    special = {p for p in files if is_reid_config(p) or is_interaction_config(p)}
    stages = {p.stem: load_train_config(p, "/data") for p in files if p not in special}
    reid = {p.stem: load_reid_config(p, "/data") for p in files if is_reid_config(p)}
    interaction = {p.stem: load_interaction_config(p, "/data") for p in files if is_interaction_config(p)}
    assert interaction["interaction"].held_out_every == 10 and interaction["interaction"].roots[0].startswith("/data")
    assert reid["reid-lite0"].exclude_last == 6  # the re-id projection never sees the held-out six
    assert {"stage0-static", "stage0-static-hns", "stage2-davis"} <= set(stages)
    assert stages["stage0-static"].data.kind == "static" and not stages["stage0-static"].data.hide_and_seek
    assert stages["stage0-static-hns"].data.hide_and_seek
    repo = Path(__file__).resolve().parents[2]
    assert (repo / stages["stage2-davis"].init).is_file()  # stage 2 starts from committed weights
    assert stages["stage2-davis"].data.kind == "video" and stages["stage2-davis"].data.exclude_last == 6
    interactive = stages["interactive-davis"]
    assert (repo / interactive.init).is_file() and interactive.data.exclude_last == 6
    from memvos.config import load_config

    assert load_config(interactive.model).model["scribbles"] is True


def test_objects_missing_from_the_reference_frame_become_background():
    from memvos.data.static_clips import TrainingClip
    from memvos.train.data import to_sample

    labels = np.zeros((3, 4, 4), np.uint8)
    labels[0, 0, 0], labels[0, 1, 1] = 1, 3  # frame 0 shows objects 1 and 3
    labels[1, 0, 0], labels[1, 2, 2], labels[2, 3, 3] = 3, 2, 1  # object 2 only appears later
    sample = to_sample(TrainingClip(np.zeros((3, 4, 4, 3), np.uint8), labels, np.zeros((3, 2, 2), bool)))
    assert sample.num_objects == 2
    assert sample.labels[0, 1, 1] == 2 and sample.labels[1, 0, 0] == 2  # 3 -> 2
    assert sample.labels[1, 2, 2] == 0 and sample.labels[2, 3, 3] == 1


def test_a_simulated_interaction_is_deterministic_and_padded_by_collate(static_root):
    from memvos.train.data import collate_interaction, interaction_rng, with_interaction

    data = StaticClips([static_root], ClipAugment(crop=32, max_objects=2))
    samples = [data.sample(0, i, 0, 1) for i in range(3)]
    first = [with_interaction(s, interaction_rng(0, i)) for i, s in enumerate(samples)]
    again = [with_interaction(s, interaction_rng(0, i)) for i, s in enumerate(samples)]
    for a, b, s in zip(first, again, samples):
        assert torch.equal(a.strokes, b.strokes) and torch.equal(a.prior, b.prior)
        assert a.prior.shape == (s.num_objects, 32, 32) and a.strokes.shape == (s.num_objects, 2, 32, 32)
        for k in range(s.num_objects):  # positive strokes lie on the object's frame-0 mask
            assert not (a.strokes[k, 0].bool() & (s.labels[0] != k + 1)).any()
    prior, strokes = collate_interaction(first)
    k = max(max(s.num_objects for s in samples), 1)
    assert prior.shape == (3, k, 32, 32) and strokes.shape == (3, k, 2, 32, 32)
    for i, s in enumerate(samples):
        assert not strokes[i, s.num_objects:].any()  # padding objects have no strokes
    with pytest.raises(ValueError, match="simulated interaction"):
        collate_interaction(samples)


def test_plain_rounds_give_the_whole_mask_and_no_strokes(static_root):
    from memvos.train.data import is_plain, plain_round

    data = StaticClips([static_root], ClipAugment(crop=32, max_objects=2))
    sample = data.sample(0, 0, 0, 1)
    plain = plain_round(sample)
    for k in range(sample.num_objects):
        assert torch.equal(plain.prior[k].bool(), sample.labels[0] == k + 1)
    assert plain.strokes.shape == (sample.num_objects, 2, 32, 32) and not plain.strokes.any()
    # the share of plain samples follows the fraction, and each sample's draw is fixed
    draws = [is_plain(3, n, 0.3) for n in range(2000)]
    assert abs(np.mean(draws) - 0.3) < 0.04
    assert draws == [is_plain(3, n, 0.3) for n in range(2000)]
    assert not any(is_plain(3, n, 0.0) for n in range(200)) and all(is_plain(3, n, 1.0) for n in range(200))
