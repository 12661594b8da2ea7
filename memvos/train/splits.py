"""The validation split every training recipe is judged on (issue 20).

The README's old held-out six (the last six sequences of DAVIS-2016 train) are easy and were
used for many choices: they overestimated unseen-video J&F by 0.10. ``HARD`` holds ten DAVIS-2016
train sequences picked, before any model was scored on them, for the failure kinds seen on
unseen videos, plus one multi-object clip with look-alikes. Weights whose validation numbers are
reported never train on ``HARD`` nor on ``HELD_OUT_SIX``; the shipped weights are retrained on
everything afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SplitSequence:
    dataset: str  # folder under the data root (``../shared/data``), a DAVIS layout
    name: str
    kind: str  # why it is in the split


HARD: tuple[SplitSequence, ...] = (
    SplitSequence("davis2016-train", "flamingo", "look-alike distractors (a flock)"),
    SplitSequence("davis2016-train", "breakdance-flare", "dancer in a crowd, fast motion"),
    SplitSequence("davis2016-train", "bmx-bumps", "thin parts (bike), crowd, fast motion"),
    SplitSequence("davis2016-train", "kite-walk", "thin parts (kite lines), small object"),
    SplitSequence("davis2016-train", "paragliding", "thin parts (lines), small object"),
    SplitSequence("davis2016-train", "hockey", "thin parts (stick), fast motion"),
    SplitSequence("davis2016-train", "mallard-fly", "small object, fast motion"),
    SplitSequence("davis2016-train", "motocross-bumps", "fast motion, thin parts"),
    SplitSequence("davis2016-train", "drift-turn", "fast motion, smoke, appearance change"),
    SplitSequence("davis2016-train", "bus", "look-alike vehicles around it"),
    SplitSequence("davis2017-extra", "schoolgirls", "7 look-alike people crossing each other"),
)

HELD_OUT_SIX: tuple[SplitSequence, ...] = tuple(
    SplitSequence("davis2016-train", name, "the old held-out six (continuity)")
    for name in ("soccerball", "stroller", "surf", "swing", "tennis", "train"))

# Everything else with masks on every frame: the other 14 DAVIS-2016 train sequences and the
# 3-object dogs-jump. Not a validation split (the video recipes trained on them), but a check that no
# choice was tuned on, for weights that never saw a video (the static-only recipes).
OUTSIDE: tuple[SplitSequence, ...] = tuple(
    SplitSequence("davis2016-train", name, "outside the split: a check for static-only weights")
    for name in ("bear", "boat", "car-turn", "dance-jump", "dog-agility", "elephant", "hike", "horsejump-low",
                 "lucia", "mallard-water", "motorbike", "rhino", "rollerblade", "scooter-gray")
) + (SplitSequence("davis2017-extra", "dogs-jump", "outside the split: 3 objects (2 dogs, a person)"),)

SPLITS: dict[str, tuple[SplitSequence, ...]] = {"hard": HARD, "six": HELD_OUT_SIX, "validation": HARD + HELD_OUT_SIX,
                                                "outside": OUTSIDE}


def excluded_names(split: str, dataset: str) -> list[str]:
    """Sequence names of ``dataset`` (a folder name such as ``davis2016-train``) in ``split``:
    what training must leave out for its weights to be judged on that split."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {sorted(SPLITS)})")
    return [s.name for s in SPLITS[split] if s.dataset == dataset]
