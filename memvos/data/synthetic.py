"""Synthetic clips with exact masks: textured sprites moving, rotating and occluding each other.

Used by the demo (photographs bundled with scikit-image), by the tests (generated shapes)
and later by the training pipeline. Every clip is deterministic for a given seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from memvos.data.writers import write_palette_png


@dataclass
class Sprite:
    """An RGB image with a boolean support mask, placed by an affine motion per frame."""

    rgb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) bool
    start: tuple[float, float]  # centre (x, y) in the frame at t = 0
    velocity: tuple[float, float] = (0.0, 0.0)  # pixels per frame
    spin: float = 0.0  # degrees per frame
    scale: float = 1.0
    growth: float = 0.0  # relative scale change per frame
    object_id: int = 0  # 0: an occluder, not an object
    appear_at: int = 0  # first frame where the sprite is drawn
    bounds: tuple[float, float, float, float] | None = None  # (x0, y0, x1, y1): bounce inside

    def matrix(self, t: int) -> np.ndarray:
        """2x3 affine matrix mapping sprite pixels to frame pixels at frame ``t``."""
        h, w = self.mask.shape
        cx = self.start[0] + self.velocity[0] * t
        cy = self.start[1] + self.velocity[1] * t
        if self.bounds is not None:
            x0, y0, x1, y1 = self.bounds
            cx, cy = _bounce(cx, x0, x1), _bounce(cy, y0, y1)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), self.spin * t, self.scale * (1 + self.growth * t))
        m[:, 2] += (cx - w / 2, cy - h / 2)
        return m


def _bounce(x: float, low: float, high: float) -> float:
    """Reflect ``x`` into [low, high] (a triangle wave), as a ball bouncing off walls."""
    span = high - low
    if span <= 0:
        return low
    phase = (x - low) % (2 * span)
    return low + (phase if phase <= span else 2 * span - phase)


@dataclass
class Clip:
    """Frames (H, W, 3) uint8 and label maps (H, W) uint8 of a synthetic video."""

    frames: list[np.ndarray]
    labels: list[np.ndarray]
    fps: float = 12.0
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.names:
            self.names = [f"{i:05d}" for i in range(len(self.frames))]

    def save(self, frames_dir: str | Path, masks_dir: str | Path | None = None, ext: str = ".jpg") -> None:
        """Write frames as images (JPEG quality 95 or PNG) and label maps as palette PNGs."""
        Path(frames_dir).mkdir(parents=True, exist_ok=True)
        for name, frame in zip(self.names, self.frames):
            Image.fromarray(frame).save(Path(frames_dir) / f"{name}{ext}", quality=95)
        if masks_dir is not None:
            for name, labels in zip(self.names, self.labels):
                write_palette_png(Path(masks_dir) / f"{name}.png", labels)


def render_clip(background: np.ndarray, sprites: list[Sprite], n_frames: int, pan: tuple[float, float] = (0, 0),
                size: tuple[int, int] | None = None, fps: float = 12.0) -> Clip:
    """Composite sprites over a (possibly panning) background; later sprites are in front.

    ``size`` (H, W) is the output frame; the background must be at least that large plus
    the total pan. Each label map holds the visible part of each object.
    """
    h, w = size or background.shape[:2]
    frames, labels = [], []
    for t in range(n_frames):
        x0, y0 = round(pan[0] * t), round(pan[1] * t)
        frame = background[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
        label = np.zeros((h, w), np.uint8)
        for sprite in sprites:
            if t < sprite.appear_at:
                continue
            m = sprite.matrix(t)
            alpha = cv2.warpAffine(sprite.mask.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
            rgb = cv2.warpAffine(sprite.rgb, m, (w, h), flags=cv2.INTER_LINEAR)
            frame = frame * (1 - alpha[..., None]) + rgb.astype(np.float32) * alpha[..., None]
            covered = alpha >= 0.5
            label[covered] = sprite.object_id
        frames.append(np.clip(frame + 0.5, 0, 255).astype(np.uint8))
        labels.append(label)
    return Clip(frames, labels, fps)


def smooth_texture(shape: tuple[int, int], rng: np.random.Generator, scale: float = 8.0) -> np.ndarray:
    """(H, W, 3) uint8 coloured texture: blurred noise plus stripes, with a random base colour."""
    h, w = shape
    noise = rng.random((h, w, 3)).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), scale / 4)
    noise = (noise - noise.min()) / max(float(noise.max() - noise.min()), 1e-6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    stripes = 0.5 + 0.5 * np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / (scale * 2))
    base = rng.uniform(0.15, 0.85, size=3).astype(np.float32)
    texture = 0.5 * base + 0.3 * noise + 0.2 * stripes[..., None] * rng.uniform(0.3, 1.0, size=3)
    return np.clip(texture * 255, 0, 255).astype(np.uint8)


def shape_mask(kind: str, size: int) -> np.ndarray:
    """Boolean (size, size) mask of an ellipse, rectangle, triangle or star."""
    mask = np.zeros((size, size), np.uint8)
    c = size / 2
    if kind == "ellipse":
        cv2.ellipse(mask, (int(c), int(c)), (int(size * 0.45), int(size * 0.3)), 0, 0, 360, 1, -1)
    elif kind == "rectangle":
        mask[int(size * 0.2) : int(size * 0.8), int(size * 0.1) : int(size * 0.9)] = 1
    elif kind == "triangle":
        pts = np.array([[c, size * 0.05], [size * 0.95, size * 0.9], [size * 0.05, size * 0.9]], np.int32)
        cv2.fillPoly(mask, [pts], 1)
    elif kind == "star":
        angles = np.linspace(0, 2 * math.pi, 11)[:-1] - math.pi / 2
        radii = np.where(np.arange(10) % 2 == 0, 0.47, 0.2) * size
        pts = np.stack([c + radii * np.cos(angles), c + radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1)
    else:
        raise ValueError(f"unknown shape {kind!r}")
    return mask.astype(bool)


SHAPES = ("ellipse", "rectangle", "triangle", "star")


def make_synthetic_clip(n_frames: int = 10, size: tuple[int, int] = (96, 128), n_objects: int = 2, seed: int = 0,
                        appear_at: dict[int, int] | None = None, occluder: bool = False, fps: float = 12.0) -> Clip:
    """Small clip of textured shapes (ids 1..n) moving over a texture; for tests and training.

    ``appear_at`` maps an object id to the frame where it first appears; ``occluder`` adds
    a bar (not an object) that sweeps across in front of everything.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    background = smooth_texture((h, w), rng, scale=max(h, w) / 8)
    sprites = []
    for k in range(1, n_objects + 1):
        side = int(min(h, w) * rng.uniform(0.3, 0.45))
        mask = shape_mask(SHAPES[(k - 1) % len(SHAPES)], side)
        start = (rng.uniform(side / 2, w - side / 2), rng.uniform(side / 2, h - side / 2))
        speed = min(h, w) / max(n_frames, 1) * 0.5
        sprites.append(Sprite(
            rgb=smooth_texture((side, side), rng, scale=side / 4), mask=mask, start=start,
            velocity=tuple(rng.uniform(-speed, speed, 2)), spin=float(rng.uniform(-6, 6)),
            object_id=k, appear_at=(appear_at or {}).get(k, 0),
            bounds=(side / 2, side / 2, w - side / 2, h - side / 2)))
    if occluder:
        bar_w = max(w // 8, 4)
        bar = np.ones((h * 2, bar_w), bool)
        sprites.append(Sprite(rgb=smooth_texture(bar.shape, rng), mask=bar, start=(-bar_w, h / 2),
                              velocity=((w + 2 * bar_w) / max(n_frames - 1, 1), 0.0)))
    return render_clip(background, sprites, n_frames, fps=fps)


def _skimage_photo(name: str) -> np.ndarray:
    """A photograph bundled with scikit-image (no download), as stored (RGB, RGBA or grey)."""
    import skimage

    path = Path(skimage.__file__).parent / "data" / name
    with Image.open(path) as im:
        return np.asarray(im)


def make_demo_clip(n_frames: int = 40, size: tuple[int, int] = (360, 640)) -> Clip:
    """The demo video: a horse (1) gallops past a post that occludes it, a ball (2) rolls across.

    Built from photographs that ship with scikit-image (grass, horse silhouette, Chelsea
    the cat's fur, brick), so it needs no download; masks are exact.
    """
    h, w = size
    pan = 2.0  # camera pans right: the world moves left by 2 px per frame
    grass = _skimage_photo("grass.png").astype(np.float32) / 255
    grass = cv2.resize(grass, (int(w + pan * n_frames) + 1, h), interpolation=cv2.INTER_LINEAR)
    background = np.clip(grass[..., None] * np.array([120, 200, 90]) + np.array([30, 40, 10]), 0, 255).astype(np.uint8)

    cat = _skimage_photo("chelsea.png")
    horse_rgba = _skimage_photo("horse.png")
    horse_mask = (horse_rgba[..., 3] > 0) & (horse_rgba[..., 0] < 128)
    horse_mask = cv2.resize(horse_mask.astype(np.uint8), None, fx=0.45, fy=0.45, interpolation=cv2.INTER_NEAREST) > 0
    fur = cv2.resize(cat[40:260, 20:300], horse_mask.shape[::-1], interpolation=cv2.INTER_AREA)
    horse = Sprite(rgb=fur, mask=horse_mask, start=(110, h * 0.62), velocity=(9.0, -0.6), spin=0.4, object_id=1)

    radius = 44
    face = cv2.resize(cat[60:230, 130:300], (2 * radius, 2 * radius), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0 : 2 * radius, 0 : 2 * radius]
    disc = (yy - radius + 0.5) ** 2 + (xx - radius + 0.5) ** 2 <= radius**2
    ball = Sprite(rgb=face, mask=disc, start=(w - 80, h * 0.25), velocity=(-6.5, 2.0), spin=-8.0,
                  growth=0.005, object_id=2)

    brick = _skimage_photo("brick.png").astype(np.float32) / 255
    post_rgb = np.clip(brick[: h + 40, :48, None] * np.array([150, 100, 60]) + 40, 0, 255).astype(np.uint8)
    post = Sprite(rgb=post_rgb, mask=np.ones(post_rgb.shape[:2], bool), start=(w * 0.62, h / 2),
                  velocity=(-pan, 0.0))
    return render_clip(background, [horse, ball, post], n_frames, pan=(pan, 0), size=size, fps=12.0)


def make_occlusion_clip(n_frames: int = 40, size: tuple[int, int] = (240, 427), tint: float = 0.2) -> Clip:
    """The re-identification test clip: a cat-face disc (object 1) moves right, is fully hidden
    behind a wall for about 13 frames, and comes out on the other side; while it is hidden, a
    look-alike (another crop of the same cat's fur, tinted by ``tint``) walks in on the left
    and stays. Online memory networks tend to lose the object or jump to the look-alike.
    """
    h, w = size
    gravel = _skimage_photo("gravel.png").astype(np.float32) / 255
    gravel = cv2.resize(gravel, (w, h), interpolation=cv2.INTER_LINEAR)
    background = np.clip(gravel[..., None] * np.array([110, 150, 120]) + np.array([40, 50, 40]), 0, 255)
    cat = _skimage_photo("chelsea.png")
    radius = int(0.075 * w)
    yy, xx = np.mgrid[0 : 2 * radius, 0 : 2 * radius]
    disc = (yy - radius + 0.5) ** 2 + (xx - radius + 0.5) ** 2 <= radius**2
    face = cv2.resize(cat[60:230, 130:300], (2 * radius, 2 * radius), interpolation=cv2.INTER_AREA)
    twin = cv2.resize(cat[100:270, 0:170], (2 * radius, 2 * radius), interpolation=cv2.INTER_AREA)
    twin = np.clip(twin.astype(np.float32) * (1 - tint) + tint * np.array([90, 120, 200]), 0, 255).astype(np.uint8)
    x0, x1 = 0.14 * w, 0.86 * w
    speed = (x1 - x0) / max(n_frames - 1, 1)
    target = Sprite(rgb=face, mask=disc, start=(x0, h * 0.55), velocity=(speed, 0.0), spin=-0.5, object_id=1)
    wall_w = int(0.4 * w)
    hidden_from = int(np.ceil((w / 2 - wall_w / 2 + radius - x0) / speed))
    twin_sprite = Sprite(rgb=twin, mask=disc, start=(-radius, h * 0.4), velocity=(speed * 0.2, 0.3),
                         spin=2.0, appear_at=hidden_from)
    twin_sprite.start = (0.16 * w - twin_sprite.velocity[0] * hidden_from, h * 0.35)
    brick = _skimage_photo("brick.png").astype(np.float32) / 255
    wall_rgb = cv2.resize(brick, (wall_w, h), interpolation=cv2.INTER_LINEAR)
    wall_rgb = np.clip(wall_rgb[..., None] * np.array([160, 90, 60]) + 30, 0, 255).astype(np.uint8)
    wall = Sprite(rgb=wall_rgb, mask=np.ones((h, wall_w), bool), start=(w / 2, h / 2))
    return render_clip(background.astype(np.uint8), [twin_sprite, target, wall], n_frames, fps=12.0)
