"""`segment_video` (frames read ahead, masks written behind) gives exactly the engine's loop."""

from __future__ import annotations

import numpy as np
import torch

from memvos.data.frames import FolderFrames
from memvos.data.masks import read_mask
from memvos.data.synthetic import make_synthetic_clip
from memvos.data.video import VideoFrames
from memvos.data.writers import write_palette_png
from memvos.segment import segment_frames, segment_video


def test_pipelined_segment_video_equals_the_plain_loop(tmp_path):
    clip = make_synthetic_clip(n_frames=12, size=(64, 96), n_objects=2, seed=4, appear_at={2: 5})
    clip.save(tmp_path / "frames")
    write_palette_png(tmp_path / "m0.png", clip.labels[0])
    late = np.where(clip.labels[5] == 2, 2, 0).astype(np.uint8)
    write_palette_png(tmp_path / "m5.png", late)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        stats = segment_video(tmp_path / "frames", {0: tmp_path / "m0.png", 5: tmp_path / "m5.png"}, tmp_path / "out",
                              overlay=tmp_path / "overlay.mp4", progress=False)
        expected = segment_frames(FolderFrames(tmp_path / "frames"), {0: clip.labels[0], 5: late})
    finally:
        torch.set_num_threads(threads)
    got = np.stack([read_mask(tmp_path / "out" / f"{name}.png") for name in clip.names])
    np.testing.assert_array_equal(got, expected)
    assert stats["frames"] == 12 and len(VideoFrames(tmp_path / "overlay.mp4")) == 12
