"""The streaming engine on synthetic clips, with the training-free model (ImageNet Lite0 keys)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memvos.data.synthetic import make_synthetic_clip
from memvos.eval.metrics import jaccard
from memvos.inference.core import InferenceConfig, InferenceCore, short_side_for_small_objects
from memvos.inference.memory import MemoryPolicy
from memvos.model.memory_read import ReadConfig
from memvos.model.training_free import TrainingFreeConfig, TrainingFreeModel

POLICY = MemoryPolicy(every=0, recent=3, max_frames=10)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TrainingFreeModel(TrainingFreeConfig(read=ReadConfig(mode="kmn", sigma=6.0, top_k=5, temperature=0.1)))


@pytest.fixture(scope="module")
def late_clip():
    """Object 1 from frame 0, object 2 appears at frame 5 (only its own mask given there)."""
    clip = make_synthetic_clip(n_frames=12, size=(128, 192), n_objects=2, seed=6, appear_at={2: 5})
    assert all(not ((lab == 1).any() and (lab == 2).any() and _touching(lab)) for lab in clip.labels)
    return clip


def _touching(labels):
    """Whether the two objects come within 4 px of each other (the test wants them apart)."""
    import cv2

    grown = cv2.dilate((labels == 1).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    return bool((grown & (labels == 2)).any())


def run(core, clip, masks):
    out = []
    for t, frame in enumerate(clip.frames):
        probs = core.step(frame, masks.get(t))
        assert probs.shape == (len(core.object_ids) + 1, *frame.shape[:2])
        torch.testing.assert_close(probs.sum(0), torch.ones(frame.shape[:2]), rtol=0, atol=1e-4)
        out.append(core.labels(probs))
    return out


def test_object_appearing_at_frame_5_is_tracked_from_then_on(model, late_clip):
    clip = late_clip
    first = np.where(clip.labels[0] == 1, 1, 0).astype(np.uint8)
    later = np.where(clip.labels[5] == 2, 2, 0).astype(np.uint8)  # only the new object, YouTube-VOS style
    core = InferenceCore(model, InferenceConfig(memory=POLICY))
    labels = run(core, clip, {0: first, 5: later})
    assert core.object_ids == (1, 2)
    assert all(not (lab == 2).any() for lab in labels[:5])
    for t in range(6, 12):
        assert jaccard(clip.labels[t] == 2, labels[t] == 2) > 0.5, t
        assert jaccard(clip.labels[t] == 1, labels[t] == 1) > 0.5, t
    # on frame 5 the new object is exactly the given mask, and object 1 is still tracked
    assert np.array_equal(labels[5] == 2, later == 2)
    assert jaccard(clip.labels[5] == 1, labels[5] == 1) > 0.5


def test_frames_before_any_mask_are_background_and_ids_are_kept(model):
    clip = make_synthetic_clip(n_frames=6, size=(64, 96), n_objects=1, seed=5)
    mask = np.where(clip.labels[2] == 1, 7, 0).astype(np.uint8)  # object id 7, given on frame 2
    core = InferenceCore(model, InferenceConfig(memory=POLICY))
    labels = run(core, clip, {2: mask})
    assert not labels[0].any() and not labels[1].any()
    assert set(np.unique(labels[4])) <= {0, 7} and (labels[4] == 7).any()


def test_remove_object(model, late_clip):
    clip = late_clip
    core = InferenceCore(model, InferenceConfig(memory=POLICY))
    core.step(clip.frames[0], clip.labels[0])
    assert core.object_ids == (1,)
    core.remove_object(1)
    probs = core.step(clip.frames[1])
    assert probs.shape[0] == 1 and not core.labels(probs).any()
    with pytest.raises(KeyError):
        core.remove_object(3)


def test_flip_and_multiscale_and_ensemble_agree_with_plain(model, late_clip):
    clip = late_clip
    masks = {0: np.where(clip.labels[0] == 1, 1, 0).astype(np.uint8)}
    plain = run(InferenceCore(model, InferenceConfig(memory=POLICY)), clip, masks)
    tta = run(InferenceCore(model, InferenceConfig(memory=POLICY, scales=(112, 144), flip=True)), clip, masks)
    ensemble = run(InferenceCore([model, model], InferenceConfig(memory=POLICY)), clip, masks)
    for t in range(1, 12):
        assert jaccard(clip.labels[t] == 1, tta[t] == 1) > 0.5
        np.testing.assert_array_equal(plain[t], ensemble[t])  # the same model twice changes nothing


def test_mask_of_the_wrong_size_is_refused(model, late_clip):
    core = InferenceCore(model)
    with pytest.raises(ValueError, match="mask"):
        core.step(late_clip.frames[0], np.zeros((10, 10), np.uint8))


def test_small_objects_raise_the_processing_size_up_to_a_cap():
    from memvos.inference.core import smallest_object_area

    mask = np.zeros((1080, 1920), np.uint8)
    mask[100:300, 100:300] = 1  # 40,000 pixels: large enough at 480p
    assert short_side_for_small_objects(smallest_object_area(mask), 1080, 480, 256, 1080) == 480
    mask[500:520, 500:520] = 2  # 400 pixels: 79 at 480p; 256 at 1080 * sqrt(256 / 400)
    assert smallest_object_area(mask) == 400
    assert short_side_for_small_objects(400, 1080, 480, 256, 1080) == 864
    mask[600:605, 600:605] = 3  # 25 pixels: would need more than the frame's own size
    assert smallest_object_area(mask) == 25
    assert short_side_for_small_objects(25, 1080, 480, 256, 1080) == 1080
    assert short_side_for_small_objects(25, 1080, 480, 256, 720) == 720  # the cap
    # a 240p crowd: a 396-pixel person covers 4096 pixels at 772p; enlarged at most 3x: 720p
    assert short_side_for_small_objects(396, 240, 480, 4096, 1080) == 480  # never above its own size
    assert short_side_for_small_objects(396, 240, 480, 4096, 1080, max_upscale=3.0) == 720
    assert short_side_for_small_objects(396, 240, 480, 4096, 600, max_upscale=3.0) == 600
    mask[mask == 3] = 255  # void is no object
    assert smallest_object_area(mask) == 400
    assert smallest_object_area(np.zeros((1080, 1920), np.uint8)) is None


def test_the_engine_processes_a_video_with_a_small_object_larger(model, late_clip):
    clip = late_clip  # 128 x 192
    masks = {0: np.where(clip.labels[0] == 1, 1, 0).astype(np.uint8)}
    area = int((masks[0] == 1).sum())
    config = InferenceConfig(memory=POLICY, max_short_side=64)
    plain = InferenceCore(model, config)
    run(plain, clip, masks)
    assert plain.branches[0][0].size_for(128, 192) == (64, 96)
    rule = InferenceCore(model, InferenceConfig(memory=POLICY, max_short_side=64, min_object_area=area // 2,
                                                max_short_side_small=1080))
    labels = run(rule, clip, masks)
    side = short_side_for_small_objects(area, 128, 64, area // 2, 1080)  # the object at 64p is a quarter of it
    assert 64 < side < 128 and rule.branches[0][0].size_for(128, 192) == (side, round(192 * side / 128))
    assert jaccard(clip.labels[3] == 1, labels[3] == 1) > 0.5


def test_a_small_frame_with_a_small_object_is_processed_enlarged(model, late_clip):
    """max_upscale_small: the rule may enlarge a small video beyond its own size."""
    clip = late_clip  # 128 x 192
    masks = {0: np.where(clip.labels[0] == 1, 1, 0).astype(np.uint8)}
    area = int((masks[0] == 1).sum())
    config = InferenceConfig(memory=POLICY, max_short_side=128, min_object_area=area * 2, max_upscale_small=1.2)
    core = InferenceCore(model, config)
    labels = run(core, clip, masks)
    side = round(128 * 1.2)  # sqrt(2) x would be needed; 1.2 x is the cap
    assert core.branches[0][0].size_for(128, 192) == (side, round(192 * side / 128))
    assert labels[3].shape == (128, 192) and jaccard(clip.labels[3] == 1, labels[3] == 1) > 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_shipped_model_on_cuda_matches_the_cpu(late_clip):
    """End to end on the GPU (frames moved once, bfloat16 where native): the same masks as on the
    CPU but for a few boundary pixels."""
    from memvos.model.factory import load_model

    given = {0: late_clip.labels[0], 5: np.where(late_clip.labels[5] == 2, 2, 0).astype(np.uint8)}
    results = {}
    for device in ("cpu", "cuda"):
        net, config = load_model(None, device=device, frame_size=late_clip.frames[0].shape[:2])
        core = InferenceCore(net, config.inference)
        results[device] = [core.labels(core.step(f, given.get(t))) for t, f in enumerate(late_clip.frames)]
    for cpu, gpu in zip(results["cpu"], results["cuda"]):
        for obj in (1, 2):
            if (cpu == obj).any():
                assert jaccard(gpu == obj, cpu == obj) > 0.95


def test_a_uint8_frame_reaches_each_branch_as_floats_of_its_size(model):
    from memvos.inference.core import _Branch

    frame = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8))
    as_float = frame.permute(2, 0, 1)[None].float() / 255
    shrink = _Branch(model, 48, False, POLICY)  # resized as uint8: within one grey level of the float resize
    enlarge = _Branch(model, 192, True, POLICY)  # resized from floats, then mirrored
    same = _Branch(model, 96, False, POLICY)
    for branch in (shrink, enlarge, same):
        x = branch.to_branch(frame.permute(2, 0, 1)[None])
        expected = branch.to_branch(as_float)
        assert x.dtype == torch.float32 and x.shape == expected.shape and 0 <= x.min() and x.max() <= 1
        assert (x - expected).abs().max() <= (1.01 / 255 if branch is shrink else 1e-6)
    assert shrink.to_branch(as_float).shape[-2:] == (48, 80)
