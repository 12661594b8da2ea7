"""DAVIS interactive protocol driver: strokes, robot loop, stopping rules and the AUC summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from memvos.data.writers import write_palette_png
from memvos.errors import InputError
from memvos.eval import interactive
from memvos.eval.interactive import (
    annotated_frame,
    count_objects,
    evaluate_interactive,
    format_summary,
    largest_area_frame,
    next_scribble_frame,
    run_sequence,
    scribble_maps,
    stroke_radius,
    summarize,
)

T, H, W = 5, 64, 96
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture
def dav():
    """The davisinteractive package (tests that need it skip where it is not installed)."""
    pytest.importorskip("davisinteractive")
    return interactive.load_davisinteractive()


def synthetic_gt() -> np.ndarray:
    """Object 1: a 30x40 box sliding right; object 2: a box growing downwards (largest on the last frame)."""
    gt = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        gt[t, 10:40, 10 + 2 * t : 50 + 2 * t] = 1
        gt[t, 44 : 54 + 2 * t, 62:84] = 2
    return gt


def eroded(gt: np.ndarray, pixels: dict[int, int]) -> np.ndarray:
    """Object 1 shrunk by ``pixels[t]`` on frame t (object 2 exact): the error is a ring inside object 1."""
    out = gt.copy()
    for t, p in pixels.items():
        inner = cv2.erode((gt[t] == 1).astype(np.uint8), np.ones((2 * p + 1, 2 * p + 1), np.uint8))
        out[t][(gt[t] == 1) & (inner == 0)] = 0
    return out


def stroke(object_id: int, *points: tuple[float, float]) -> dict:
    return {"path": [list(p) for p in points], "object_id": object_id, "start_time": 0.0, "end_time": 1.0}


def scribble_on(frame: int, *strokes: dict, nb_frames: int = T, sequence: str = "synthetic") -> dict:
    frames = [[] for _ in range(nb_frames)]
    frames[frame] = list(strokes)
    return {"scribbles": frames, "sequence": sequence}


class FakeSession:
    """Duck-typed InteractiveSession: records the calls, answers ``masks()`` with ``answer(rounds)``."""

    def __init__(self, frames: np.ndarray, answer, clock=None) -> None:
        self.frames = frames
        self.answer = answer
        self.clock = clock
        self.rounds = 0
        self.calls: list[tuple[int, int, int, np.ndarray | None, np.ndarray | None]] = []

    def interact(self, frame, object_id, positive=None, negative=None, clicks=None, mask=None):
        self.calls.append((self.rounds + 1, frame, object_id, positive, negative))
        return np.zeros(self.frames.shape[1:3], np.uint8)

    def propagate(self, progress=None, cancel=None) -> bool:
        self.rounds += 1
        if self.clock is not None:
            self.clock.now += 1.0  # every round costs one second of "model time"
        return True

    def masks(self) -> np.ndarray:
        return self.answer(self.rounds)


def factory(answer, clock=None):
    sessions: list[FakeSession] = []

    def make(frames):
        sessions.append(FakeSession(frames, answer, clock))
        return sessions[-1]

    return make, sessions


class SpyRobot:
    """The real robot, counting its calls and remembering the frames it was sent to."""

    def __init__(self) -> None:
        self.robot = interactive.make_robot()
        self.frames: list[int] = []

    def interact(self, sequence, pred, gt, nb_objects=None, frame=None):
        self.frames.append(frame)
        return self.robot.interact(sequence, pred, gt, nb_objects=nb_objects, frame=frame)


def raw_strokes(dav, scribble: dict, frame: int, shape=(H, W)) -> np.ndarray:
    return dav.scribbles2mask(scribble, output_resolution=tuple(shape))[frame]


# ----------------------------------------------------------------------------- scribbles


def test_scribble_maps_split_positive_and_negative_and_thicken(dav):
    shape = (320, 480)  # stroke radius 2
    scribble = scribble_on(1, stroke(1, (0.1, 0.25), (0.5, 0.25)), stroke(2, (0.75, 0.1), (0.75, 0.6)),
                           stroke(0, (0.2, 0.9), (0.8, 0.9)))
    assert stroke_radius(shape) == 2 and stroke_radius((480, 854)) == 3
    maps = scribble_maps(scribble, 1, shape, [1, 2, 3])
    pos1, neg1 = maps[1]
    y1, x2, y0 = round(0.25 * 319 - 0.5), int(0.75 * 479), int(0.9 * 319)  # where scribbles2mask draws them
    assert pos1[y1, 100] and pos1[y1 - 2, 100] and pos1[y1 + 2, 100]  # thickened by 2 px
    assert not pos1[y1 - 3, 100] and not pos1[y1 + 3, 100]
    assert neg1[120, x2] and neg1[y0, 200] and not neg1[y1, 100]  # object 2 and background strokes
    pos2, neg2 = maps[2]
    assert pos2[120, x2 + 2] and not pos2[y1, 100] and neg2[y1, 100] and neg2[y0, 200]
    pos3, neg3 = maps[3]
    assert not pos3.any() and np.array_equal(neg3, pos1 | pos2 | (neg1 & neg2))
    for pos, neg in maps.values():
        assert not (pos & neg).any()
    empty_pos, empty_neg = scribble_maps(scribble, 0, shape, [1])[1]
    assert not empty_pos.any() and not empty_neg.any()


def test_thickened_strokes_of_two_objects_never_overlap(dav):
    shape = (160, 160)  # radius 1; the strokes cross
    scribble = scribble_on(0, stroke(1, (0.1, 0.5), (0.9, 0.5)), stroke(2, (0.5, 0.1), (0.5, 0.9)), nb_frames=1)
    maps = scribble_maps(scribble, 0, shape, [1, 2])
    assert not (maps[1][0] & maps[2][0]).any()
    assert np.array_equal(maps[1][1], maps[2][0]) and np.array_equal(maps[2][1], maps[1][0])


def test_annotated_frame_and_helpers():
    assert annotated_frame(scribble_on(3, stroke(1, (0.5, 0.5), (0.6, 0.6)))) == 3
    with pytest.raises(ValueError):
        annotated_frame(scribble_on(0, nb_frames=2) | {"scribbles": [[], []]})
    gt = synthetic_gt()
    assert count_objects(gt) == 2 and largest_area_frame(gt, 2) == T - 1
    void = gt.copy()
    void[0, :2] = 255
    assert count_objects(void) == 2


def test_next_frame_follows_the_service_rules():
    j = np.array([[0.9], [0.2], [0.5], [0.1]])
    f = np.array([[0.9], [0.2], [0.5], [0.3]])  # mean J&F: 0.9, 0.2, 0.5, 0.2 -> argsort 1, 3, 2, 0
    assert next_scribble_frame(j, f, []) == 1
    assert next_scribble_frame(j, f, [1]) == 3
    assert next_scribble_frame(j, f, [1, 3]) == 2
    assert next_scribble_frame(j, f, [0, 1, 2, 3]) == 1  # every frame used: the store is forgotten
    assert next_scribble_frame(j, f, [1, 3, 2, 1]) == 0


# ----------------------------------------------------------------------------- protocol


def test_perfect_session_scores_one_and_the_loop_goes_on_to_max_interactions(dav):
    gt = synthetic_gt()
    make, sessions = factory(lambda rounds: gt)
    first = scribble_on(1, stroke(1, (0.2, 0.4), (0.4, 0.4)), stroke(0, (0.1, 0.9), (0.9, 0.9)))
    records = run_sequence("synthetic", np.zeros((T, H, W, 3), np.uint8), gt, make, first, max_interactions=4)
    assert [r["interaction"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert r["jaccard"].shape == r["contour"].shape == (T, 2)
        assert np.all(r["jaccard"] == 1.0) and np.all(r["contour"] == 1.0)
    session = sessions[0]
    assert {(c[1], c[2]) for c in session.calls} == {(1, 1), (1, 2)}  # both objects told, on the scribble's frame
    assert session.rounds == 1  # nothing wrong, so the robot drew nothing and the model had nothing to do
    assert [r["frames"] for r in records] == [[1], [], [], []] and records[1]["timing"] == 0.0


def test_robot_scribbles_land_on_the_error_of_the_worst_frame(dav):
    gt = synthetic_gt()
    pred = eroded(gt, {t: 4 for t in range(T)} | {2: 8})  # frame 2 is the worst
    make, sessions = factory(lambda rounds: pred)
    robot = SpyRobot()
    records = run_sequence("synthetic", np.zeros((T, H, W, 3), np.uint8), gt, make, None, max_interactions=2,
                           robot=robot)
    assert robot.frames == [T - 1, 2]  # the first scribble (largest frame), then the worst frame
    assert records[1]["frames"] == [2]
    strokes = raw_strokes(dav, records[1]["scribble"], 2)
    error = (gt[2] == 1) & (pred[2] != 1)
    assert (strokes >= 0).sum() > 10
    assert set(np.unique(strokes[strokes >= 0])) == {1}  # nothing wrong in the background or object 2
    near_error = cv2.dilate(error.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert near_error[strokes >= 0].all()
    round2 = [c for c in sessions[0].calls if c[0] == 2]
    assert {(c[1], c[2]) for c in round2} == {(2, 1), (2, 2)}
    for _, _, object_id, positive, negative in round2:
        if object_id == 1:
            assert positive is not None and negative is None
            assert (cv2.dilate(error.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0)[positive].all()
        else:  # object 2 only hears "not here" from object 1's strokes
            assert positive is None and negative is not None and not (negative & (gt[2] == 2)).any()
    jf = [float((0.5 * r["jaccard"] + 0.5 * r["contour"]).mean()) for r in records]
    assert 0.4 < jf[0] < 1.0 and jf[0] == pytest.approx(jf[1])  # a session that ignores scribbles stays put


def test_robot_starts_on_the_largest_frame_without_a_human_scribble(dav):
    gt = synthetic_gt()
    make, sessions = factory(lambda rounds: gt)
    records = run_sequence("synthetic", np.zeros((T, H, W, 3), np.uint8), gt, make, None, max_interactions=1)
    assert len(records) == 1 and records[0]["frames"] == [T - 1]
    assert {c[1] for c in sessions[0].calls} == {T - 1}
    positives = {c[2]: c[3] for c in sessions[0].calls}
    strokes = raw_strokes(dav, records[0]["scribble"], T - 1)
    for k in (1, 2):  # the first robot scribble marks each object inside it (1 px of rounding allowed)
        inside = cv2.dilate((gt[T - 1] == k).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert (strokes == k).sum() > 10 and inside[strokes == k].all()
        assert positives[k] is not None and (gt[T - 1] == k)[positives[k]].mean() > 0.8


def test_robot_is_deterministic(dav):
    """scikit-image's medial_axis breaks ties at random; the loader seeds it so that runs repeat."""
    gt = synthetic_gt()
    robot = interactive.make_robot()
    runs = [robot.interact("s", np.zeros_like(gt), gt, nb_objects=2, frame=T - 1)["scribbles"][T - 1]
            for _ in range(3)]
    paths = [[(p["object_id"], p["path"]) for p in strokes] for strokes in runs]
    assert paths[0] == paths[1] == paths[2] and len(paths[0]) == 2


def test_max_interactions_is_respected_and_frames_are_not_reused(dav):
    gt = synthetic_gt()
    pred = eroded(gt, {t: 4 for t in range(T)} | {2: 8})
    make, _ = factory(lambda rounds: pred)
    robot = SpyRobot()
    records = run_sequence("synthetic", np.zeros((T, H, W, 3), np.uint8), gt, make, None, max_interactions=3,
                           robot=robot)
    assert [r["interaction"] for r in records] == [1, 2, 3]
    assert len(robot.frames) == 3  # the first scribble (no human one) and one per following round
    assert robot.frames[0] == T - 1 and robot.frames[1] == 2 and robot.frames[2] not in (2,)
    with pytest.raises(ValueError):
        run_sequence("synthetic", np.zeros((T, H, W, 3), np.uint8), gt, make, None, max_interactions=0)


def test_time_budget_is_per_object_and_a_late_round_is_discarded(dav, monkeypatch):
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(interactive, "perf_counter", clock)
    gt = synthetic_gt()
    pred = eroded(gt, {t: 4 for t in range(T)})
    make, sessions = factory(lambda rounds: pred, clock)
    records = run_sequence("synthetic", np.zeros((T, H, W, 3), np.uint8), gt, make, None, max_interactions=8,
                           max_time=1.6)  # 2 objects: 3.2 s; each round takes 1 s
    assert [r["interaction"] for r in records] == [1, 2, 3] and [r["timing"] for r in records] == [1.0] * 3
    assert sessions[0].rounds == 4  # the fourth round ran but ended at 4 s: not scored


def test_human_first_scribble_must_fit_the_sequence(dav):
    gt = synthetic_gt()
    make, _ = factory(lambda rounds: gt)
    frames = np.zeros((T, H, W, 3), np.uint8)
    with pytest.raises(InputError, match="3 frames but the sequence has 5"):
        run_sequence("s", frames, gt, make, scribble_on(0, stroke(1, (0.1, 0.1), (0.2, 0.2)), nb_frames=3))
    with pytest.raises(InputError, match="object ids"):
        run_sequence("s", frames, gt, make, scribble_on(0, stroke(3, (0.1, 0.1), (0.2, 0.2))))


# ----------------------------------------------------------------------------- summary


def record(interaction: int, timing: float, jaccard, contour) -> dict:
    return {"interaction": interaction, "timing": timing, "jaccard": np.array(jaccard, float),
            "contour": np.array(contour, float)}


HAND_REPORT = {
    # A: 1 object, 2 frames, 2 rounds; frame-mean J&F 0.5 then 0.95
    "A": [record(1, 2.0, [[0.5], [0.7]], [[0.3], [0.5]]), record(2, 1.0, [[1.0], [1.0]], [[0.8], [1.0]])],
    # B: 2 objects, 1 frame, stopped after round 1: J&F 0.3 and 0.7, repeated in round 2 at no time cost
    "B": [record(1, 4.0, [[0.2, 0.6]], [[0.4, 0.8]])],
}


def test_summarize_against_hand_computed_values():
    s = summarize(HAND_REPORT, max_interactions=2, max_time=None, time_threshold=3.25)
    # J&F per round: mean over (A,1), (B,1), (B,2): (0.5+0.3+0.7)/3 = 0.5, (0.95+0.3+0.7)/3 = 0.65
    # time: mean over sequences, cumulated: (2+4)/2 = 3, then + (1+0)/2 -> 3.5; timeout 2 rounds * 4 s = 8
    assert s["curve"]["time"] == pytest.approx([0, 3, 3.5, 8])
    assert s["curve"]["jf"] == pytest.approx([0, 0.5, 0.65, 0.65])
    assert s["auc"] == pytest.approx((0.25 * 3 + 0.575 * 0.5 + 0.65 * 4.5) / 8)  # 0.4953125
    assert s["jf_at_threshold"] == pytest.approx(0.575) and s["threshold"] == 3.25
    assert s["per_sequence"]["B"] == {"objects": 2, "interactions": 1, "jf_per_interaction": pytest.approx([0.5, 0.5]),
                                      "timing": [4.0, 0.0]}
    assert s["per_sequence"]["A"]["jf_per_interaction"] == pytest.approx([0.5, 0.95])
    assert s["seconds_per_round"] == pytest.approx(7 / 3)
    timed = summarize(HAND_REPORT, max_interactions=2, max_time=5.0)
    assert timed["curve"]["time"][-1] == pytest.approx(1.5 * 5.0)  # mean objects * max_time
    assert timed["auc"] == pytest.approx((0.75 + 0.2875 + 0.65 * 4.0) / 7.5)
    assert timed["jf_at_threshold"] == pytest.approx(0.65)  # 60 s is past the curve: its last value
    assert format_summary(timed).splitlines()[-1] == "AUC 0.485  J&F@60s 0.650  2.33 s/round"
    json.dumps(timed)


def package_summary(monkeypatch, report: dict, counts: dict, max_i, max_t, threshold: float) -> dict:
    """The package's own ``EvaluationService.summarize_report`` on the report its LocalStorage would hold."""
    from davisinteractive.dataset import Davis
    from davisinteractive.evaluation.service import EvaluationService
    from davisinteractive.storage import LocalStorage

    storage = LocalStorage()
    for name, records in report.items():
        monkeypatch.setitem(Davis.dataset, name, {"num_objects": counts[name], "num_scribbles": 1,
                                                  "num_frames": records[0]["jaccard"].shape[0] if records else 1})
        for r in records:
            nb_frames, k = r["jaccard"].shape
            objects, frames = np.meshgrid(np.arange(k) + 1, np.arange(nb_frames))  # as post_predicted_masks
            storage.store_interactions_results(None, "s", name, 1, r["interaction"], r["timing"],
                                               objects.ravel().tolist(), frames.ravel().tolist(),
                                               r["jaccard"].ravel().tolist(), r["contour"].ravel().tolist())
    service = object.__new__(EvaluationService)
    service.sequences = list(report)
    service.max_i, service.max_t = max_i, max_t
    service.metric_to_optimize = "J_AND_F"
    service.time_threshold = threshold
    service.avg_nb_objects = sum(counts.values()) / len(counts)
    # Two pandas >= 2 incompatibilities of the package, worked around without changing its arithmetic:
    # it averages the string session_id column before dropping it (TypeError), and its row filling
    # turns the columns into dtype object, which np.interp refuses.
    reconstruct = service._reconstruct_report
    monkeypatch.setattr(service, "_reconstruct_report", lambda df: reconstruct(df).astype(float), raising=False)
    df = storage.get_report(session_id="s").drop(columns="session_id")
    return service.summarize_report(df)


@pytest.mark.parametrize("max_t", [None, 2.0])
def test_summarize_matches_the_package_summarize_report(dav, monkeypatch, max_t):
    rng = np.random.default_rng(7)
    shapes = {"a": (1, 4, 3), "b": (2, 3, 1), "c": (3, 5, 4), "d": (2, 2, 0)}  # objects, frames, rounds done
    report = {n: [record(i, float(rng.uniform(0.1, 3)), rng.random((t, k)), rng.random((t, k)))
                  for i in range(1, rounds + 1)] for n, (k, t, rounds) in shapes.items()}
    counts = {n: k for n, (k, _, _) in shapes.items()}
    for max_i, threshold in ((4, 2.5), (None, 60.0)):
        ours = summarize(report, max_i, max_t, threshold, nb_objects=counts)
        theirs = package_summary(monkeypatch, report, counts, max_i, max_t, threshold)
        assert ours["curve"]["time"] == pytest.approx(theirs["curve"]["time"], abs=1e-12)
        assert ours["curve"]["jf"] == pytest.approx(theirs["curve"]["J_AND_F"], abs=1e-12)
        assert ours["auc"] == pytest.approx(float(theirs["auc"]), abs=1e-12)
        assert ours["jf_at_threshold"] == pytest.approx(float(theirs["metric_at_threshold"]["J_AND_F"]), abs=1e-12)


# ----------------------------------------------------------------------------- dataset driver


def write_davis(root: Path, sequences: dict[str, np.ndarray]) -> None:
    for name, gt in sequences.items():
        for t, labels in enumerate(gt):
            (root / "JPEGImages" / "480p" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full(labels.shape + (3,), 40 * t, np.uint8)).save(
                root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg")
            write_palette_png(root / "Annotations" / "480p" / name / f"{t:05d}.png", labels)
    (root / "ImageSets").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "train.txt").write_text("\n".join(sequences) + "\n")


def test_evaluate_interactive_on_a_tiny_davis_folder(dav, tmp_path):
    gt = synthetic_gt()
    single = (gt == 1).astype(np.uint8)
    write_davis(tmp_path / "davis", {"two": gt, "one": single})
    scribbles = tmp_path / "scribbles" / "Scribbles" / "two"
    scribbles.mkdir(parents=True)
    (scribbles / "001.json").write_text(json.dumps(
        scribble_on(0, stroke(1, (0.2, 0.4), (0.4, 0.4)), stroke(2, (0.72, 0.75), (0.8, 0.75)), sequence="two")))
    truths = {"two": gt, "one": single}
    shapes = []

    def make(frames):
        shapes.append(frames.shape)
        truth = truths["two"] if len(shapes) == 1 else truths["one"]  # sequences run in order
        return FakeSession(frames, lambda rounds: truth)

    s = evaluate_interactive(tmp_path / "davis", None, make, max_interactions=2,
                             first_scribbles_dirs=[tmp_path / "scribbles"], progress=False)
    assert shapes == [(T, H, W, 3), (T, H, W, 3)]
    assert list(s["per_sequence"]) == ["two", "one"]  # the held-out default: last 6 of train.txt
    assert s["first_scribbles"]["two"].endswith("001.json") and s["first_scribbles"]["one"] is None
    assert s["per_sequence"]["two"]["objects"] == 2 and s["per_sequence"]["one"]["objects"] == 1
    assert s["curve"]["jf"][1:] == pytest.approx([1.0, 1.0, 1.0])
    assert 0 < s["auc"] <= 1

    def make_small(frames):
        shapes.append(frames.shape)
        small = cv2.resize(single[0], (48, 32), interpolation=cv2.INTER_NEAREST)
        return FakeSession(frames, lambda rounds: np.repeat(small[None], T, axis=0))

    shapes.clear()
    s = evaluate_interactive(tmp_path / "davis", ["one"], make_small, max_interactions=1, short_side=32,
                             progress=False)
    assert shapes == [(T, 32, 48, 3)] and s["short_side"] == 32
    assert s["per_sequence"]["one"]["jf_per_interaction"][0] < 1.0  # frame 0's box on every frame: scored at 32 px


def test_evaluate_interactive_errors_name_the_path(tmp_path):
    gt = synthetic_gt()
    write_davis(tmp_path / "davis", {"two": gt})
    make, _ = factory(lambda rounds: gt)
    with pytest.raises(InputError, match="nope: sequence folder not found"):
        evaluate_interactive(tmp_path / "davis", ["nope"], make, progress=False)
    with pytest.raises(InputError, match="DAVIS root folder not found"):
        evaluate_interactive(tmp_path / "missing", ["two"], make, progress=False)
    with pytest.raises(InputError, match="scribbles folder not found"):
        evaluate_interactive(tmp_path / "davis", ["two"], make, first_scribbles_dirs=[tmp_path / "x"], progress=False)
    bad = tmp_path / "s" / "two"
    bad.mkdir(parents=True)
    (bad / "001.json").write_text(json.dumps(scribble_on(0, stroke(1, (0.1, 0.1), (0.2, 0.2)), nb_frames=2,
                                                         sequence="two")))
    with pytest.raises(InputError, match=r"001\.json: scribble has 2 frames but the sequence has 5"):
        evaluate_interactive(tmp_path / "davis", ["two"], make, first_scribbles_dirs=[tmp_path / "s"], progress=False)
    (bad / "001.json").write_text(json.dumps(scribble_on(0, stroke(1, (0.1, 0.1), (0.2, 0.2)), sequence="bear")))
    with pytest.raises(InputError, match="scribble is for sequence 'bear', not 'two'"):
        evaluate_interactive(tmp_path / "davis", ["two"], make, first_scribbles_dirs=[tmp_path / "s"], progress=False)
    (bad / "001.json").write_text("{")
    with pytest.raises(InputError, match="unreadable scribble JSON"):
        evaluate_interactive(tmp_path / "davis", ["two"], make, first_scribbles_dirs=[tmp_path / "s"], progress=False)


def test_missing_package_is_a_one_line_error_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "davisinteractive.robot", None)  # makes the import fail
    with pytest.raises(InputError, match="pip install --no-deps --no-build-isolation davisinteractive==1.0.4"):
        interactive.load_davisinteractive.__wrapped__()


@pytest.mark.shared_data
def test_human_scribble_of_bear_lies_on_the_bear(dav):
    davis = SHARED / "davis2016-train"
    fixtures = SHARED / "davis-interactive-fixtures" / "dataset_test_data"
    if not (davis / "JPEGImages" / "480p" / "bear").is_dir() or not (fixtures / "Scribbles" / "bear").is_dir():
        pytest.skip(f"shared DAVIS data not found at {SHARED}")
    sessions = []

    def make(frames):
        gt = np.stack([np.asarray(Image.open(p)) for p in sorted((davis / "Annotations" / "480p" / "bear").glob("*.png"))])
        sessions.append(FakeSession(frames, lambda rounds: gt))
        return sessions[-1]

    s = evaluate_interactive(davis, ["bear"], make, max_interactions=1, first_scribbles_dirs=[fixtures],
                             progress=False)
    assert s["per_sequence"]["bear"]["jf_per_interaction"] == [1.0]
    calls = sessions[0].calls
    assert [(c[1], c[2]) for c in calls] == [(39, 1)]
    gt39 = np.asarray(Image.open(davis / "Annotations" / "480p" / "bear" / "00039.png")) == 1
    assert gt39[calls[0][3]].mean() > 0.9  # x/y order and scale right: the human strokes are on the bear
