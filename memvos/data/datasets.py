"""Dataset layouts: DAVIS (2016/2017) and YouTube-VOS, read lazily sequence by sequence."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from natsort import natsorted

from memvos.data.frames import IMAGE_SUFFIXES, FolderFrames
from memvos.data.masks import fit_mask_to_frame, object_ids, read_mask
from memvos.errors import InputError


@dataclass
class VideoSequence:
    """One video of a dataset: lazy frames and the annotation files that exist for it."""

    name: str
    frames: FolderFrames
    annotations: dict[str, Path]  # frame name -> mask file (all frames in DAVIS, first appearances in YouTube-VOS)
    object_frames: dict[int, list[str]] = field(default_factory=dict)  # declared by meta.json, if any

    def read_annotation(self, frame_name: str) -> np.ndarray:
        """Label map of an annotated frame, fitted to the frame size (<= 1% mismatch tolerated)."""
        path = self.annotations[frame_name]
        return fit_mask_to_frame(read_mask(path), self.frames.size, path)

    def first_appearances(self) -> dict[int, str]:
        """Object id -> name of the first frame whose annotation shows it."""
        if self.object_frames:
            return {obj: frames[0] for obj, frames in sorted(self.object_frames.items()) if frames}
        first: dict[int, str] = {}
        for name in self.frames.names:
            if name in self.annotations:
                for obj in object_ids(read_mask(self.annotations[name])):
                    first.setdefault(obj, name)
        return first


def _mask_files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in natsorted(folder.glob("*.png"), key=lambda p: p.name)}


class _Dataset:
    """Sequences by name; subclasses set ``sequences``, ``image_dir``, ``mask_dir``."""

    sequences: list[str]
    image_dir: Path
    mask_dir: Path

    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self) -> Iterator[VideoSequence]:
        for name in self.sequences:
            yield self[name]

    def __getitem__(self, name: str) -> VideoSequence:
        if name not in self.sequences:
            raise KeyError(name)
        return VideoSequence(name, FolderFrames(self.image_dir / name), _mask_files(self.mask_dir / name),
                             self._object_frames(name))

    def _object_frames(self, name: str) -> dict[int, list[str]]:
        return {}


class DavisDataset(_Dataset):
    """``ROOT/JPEGImages/<res>/<seq>/*.jpg``, ``ROOT/Annotations/<res>/<seq>/*.png`` and
    ``ROOT/ImageSets/<year>/<split>.txt`` (or ``ROOT/ImageSets/<split>.txt``).

    Without a split, every sequence folder is used. Without a resolution, ``480p`` if it exists,
    else the only resolution folder there is (``240p`` for 432x240 clips).
    """

    def __init__(self, root: str | Path, split: str | None = None, year: str | None = None,
                 resolution: str | None = None) -> None:
        self.root = Path(root)
        resolution = resolution or _resolution_folder(self.root)
        self.image_dir = self.root / "JPEGImages" / resolution
        self.mask_dir = self.root / "Annotations" / resolution
        if not self.root.is_dir():
            raise InputError(self.root, "DAVIS root folder not found")
        if not self.image_dir.is_dir():
            raise InputError(self.image_dir, "missing: not a DAVIS layout (JPEGImages/<resolution>/<sequence>/)")
        if split is None:
            self.sequences = natsorted(d.name for d in self.image_dir.iterdir() if d.is_dir())
        else:
            self.sequences = self._read_split(split, year)
        if not self.sequences:
            raise InputError(self.image_dir, "no sequences")

    def _read_split(self, split: str, year: str | None) -> list[str]:
        candidates = [self.root / "ImageSets" / year / f"{split}.txt"] if year else [
            self.root / "ImageSets" / f"{split}.txt", *sorted((self.root / "ImageSets").glob(f"*/{split}.txt"))]
        for path in candidates:
            if path.is_file():
                names = path.read_text().split()
                for name in names:
                    if not (self.image_dir / name).is_dir():
                        raise InputError(path, f"lists sequence {name!r}, which has no folder in {self.image_dir}")
                return names
        raise InputError(self.root / "ImageSets", f"no split file {split}.txt")


def _resolution_folder(root: Path) -> str:
    """``480p`` when ``root/JPEGImages/480p`` exists, else the single folder under ``JPEGImages``."""
    images = root / "JPEGImages"
    folders = sorted(d.name for d in images.iterdir() if d.is_dir()) if images.is_dir() else []
    if "480p" in folders or len(folders) != 1:
        return "480p"
    return folders[0]


class YouTubeVOSDataset(_Dataset):
    """``ROOT/<split>/JPEGImages/<vid>/*.jpg``, ``ROOT/<split>/Annotations/<vid>/*.png`` and
    ``ROOT/<split>/meta.json`` listing each object's frames; masks exist only where an
    object first appears (validation) or on sampled frames (train)."""

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.root = Path(root) / split
        self.image_dir = self.root / "JPEGImages"
        self.mask_dir = self.root / "Annotations"
        if not self.image_dir.is_dir():
            raise InputError(self.image_dir, "missing: not a YouTube-VOS layout (<split>/JPEGImages/<video>/)")
        meta_path = self.root / "meta.json"
        self.meta: dict = {}
        if meta_path.is_file():
            try:
                self.meta = json.loads(meta_path.read_text()).get("videos", {})
            except (json.JSONDecodeError, AttributeError) as err:
                raise InputError(meta_path, f"not a valid meta.json ({err})") from None
        self.sequences = natsorted(d.name for d in self.image_dir.iterdir() if d.is_dir())
        if not self.sequences:
            raise InputError(self.image_dir, "no videos")

    def _object_frames(self, name: str) -> dict[int, list[str]]:
        objects = self.meta.get(name, {}).get("objects", {})
        return {int(k): natsorted(v.get("frames", [])) for k, v in objects.items()}


def _is_youtube_split(root: Path) -> bool:
    """``root/JPEGImages/<video>/`` holds images itself (DAVIS has a resolution folder between)."""
    images = root / "JPEGImages"
    if not images.is_dir() or not (root / "Annotations").is_dir():
        return False
    first = next((d for d in sorted(images.iterdir()) if d.is_dir()), None)
    return first is not None and any(p.suffix.lower() in IMAGE_SUFFIXES for p in first.iterdir())


def open_dataset(root: str | Path, split: str | None = None) -> DavisDataset | YouTubeVOSDataset:
    """Recognise the layout of ``root``: DAVIS (``JPEGImages/<res>/<seq>``), YouTube-VOS
    (``<split>/JPEGImages/<video>``) or one YouTube-VOS split folder (``JPEGImages/<video>``)."""
    root = Path(root)
    if _is_youtube_split(root):  # ROOT is itself a split folder (valid/, train/)
        return YouTubeVOSDataset(root.parent, root.name)
    if (root / "JPEGImages" / _resolution_folder(root)).is_dir():
        return DavisDataset(root, split=split)
    if split and (root / split / "JPEGImages").is_dir():
        return YouTubeVOSDataset(root, split)
    for candidate in ("train", "valid", "val", "test"):
        if (root / candidate / "JPEGImages").is_dir():
            return YouTubeVOSDataset(root, candidate)
    raise InputError(root, "not a DAVIS or YouTube-VOS dataset folder")
