"""User strokes: synthesised from masks (to train the interactive model), clicks as disks, and
GrabCut's guess of an object from strokes (used alike in training and by the interactive engine)."""

from __future__ import annotations

import math

import cv2
import numpy as np
from skimage.draw import ellipse, line
from skimage.graph import MCP_Geometric
from skimage.measure import label, regionprops
from skimage.morphology import disk, skeletonize

_ERODE_FRACTION = 0.1  # skeleton of the region eroded by this * sqrt(area): strokes keep off the boundary
_SUBPATH_P = 0.5  # probability that a skeleton stroke keeps only a random connected part of the skeleton
_RANDOM_WALK_P = (0.3, 0.2)  # corrective strokes: random walk instead of / in addition to the skeleton
_FIRST_ROUND_WALK_P = 0.3  # first round: random walk added to the skeleton strokes
_MISSED_P = 0.05  # corrupt_mask: the object is missed entirely


def stroke_width_for(shape: tuple[int, int]) -> int:
    """Stroke radius in pixels for a frame of this size (3 px at 480p), so strokes scale with resolution."""
    return max(1, round(min(shape[0], shape[1]) / 160))


def _as_mask(a: np.ndarray, name: str = "mask") -> np.ndarray:
    """Validate a 2-D map and return it as bool, so callers may pass uint8 or float masks."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {a.shape}")
    return a.astype(bool)


def _thicken(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilate a bool map by a disk of `radius`, turning a 1-px path into a stroke."""
    if radius <= 0:
        return mask.copy()
    return cv2.dilate(mask.astype(np.uint8), disk(radius).astype(np.uint8)).astype(bool)


def _depth(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each region pixel to the nearest outside pixel (the frame edge counts as outside)."""
    padded = np.pad(region, 1).astype(np.uint8)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def _endpoints(skeleton: np.ndarray) -> np.ndarray:
    """(N, 2) row/col of skeleton pixels with exactly one 8-neighbour, where a pen stroke would start."""
    neighbours = cv2.filter2D(skeleton.astype(np.uint8), -1, np.ones((3, 3), np.float32),
                              borderType=cv2.BORDER_CONSTANT)
    return np.argwhere(skeleton & (neighbours == 2))


def _random_subpath(skeleton: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Keep a random 50-100% of the skeleton, the pixels geodesically nearest a random end, so strokes vary."""
    ends = _endpoints(skeleton)
    if len(ends) == 0:
        ends = np.argwhere(skeleton)
    start = tuple(int(v) for v in ends[rng.integers(len(ends))])
    costs = np.where(skeleton, 1.0, np.inf)
    along, _ = MCP_Geometric(costs, fully_connected=True).find_costs([start])
    reachable = np.sort(along[np.isfinite(along)])
    keep = reachable[max(0, math.ceil(rng.uniform(0.5, 1.0) * len(reachable)) - 1)]
    return skeleton & (along <= keep)


def _component_stroke(component: np.ndarray, rng: np.random.Generator, radius: int) -> np.ndarray:
    """Stroke along the skeleton of one connected component, eroded first so it stays off the boundary."""
    depth = _depth(component)
    margin = min(_ERODE_FRACTION * math.sqrt(component.sum()), 0.5 * float(depth.max()))
    skeleton = skeletonize(depth > margin)
    if rng.random() < _SUBPATH_P:
        skeleton = _random_subpath(skeleton, rng)
    return _thicken(skeleton, radius) & component


def skeleton_strokes(region: np.ndarray, rng: np.random.Generator, radius: int | None = None,
                     max_components: int = 2, min_area: int = 16) -> np.ndarray:
    """Skeleton strokes inside the largest components of a region, the way a person scribbles on an object."""
    region = _as_mask(region, "region")
    radius = stroke_width_for(region.shape) if radius is None else radius
    out = np.zeros_like(region)
    if region.sum() < min_area or max_components < 1:
        return out
    props = sorted(regionprops(label(region, connectivity=2)), key=lambda p: (-p.area, p.label))
    for prop in [p for p in props if p.area >= min_area][:max_components]:
        r0, c0, r1, c1 = prop.bbox
        out[r0:r1, c0:c1] |= _component_stroke(prop.image, rng, radius)
    return out & region


def _deep_point(depth: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A random region pixel drawn with probability ~ depth^2, so walks start well inside the object."""
    weights = depth.ravel().astype(np.float64) ** 2
    index = rng.choice(weights.size, p=weights / weights.sum())
    row, col = np.unravel_index(index, depth.shape)
    return int(row), int(col)


def random_walk_stroke(region: np.ndarray, rng: np.random.Generator, length: int | None = None,
                       radius: int | None = None) -> np.ndarray:
    """A smooth random-walk stroke from a deep point, stopping at the region's edge: a less tidy scribble."""
    region = _as_mask(region, "region")
    radius = stroke_width_for(region.shape) if radius is None else radius
    path = np.zeros_like(region)
    area = int(region.sum())
    if area == 0:
        return path
    step = max(1, radius)
    steps = length if length is not None else max(2, round(0.75 * math.sqrt(area) / step))
    depth = _depth(region)
    inside = depth >= min(radius, 0.5 * float(depth.max()))  # keep the pen a stroke's width off the edge
    y, x = _deep_point(depth, rng)
    path[y, x] = True
    fy, fx, angle, turn = float(y), float(x), rng.uniform(0, 2 * math.pi), 0.0
    h, w, wobble = *region.shape, min(0.3, 2.0 / max(1, steps))
    for _ in range(steps):
        turn = 0.8 * turn + rng.normal(0.0, wobble)  # momentum on the turning rate: the direction changes smoothly
        angle += turn
        fy, fx = fy + step * math.sin(angle), fx + step * math.cos(angle)
        ny, nx = round(fy), round(fx)
        rows, cols = line(y, x, ny, nx)
        if rows.min() < 0 or cols.min() < 0 or rows.max() >= h or cols.max() >= w or not inside[rows, cols].all():
            break
        path[rows, cols] = True
        y, x = ny, nx
    return _thicken(path, radius) & region


def click_disks(points, shape: tuple[int, int], radius: int | None = None) -> np.ndarray:
    """Union of small disks at (x, y) clicks, turning user clicks into stroke maps the model understands."""
    h, w = int(shape[0]), int(shape[1])
    radius = 2 * stroke_width_for((h, w)) if radius is None else radius
    centres = np.zeros((h, w), np.uint8)
    for point in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        x, y = round(point[0]), round(point[1])
        if not (0 <= x < w and 0 <= y < h):
            raise ValueError(f"click (x={point[0]:g}, y={point[1]:g}) lies outside the {w}x{h} (width x height) frame")
        centres[y, x] = 1
    return _thicken(centres.astype(bool), radius)


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate a mask by (dy, dx), filling with False: a misaligned prediction."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0),
                                                                     max(-dx, 0):w - max(dx, 0)]
    return out


def _blob(shape: tuple[int, int], centre: tuple[float, float], size: float, rng: np.random.Generator,
          scale: tuple[float, float]) -> np.ndarray:
    """A randomly sized and rotated filled ellipse at centre (row, col), semi-axes in scale * size."""
    out = np.zeros(shape, bool)
    ry, rx = (max(1.0, rng.uniform(*scale) * size) for _ in range(2))
    rows, cols = ellipse(centre[0], centre[1], ry, rx, shape=shape, rotation=rng.uniform(0, math.pi))
    out[rows, cols] = True
    return out


def corrupt_mask(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible wrong prediction of an object mask, as the prior of a training correction round."""
    mask = _as_mask(mask)
    area = int(mask.sum())
    if area == 0 or rng.random() < _MISSED_P:
        return np.zeros_like(mask)
    size, pixels = math.sqrt(area), np.argwhere(mask)
    ops = rng.random(4) < (0.6, 0.3, 0.4, 0.3)
    if not ops.any():
        ops[rng.integers(4)] = True
    out = mask.copy()
    if ops[0]:  # erode or dilate
        kernel = disk(int(rng.integers(1, max(1, round(0.05 * size)) + 1))).astype(np.uint8)
        morph = cv2.erode if rng.random() < 0.5 else cv2.dilate
        out = morph(out.astype(np.uint8), kernel).astype(bool)
    if ops[1]:  # small shift
        reach = max(1, round(0.05 * size))
        out = _shift(out, *(int(v) for v in rng.integers(-reach, reach + 1, 2)))
    if ops[2]:  # remove a blob centred on the object
        out &= ~_blob(mask.shape, tuple(pixels[rng.integers(len(pixels))]), size, rng, (0.1, 0.35))
    if ops[3]:  # add a blob near the object
        angle, dist = rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 0.7) * size
        row, col = pixels[rng.integers(len(pixels))]
        centre = (row + dist * math.sin(angle), col + dist * math.cos(angle))
        out |= _blob(mask.shape, centre, size, rng, (0.1, 0.3))
    return out


def _error_strokes(error: np.ndarray, rng: np.random.Generator, radius: int) -> np.ndarray:
    """Strokes on an error region: skeleton of its largest parts, sometimes a random walk instead or as well."""
    error = cv2.morphologyEx(error.astype(np.uint8), cv2.MORPH_OPEN, disk(1).astype(np.uint8)).astype(bool)
    min_area = max(16, (2 * radius + 1) ** 2)  # slivers and specks are not worth a user's stroke
    u = rng.random()
    walk = u < sum(_RANDOM_WALK_P)
    strokes = np.zeros_like(error) if u < _RANDOM_WALK_P[0] else skeleton_strokes(error, rng, radius, 2, min_area)
    if walk and error.sum() >= min_area:
        strokes |= random_walk_stroke(error, rng, radius=radius)
    return strokes & error


def corrective_scribbles(truth: np.ndarray, prediction: np.ndarray, rng: np.random.Generator,
                         radius: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(positive, negative) strokes on the prediction's errors, like the DAVIS interaction robot."""
    truth, prediction = _as_mask(truth, "truth"), _as_mask(prediction, "prediction")
    if truth.shape != prediction.shape:
        raise ValueError(f"truth {truth.shape} and prediction {prediction.shape} differ in shape")
    radius = stroke_width_for(truth.shape) if radius is None else radius
    positive = _error_strokes(truth & ~prediction, rng, radius)
    negative = _error_strokes(prediction & ~truth, rng, radius)
    return positive, negative


def simulate_interaction(masks: np.ndarray, rng: np.random.Generator, first_round_p: float = 0.4
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prior, positive, negative) of K objects for one simulated user round, to train the interactive model."""
    masks = np.asarray(masks).astype(bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (K, H, W), got shape {masks.shape}")
    prior = np.zeros(masks.shape, np.float32)
    positive, negative = np.zeros_like(masks), np.zeros_like(masks)
    first_round = rng.random() < first_round_p
    for k, truth in enumerate(masks):
        if first_round:
            positive[k] = skeleton_strokes(truth, rng)
            if rng.random() < _FIRST_ROUND_WALK_P:
                positive[k] |= random_walk_stroke(truth, rng)
        else:
            prior[k] = corrupt_mask(truth, rng)
            positive[k], negative[k] = corrective_scribbles(truth, prior[k] > 0.5, rng)
    labelled = positive.sum(axis=0)
    for k in range(len(masks)):  # a stroke labelled "object j" is negative for every other object
        negative[k] |= (labelled - positive[k]) > 0
    return prior, positive, negative


def grabcut_prior(image_bgr: np.ndarray, current: np.ndarray, positive: np.ndarray, negative: np.ndarray,
                  iterations: int = 3) -> np.ndarray:
    """A guess of the object's (h, w) float mask from strokes with OpenCV's GrabCut: strokes are
    certain, the current mask is 'probably object' (where there is none yet: a box around the
    positive strokes, enlarged by half their longer extent), the rest 'probably background'.
    Works in a window around the object; outside it the current mask is kept."""
    h, w = positive.shape
    seed = current > 0.5
    if not positive.any() and not seed.any():
        return current
    known = seed.copy() if seed.sum() > positive.sum() else np.zeros_like(seed)
    if not known.any():  # nothing known yet: a box around the strokes, enlarged by half their longer extent
        py, px = np.nonzero(positive)
        grow = max(max(py.max() - py.min(), px.max() - px.min()) // 2 + 2, min(h, w) // 12)  # short strokes too
        known[max(py.min() - grow, 0):py.max() + grow + 1, max(px.min() - grow, 0):px.max() + grow + 1] = True
    ys, xs = np.nonzero(known | positive)
    margin = max(ys.max() - ys.min(), xs.max() - xs.min()) // 2 + 8
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + margin + 1, h)
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + margin + 1, w)
    window = (slice(y0, y1), slice(x0, x1))
    labels = np.where(known[window], cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    labels[negative[window]] = cv2.GC_BGD
    labels[positive[window]] = cv2.GC_FGD
    if (labels == cv2.GC_PR_BGD).sum() + (labels == cv2.GC_BGD).sum() == 0:
        return np.maximum(current, positive.astype(np.float32))
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means start draws from OpenCV's global generator: same input, same guess
    try:
        cv2.grabCut(np.ascontiguousarray(image_bgr[window]), labels, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    except cv2.error:  # degenerate colour statistics: keep the painted mask
        return np.maximum(current, positive.astype(np.float32))
    out = current.astype(np.float32).copy()
    out[window] = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.float32)
    return out
