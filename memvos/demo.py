"""`memvos demo`: build the demo clip, segment it from its first-frame mask, score the result."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from memvos.data.atomic import atomic_dir
from memvos.data.synthetic import Clip, make_demo_clip
from memvos.data.video import VideoWriter
from memvos.data.writers import render_overlay, write_palette_png
from memvos.eval.evaluate import EvaluationResult, evaluate_folders

SEQUENCE = "demo"

# A predictor takes the clip's frames and the first frame's label map and returns one
# label map per frame.
Predictor = Callable[[list[np.ndarray], np.ndarray], list[np.ndarray]]


def engine_predictor(checkpoint: str | None = None,
                     frame_size: tuple[int, int] | None = None) -> tuple[Predictor, str]:
    """A predictor running the streaming engine with ``checkpoint``, or the best shipped model
    for frames of ``frame_size`` (H, W)."""
    from memvos.inference.core import InferenceCore
    from memvos.model.factory import load_model

    model, config = load_model(checkpoint, frame_size=frame_size)

    def predict(frames: list[np.ndarray], first_labels: np.ndarray) -> list[np.ndarray]:
        core = InferenceCore(model, config.inference)
        out = []
        for t, frame in enumerate(tqdm(frames, desc="segmenting", unit="frame")):
            out.append(core.labels(core.step(frame, first_labels if t == 0 else None)))
        return out

    return predict, f"{config.name} ({config.model_type}, read {model.read.config.mode})"


def run_demo(out_dir: str | Path = "memvos-demo", predictor: Predictor | None = None,
             predictor_name: str | None = None, checkpoint: str | None = None) -> EvaluationResult:
    """Write frames, ground truth, predicted masks and an overlay video to ``out_dir``; return the scores.

    The default predictor is the segmentation engine with the best model memvos ships.
    """
    out_dir = Path(out_dir)
    clip: Clip = make_demo_clip()
    if predictor is None:
        predictor, predictor_name = engine_predictor(checkpoint, clip.frames[0].shape[:2])
    predict = predictor
    print(f"memvos demo: {len(clip.frames)} frames {clip.frames[0].shape[1]}x{clip.frames[0].shape[0]}, "
          f"objects 1 (horse) and 2 (ball); model: {predictor_name or 'custom'}")
    predictions = predict(clip.frames, clip.labels[0])
    with atomic_dir(out_dir) as tmp:
        clip.save(tmp / "frames", tmp / "gt" / SEQUENCE)
        with VideoWriter(tmp / "overlay.mp4", clip.fps) as video:
            for name, frame, labels in tqdm(list(zip(clip.names, clip.frames, predictions)), desc="writing",
                                            unit="frame", leave=False):
                write_palette_png(tmp / "masks" / SEQUENCE / f"{name}.png", labels)
                video.write(render_overlay(frame, labels))
    result = evaluate_folders(out_dir / "gt", out_dir / "masks", workers=1)
    print(f"wrote {out_dir}/frames, {out_dir}/masks/{SEQUENCE} (palette PNGs), {out_dir}/overlay.mp4")
    print(f"re-score with: memvos eval {out_dir}/gt {out_dir}/masks")
    return result
