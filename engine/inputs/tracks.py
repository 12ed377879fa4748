"""Which animal is which across the photos of one sequence, when photos show several.

The Ladoga seal work identifies a sequence (a burst, one encounter) by pooling its photos'
evidence. With the instance policy ``each`` a photo of two seals becomes two queries, and
pooling the whole sequence would mix the two animals' evidence. Animals in a burst barely move,
so each photo's animals are matched to the sequence's tracks by where they lie: the photo with
most animals starts the tracks, and every other photo's animals are assigned to them by the
smallest total distance between centroids (Hungarian assignment); an animal farther than
``max_step`` (share of the photo's diagonal) from every free track starts a new track.
"""

from __future__ import annotations

import numpy as np

Centroid = tuple[float, float]  # x, y as fractions of the photo's width and height


def track_instances(photos: list[list[Centroid]], max_step: float = 0.25) -> list[list[int]]:
    """Per photo (in sequence order), per animal: its track number (0, 1, ...).

    ``photos[i]`` lists photo i's animal centroids; the result has the same shape. Tracks are
    numbered by first appearance in the photo with most animals, left to right.
    """
    from scipy.optimize import linear_sum_assignment

    if not photos:
        return []
    start = max(range(len(photos)), key=lambda i: (len(photos[i]), -i))
    ordered = sorted(range(len(photos[start])), key=lambda k: photos[start][k])
    tracks: list[Centroid] = [photos[start][k] for k in ordered]
    out: list[list[int]] = [[] for _ in photos]
    out[start] = [ordered.index(k) for k in range(len(photos[start]))]
    for i, points in enumerate(photos):
        if i == start:
            continue
        labels = [-1] * len(points)
        if points and tracks:
            cost = np.array([[np.hypot(p[0] - t[0], p[1] - t[1]) / np.sqrt(2) for t in tracks] for p in points])
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] <= max_step:
                    labels[r] = int(c)
        for k, label in enumerate(labels):
            if label < 0:
                tracks.append(points[k])
                labels[k] = len(tracks) - 1
        out[i] = labels
    return out


def mask_centroid(mask: np.ndarray) -> Centroid:
    """Centroid of a bool (H, W) mask as fractions of the width and height; the centre when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0.5, 0.5)
    h, w = mask.shape
    return (float((xs.mean() + 0.5) / w), float((ys.mean() + 0.5) / h))
