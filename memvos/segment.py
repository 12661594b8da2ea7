"""`memvos segment`: masks for every frame of a video from masks given on some frames."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch import nn
from tqdm import tqdm

from memvos.config import MemvosConfig
from memvos.data.atomic import atomic_dir, check_output
from memvos.data.frames import FrameSource, list_images, open_frames
from memvos.data.masks import MAX_SIZE_MISMATCH, fit_mask_to_frame, read_mask, read_mask_info
from memvos.data.pipeline import BackgroundWriter, prefetch
from memvos.data.video import VideoWriter
from memvos.data.writers import render_overlay, write_palette_png
from memvos.errors import InputError
from memvos.inference.core import InferenceCore
from memvos.model.factory import load_model

log = logging.getLogger(__name__)

Annotation = tuple[np.ndarray, "tuple[int, ...] | None"]  # (H, W) labels, the ids they annotate (None: all shown)
READ_AHEAD = 4  # frames decoded ahead of the network
WRITE_AHEAD = 8  # results waiting to be written


def masks_from_folder(folder: str | Path, frames: FrameSource) -> dict[int, Path]:
    """Frame index -> mask file, for every mask in ``folder`` named like a frame (DAVIS / YouTube-VOS)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "mask folder not found")
    index = {name: i for i, name in enumerate(frames.names)}
    masks, unmatched = {}, []
    for path in list_images(folder):
        if path.stem in index:
            masks[index[path.stem]] = path
        else:
            unmatched.append(path.name)
    if unmatched:
        log.warning("%s: %d mask(s) named like no frame, ignored (e.g. %s)", folder, len(unmatched), unmatched[0])
    if not masks:
        raise InputError(folder, f"no mask named like a frame (frames are named {frames.names[0]}...)")
    return dict(sorted(masks.items()))


def check_masks(masks: dict[int, Path], frames: FrameSource) -> None:
    """Fail before writing anything: every mask readable and of the frame size (within 1%)."""
    h, w = frames.size
    for index, path in masks.items():
        if not 0 <= index < len(frames):
            raise InputError(path, f"mask frame {index} is outside the video (0..{len(frames) - 1})")
        try:
            with Image.open(path) as im:
                mw, mh = im.size
        except FileNotFoundError:
            raise InputError(path, "mask file not found") from None
        except (UnidentifiedImageError, OSError) as err:
            raise InputError(path, f"unreadable or corrupt mask image ({err})") from None
        if abs(mh - h) > MAX_SIZE_MISMATCH * h or abs(mw - w) > MAX_SIZE_MISMATCH * w:
            raise InputError(path, f"mask is {mw}x{mh} but the frames are {w}x{h}")
    first = min(masks)
    read_mask_info(masks[first], require_object=True)


def check_segment_outputs(source: str | Path, out_dir: str | Path, overlay: str | Path | None = None,
                          overwrite: bool = False) -> None:
    """Before any frame is processed: the mask folder and the overlay file can be written, are
    not the input, and the folder is empty unless ``overwrite`` (then it is replaced)."""
    check_output(out_dir, "folder", overwrite=overwrite, inputs=(source,))
    if overlay is not None:
        check_output(overlay, "file", inputs=(source,))
        if Path(overlay).resolve().is_relative_to(Path(out_dir).resolve()):
            raise InputError(overlay, "is inside the mask folder --out; write it elsewhere")


def segment_video(source: str | Path | FrameSource, masks: dict[int, Path], out_dir: str | Path,
                  overlay: str | Path | None = None, models: list | None = None,
                  config: MemvosConfig | None = None, progress: bool = True, offline: bool = False,
                  overwrite: bool = False) -> dict[str, float]:
    """Segment every frame of ``source`` (a path or an opened frame source); write palette PNGs to
    ``out_dir`` (and an overlay mp4). Returns timing figures. Nothing is written if anything fails.
    ``offline``: re-identified starting points and bidirectional propagation (memvos.inference.offline).
    ``out_dir`` must be empty or absent unless ``overwrite``, which replaces it as a whole.
    """
    frames = source if isinstance(source, FrameSource) else open_frames(source)
    check_segment_outputs(frames.path, out_dir, overlay, overwrite)
    check_masks(masks, frames)
    if models is None:
        model, config = load_model(None, frame_size=frames.size)
        models = [model]
    assert config is not None
    fps = frames.fps or 24.0
    start = time.perf_counter()
    if offline:
        return _segment_offline(frames, masks, out_dir, overlay, models, config, progress, start, overwrite)
    core = InferenceCore(models, config.inference)

    def given_mask(t: int) -> Annotation | None:
        return (fit_mask_to_frame(read_mask(masks[t]), frames.size, masks[t]), None) if t in masks else None

    with atomic_dir(out_dir, replace=overwrite) as tmp, contextlib.ExitStack() as stack:
        video = stack.enter_context(VideoWriter(overlay, fps)) if overlay else None  # finished first
        with tqdm(total=len(frames), unit="frame", desc="segmenting", disable=not progress) as bar:
            propagate_to_files(frames, given_mask, core, tmp, video, on_frame=lambda: bar.update(1))
    seconds = time.perf_counter() - start
    return {"frames": len(frames), "seconds": seconds, "fps": len(frames) / seconds}


def propagate_to_files(frames: FrameSource, given: Callable[[int], Annotation | None], core: InferenceCore,
                       out_dir: Path, video: VideoWriter | None = None,
                       on_frame: Callable[[], None] | None = None) -> None:
    """Segment every frame of ``frames`` with ``core`` and write ``out_dir/<frame>.png`` (and the
    overlay to ``video``). ``given(t)``: frame t's annotation, as (label map, the ids it annotates
    or None for all it shows), or None. Frames and annotations are read ahead on one thread,
    results written behind on another (memvos.data.pipeline)."""
    def read_ahead():
        for t, frame in enumerate(frames):
            yield t, frame, given(t)

    with BackgroundWriter(depth=WRITE_AHEAD) as writer:
        for t, frame, annotation in prefetch(read_ahead(), depth=READ_AHEAD):
            mask, ids = annotation if annotation is not None else (None, None)
            labels = core.labels(core.step(frame, mask, object_ids=ids))
            writer.submit(write_palette_png, out_dir / f"{frames.names[t]}.png", labels)
            if video is not None:
                writer.submit(_write_overlay, video, frame, labels)
            if on_frame is not None:
                on_frame()


def _write_overlay(video: VideoWriter, frame: np.ndarray, labels: np.ndarray) -> None:
    video.write(render_overlay(frame, labels))


def _segment_offline(frames: FrameSource, masks: dict[int, Path], out_dir, overlay, models, config: MemvosConfig,
                     progress: bool, start: float, overwrite: bool = False) -> dict[str, float]:
    """The offline mode: all frames are segmented first (several passes), then written."""
    from memvos.inference.offline import segment_offline

    given = {t: fit_mask_to_frame(read_mask(path), frames.size, path) for t, path in masks.items()}
    with tqdm(unit="frame", desc="segmenting (offline: forward, then backward passes)", disable=not progress) as bar:
        labels, report = segment_offline(frames, given, models, config.inference, progress=bar.update)
    for obj, points in report.starts.items():
        log.info("object %d: starting points %s", obj, points)
    with atomic_dir(out_dir, replace=overwrite) as tmp, contextlib.ExitStack() as stack:
        video = stack.enter_context(VideoWriter(overlay, frames.fps or 24.0)) if overlay else None
        for t, frame in enumerate(frames):
            write_palette_png(tmp / f"{frames.names[t]}.png", labels[t])
            if video is not None:
                video.write(render_overlay(frame, labels[t]))
    seconds = time.perf_counter() - start
    return {"frames": len(frames), "seconds": seconds, "fps": len(frames) / seconds,
            "backward_frames": report.backward_frames}


def segment_frames(frames: Sequence[np.ndarray] | FrameSource, masks: dict[int, np.ndarray],
                   model: tuple[nn.Module, MemvosConfig] | None = None, device: str = "cpu") -> np.ndarray:
    """Segment in-memory frames from masks given on some of them.

    frames: (H, W, 3) uint8 RGB each (a list, an array or an opened ``FrameSource``); masks:
    frame index -> (H, W) label map (0 background, ids kept as given; new ids on later frames start
    new objects); model: what ``load_model`` returned (default: the model ``memvos segment`` picks
    for this frame size). -> (T, H, W) uint8 label maps."""
    if len(frames) == 0:
        raise InputError(None, "no frames to segment")
    if not masks:
        raise InputError(None, "no masks: give at least one frame's mask")
    size = tuple(frames[0].shape[:2])
    for t, mask in masks.items():
        if not 0 <= t < len(frames):
            raise InputError(None, f"mask for frame {t}, but there are {len(frames)} frames")
        if tuple(np.shape(mask)) != size:
            raise InputError(None, f"mask for frame {t} is {np.shape(mask)}, the frames are {size}")
    net, config = model or load_model(None, device=device, frame_size=size)
    core = InferenceCore(net, config.inference)
    out = np.zeros((len(frames), *size), np.uint8)
    for t in range(len(frames)):
        mask = masks.get(t)
        out[t] = core.labels(core.step(frames[t], None if mask is None else np.asarray(mask, np.uint8)))
    return out
