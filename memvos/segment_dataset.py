"""Dataset mode of `memvos segment`: every sequence of a DAVIS or YouTube-VOS folder, with the
model loaded once, written as ``OUT/<sequence>/<frame>.png``.

Each object is given by the annotation of the frame where it first appears (DAVIS: the first
frame; YouTube-VOS: objects may start later), as the benchmarks' semi-supervised protocol does.
A sequence that fails (a corrupt frame, a bad mask) is reported and skipped; the others go on.
A sequence whose folder already holds a mask for every frame is skipped unless ``overwrite``.
Each sequence is written to a temporary folder and renamed, so a folder that exists is complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from memvos.config import MemvosConfig
from memvos.data.atomic import atomic_dir, check_output
from memvos.data.datasets import DavisDataset, VideoSequence, YouTubeVOSDataset
from memvos.data.masks import object_ids
from memvos.errors import InputError
from memvos.inference.core import InferenceCore
from memvos.segment import Annotation, propagate_to_files

log = logging.getLogger(__name__)


class FirstAppearances:
    """``given(t)`` for a dataset sequence: the objects of frame t's annotation not seen on an
    earlier annotated frame, with the others' pixels cleared (they keep being tracked).

    Called in frame order (on the read-ahead thread); remembers the ids it has handed out.
    """

    def __init__(self, sequence: VideoSequence) -> None:
        self.sequence = sequence
        self.seen: set[int] = set()

    def __call__(self, t: int) -> Annotation | None:
        name = self.sequence.frames.names[t]
        if name not in self.sequence.annotations:
            return None
        labels = self.sequence.read_annotation(name)
        new = tuple(i for i in object_ids(labels) if i not in self.seen)
        if not new:
            return None
        self.seen.update(new)
        keep = np.isin(labels, new) | (labels == 255)  # 255: "unknown" pixels stay unknown
        return np.where(keep, labels, 0).astype(np.uint8), new


@dataclass
class SequenceResult:
    """What happened to one sequence: done, skipped (already complete) or failed (with why)."""

    name: str
    status: str  # "done" | "skipped" | "failed"
    frames: int = 0
    seconds: float = 0.0
    reason: str = ""


@dataclass
class DatasetReport:
    """Per-sequence results of one process (or of all, merged) and the wall time they took."""

    results: list[SequenceResult] = field(default_factory=list)
    seconds: float = 0.0
    processes: int = 1

    def of(self, status: str) -> list[SequenceResult]:
        return [r for r in self.results if r.status == status]

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.of("done"))

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def merge(cls, reports: list[DatasetReport]) -> DatasetReport:
        """One report over several processes that ran side by side (wall time: the longest)."""
        results = sorted((r for rep in reports for r in rep.results), key=lambda r: r.name)
        return cls(results, max((rep.seconds for rep in reports), default=0.0), len(reports))

    def summary(self) -> str:
        done, skipped, failed = self.of("done"), self.of("skipped"), self.of("failed")
        line = (f"segmented {len(done)} sequences ({self.frames} frames) in {self.seconds:.1f} s, "
                f"{self.fps:.2f} frames/s end to end")
        if self.processes > 1:
            line += f" over {self.processes} processes"
        if skipped:
            line += f"; {len(skipped)} already complete, skipped"
        if failed:
            line += f"; {len(failed)} failed: " + ", ".join(r.name for r in failed)
        return line


def is_complete(folder: Path, names: list[str]) -> bool:
    """Whether ``folder`` holds a mask for every frame name."""
    return folder.is_dir() and all((folder / f"{name}.png").is_file() for name in names)


def segment_sequence(sequence: VideoSequence, out_dir: Path, models: list, config: MemvosConfig,
                     on_frame: Callable[[], None] | None = None) -> None:
    """Segment one dataset sequence into ``out_dir/<name>/`` (replaced as a whole on success)."""
    if not sequence.annotations:
        raise InputError(sequence.frames.path, "no annotation for this sequence (Annotations/<sequence>/ is empty)")
    unmatched = set(sequence.annotations) - set(sequence.frames.names)
    if unmatched:
        log.warning("%s: %d annotation(s) named like no frame, ignored (e.g. %s.png)", sequence.name,
                    len(unmatched), min(unmatched))
    target = out_dir / sequence.name
    check_output(target, "folder", overwrite=True)  # also removes partial outputs of killed runs
    given = FirstAppearances(sequence)
    core = InferenceCore(models, config.inference)
    with atomic_dir(target, replace=True) as tmp:
        propagate_to_files(sequence.frames, given, core, tmp, on_frame=on_frame)
        if not given.seen:
            first = next(iter(sequence.annotations.values()))
            raise InputError(first.parent, "no object in any annotation of this sequence")


def open_sequences(dataset: DavisDataset | YouTubeVOSDataset, names: list[str]
                   ) -> tuple[list[VideoSequence], list[SequenceResult]]:
    """The sequences that open (frames listed, all of one size) and a failed result for each other."""
    opened, failed = [], []
    for name in names:
        try:
            opened.append(dataset[name])
        except InputError as err:
            log.error("%s: failed, skipped: %s", name, err)
            failed.append(SequenceResult(name, "failed", reason=str(err)))
    return opened, failed


def segment_dataset(sequences: list[VideoSequence], out_dir: str | Path, models: list, config: MemvosConfig,
                    overwrite: bool = False, progress: bool = True, start: float | None = None) -> DatasetReport:
    """Segment ``sequences`` into ``out_dir``, one after the other with the same loaded model.

    ``start``: when the run began (``time.perf_counter``), so the rate counts model loading too.
    """
    out_dir = Path(out_dir)
    start = time.perf_counter() if start is None else start
    report = DatasetReport()
    todo = []
    for seq in sequences:
        if not overwrite and is_complete(out_dir / seq.name, list(seq.frames.names)):
            report.results.append(SequenceResult(seq.name, "skipped", len(seq.frames)))
        else:
            todo.append(seq)
    total = sum(len(seq.frames) for seq in todo)
    with tqdm(total=total, unit="frame", desc="segmenting", disable=not progress or not todo) as bar:
        for seq in todo:
            bar.set_postfix_str(seq.name)
            report.results.append(_run_one(seq, out_dir, models, config, bar))
    report.seconds = time.perf_counter() - start
    return report


def _run_one(seq: VideoSequence, out_dir: Path, models: list, config: MemvosConfig, bar: tqdm) -> SequenceResult:
    """One sequence, its failure caught and reported (the bar still advances by its frames)."""
    seq_start, before = time.perf_counter(), bar.n
    try:
        segment_sequence(seq, out_dir, models, config, on_frame=lambda: bar.update(1))
    except Exception as err:  # one bad sequence must not stop the others
        reason = str(err) if isinstance(err, InputError) else f"{type(err).__name__}: {err}"
        log.error("%s: failed, skipped: %s", seq.name, reason)
        log.debug("%s", seq.name, exc_info=True)
        bar.update(len(seq.frames) - (bar.n - before))
        return SequenceResult(seq.name, "failed", 0, time.perf_counter() - seq_start, reason)
    return SequenceResult(seq.name, "done", len(seq.frames), time.perf_counter() - seq_start)


def pick_sequences(available: list[str], wanted: list[str] | None, root: Path) -> list[str]:
    """``wanted`` (in the dataset's order), or all; an unknown name is a one-line error."""
    if not wanted:
        return list(available)
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise InputError(root, f"no sequence named {', '.join(unknown)} (it has {len(available)}, "
                               f"e.g. {', '.join(available[:3])})")
    chosen = set(wanted)
    return [name for name in available if name in chosen]


def run_dataset(root: str | Path, out_dir: str | Path, load: Callable[[str, tuple[int, int]], tuple[list, MemvosConfig]],
                device: str = "cpu", split: str | None = None, sequences: list[str] | None = None,
                shard: tuple[int, int] = (0, 1), overwrite: bool = False, threads: int | None = None,
                progress: bool = True) -> tuple[DatasetReport, DatasetReport | None]:
    """Dataset mode as one process of many: this process's share of the sequences (``shard``,
    then split across ``torchrun`` ranks), segmented with ``load(device, frame_size)``'s model.

    Returns (this process's report, the merged report on rank 0 or None elsewhere).
    """
    import torch

    from memvos.data.datasets import open_dataset
    from memvos.distributed import Launch, assign, gather, part_index, process_group, rank_device, rank_threads

    start = time.perf_counter()
    launch = Launch.from_env()
    root, out_dir = Path(root), Path(out_dir)
    check_output(out_dir, "folder", overwrite=True, inputs=(root,))
    dataset = open_dataset(root, split=split)
    names = pick_sequences(list(dataset.sequences), sequences, root)
    opened, failed = open_sequences(dataset, names)
    frames = {name: 0 for name in names} | {seq.name: len(seq.frames) for seq in opened}
    index, count = part_index(shard, launch)
    mine = set(assign(frames, count)[index])
    if threads or launch.local_world_size > 1:
        torch.set_num_threads(threads or rank_threads(launch))
    with process_group(launch):
        report = DatasetReport([r for r in failed if r.name in mine])
        ours = [seq for seq in opened if seq.name in mine]
        if ours:
            models, config = load(rank_device(device, launch), ours[0].frames.size)
            ran = segment_dataset(ours, out_dir, models, config, overwrite=overwrite,
                                  progress=progress and launch.rank == 0, start=start)
            report.results = sorted(report.results + ran.results, key=lambda r: r.name)
        report.seconds = time.perf_counter() - start
        reports = gather(report, launch)
    merged = DatasetReport.merge(reports) if reports is not None else None
    return report, merged
