"""Landmark heatmaps and their augmentations (engine/embedding/heatmaps.py), and the square
frame that carries landmarks into the embedder's input (engine/embedding/views.py)."""

from __future__ import annotations

import numpy as np

from reid_engine.embedding.heatmaps import missing_landmarks, noisy_landmarks, render_heatmaps
from reid_engine.embedding.views import animal_square, square_frame
from reid_engine.records import ImageRecord, LoadedImage


def test_a_heatmap_is_a_flat_disk_at_the_point_and_black_when_not_visible():
    maps = render_heatmaps(np.array([[30, 20], [np.nan, np.nan]], np.float32), 100, radius=0.1)
    assert maps.shape == (2, 100, 100) and maps.dtype == np.float32
    assert maps[0, 20, 30] == 1.0 and maps[0, 20, 36] == 1.0  # flat inside: the centre is not marked
    assert maps[0, 20, 45] == 0.0 and maps[0, 5, 30] == 0.0  # nothing beyond the radius (10 px) and its soft edge
    assert 0.0 < maps[0, 20, 40] < 1.0  # soft edge
    assert not maps[1].any()


def test_noisy_landmarks_stay_within_the_radius_and_missing_ones_keep_the_minimum():
    rng = np.random.default_rng(0)
    pts = np.array([[50, 50], [10, 80], [np.nan, np.nan]], np.float32)
    for _ in range(50):
        moved = noisy_landmarks(pts, 100, rng, radius=0.05)
        shift = np.linalg.norm(moved[:2] - pts[:2], axis=1)
        assert (shift <= 5.0 + 1e-4).all() and np.isnan(moved[2]).all()
        dropped = missing_landmarks(pts, rng, min_visible=1, p=1.0)
        assert np.isfinite(dropped).all(1).sum() == 1
    assert np.array_equal(missing_landmarks(pts, rng, p=0.0), pts, equal_nan=True)
    assert not np.array_equal(np.stack([noisy_landmarks(pts, 100, rng)[0] for _ in range(3)])[0],
                              np.stack([noisy_landmarks(pts, 100, rng)[0] for _ in range(3)])[1])


def test_square_frame_points_land_where_the_square_shows_them():
    rgb = np.zeros((60, 140, 3), np.uint8)
    mask = np.zeros((60, 140), bool)
    mask[10:50, 20:120] = True
    rgb[30:33, 100:103] = (255, 0, 0)  # a red dot at x 101, y 31 (inside the animal)
    image = LoadedImage(ImageRecord("a", "a.png"), rgb, mask, "0" * 64, (60, 140))
    square = animal_square(image, 128, margin=0.0)
    x, y = square_frame(image, margin=0.0).points(np.array([[101, 31]], np.float32), 128)[0]
    red = np.argwhere((square[..., 0] > 120) & (square[..., 1] < 60))
    assert abs(red[:, 1].mean() - x) < 1.5 and abs(red[:, 0].mean() - y) < 1.5
