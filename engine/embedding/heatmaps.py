"""Landmark heatmaps, Landmark-Id's extra input channels (seed paper 002, sections 3.2-3.3, 4.2).

One channel per landmark: a bright disk of radius ``radius`` × the square's side with a soft
edge, flat inside (its centre is not marked brighter, so the blob says only "the landmark is in
here"); all zeros when the landmark is not visible. Two augmentations teach the net to live
with predicted, uncertain landmarks: noisy landmarks (NLA) shift a disk by up to its radius,
missing landmarks (MLA) blank some visible ones.
"""

from __future__ import annotations

import numpy as np

DEFAULT_RADIUS = 0.05  # of the image side, as for the paper's manta rays


def render_heatmaps(points: np.ndarray, side: int, radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """Points float32 (K, 2) x, y in px of a ``side`` px square (NaN: not visible) → float32
    (K, side, side) in [0, 1]."""
    r = max(1.0, radius * side)
    soft = max(1.0, 0.3 * r)
    coords = np.arange(side, dtype=np.float32)
    out = np.zeros((len(points), side, side), np.float32)
    for k, (x, y) in enumerate(np.asarray(points, np.float32)):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        d = np.sqrt((coords[None, :] - x) ** 2 + (coords[:, None] - y) ** 2)
        out[k] = np.clip((r - d) / soft + 0.5, 0.0, 1.0)
    return out


def noisy_landmarks(points: np.ndarray, side: int, rng: np.random.Generator,
                    radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """NLA: every visible point moved in a random direction by up to the disk's radius, so the
    true landmark stays inside its disk but not at its centre. (K, 2) → (K, 2)."""
    pts = np.array(points, np.float32, copy=True)
    r = radius * side
    angle = rng.uniform(0, 2 * np.pi, len(pts))
    dist = r * np.sqrt(rng.uniform(0, 1, len(pts)))
    pts[:, 0] += (dist * np.cos(angle)).astype(np.float32)
    pts[:, 1] += (dist * np.sin(angle)).astype(np.float32)
    return pts


def missing_landmarks(points: np.ndarray, rng: np.random.Generator, min_visible: int = 1,
                      p: float = 0.2) -> np.ndarray:
    """MLA: each visible point is blanked (NaN) with probability ``p`` while more than
    ``min_visible`` stay visible. (K, 2) → (K, 2)."""
    pts = np.array(points, np.float32, copy=True)
    visible = [k for k in range(len(pts)) if np.isfinite(pts[k]).all()]
    for k in rng.permutation(visible):
        if len([j for j in range(len(pts)) if np.isfinite(pts[j]).all()]) <= min_visible:
            break
        if rng.uniform() < p:
            pts[k] = np.nan
    return pts
