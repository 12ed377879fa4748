"""``ransac-inliers``: the number of matches consistent with one geometric model.

Homography, affine or fundamental matrix, fitted with OpenCV's USAC (MAGSAC++ by default).
The reprojection threshold is a fraction of the longer image side, so it means the same at
any resolution. Fewer matches than the model needs give a score of 0. ``inliers()`` returns
the inlier mask itself, for drawings (``reid-engine explain``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from reid_engine.plugin import LocalFeatures, Matches, PluginSpec, Scorer, hookimpl

MIN_MATCHES = {"homography": 4, "affine": 3, "fundamental": 8}


@dataclass(frozen=True)
class RansacConfig:
    """model: geometric model; method: magsac | ransac; threshold: fraction of the longer side;
    weighted: sum the inliers' confidences instead of counting them; one_to_one: count each
    keypoint of either image once (for many-to-one matchers such as AdaLAM)."""

    model: Literal["homography", "affine", "fundamental"] = "homography"
    method: Literal["magsac", "ransac"] = "magsac"
    threshold: float = 0.015
    confidence: float = 0.999
    max_iters: int = 2000
    weighted: bool = False
    seed: int = 0
    one_to_one: bool = False


class RansacInliers(Scorer):
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: RansacConfig) -> None:
        self.config = config

    def inliers(self, f1: LocalFeatures, f2: LocalFeatures, matches: Matches) -> np.ndarray:
        """bool (M,): the matches consistent with the fitted model (with ``one_to_one``, each
        keypoint once), exactly those the score counts; all False when no model fits (too few
        matches, a degenerate configuration)."""
        import cv2

        c = self.config
        none = np.zeros(len(matches), bool)
        if len(matches) < max(MIN_MATCHES[c.model], 5):
            return none
        p1 = f1.kpts[matches.idx[:, 0]].astype(np.float64)
        p2 = f2.kpts[matches.idx[:, 1]].astype(np.float64)
        thr = c.threshold * float(max(f2.image_hw) or max(p2.max(0) - p2.min(0)) or 1.0)
        method = cv2.USAC_MAGSAC if c.method == "magsac" else cv2.RANSAC
        cv2.setRNGSeed(c.seed)
        try:
            if c.model == "homography":
                _, inl = cv2.findHomography(p1, p2, method, thr, maxIters=c.max_iters, confidence=c.confidence)
            elif c.model == "affine":
                _, inl = cv2.estimateAffine2D(p1, p2, method=method, ransacReprojThreshold=thr,
                                              maxIters=c.max_iters, confidence=c.confidence)
            else:
                _, inl = cv2.findFundamentalMat(p1, p2, method, thr, c.confidence, c.max_iters)
        except cv2.error:
            return none
        if inl is None:
            return none
        inl = inl.reshape(-1).astype(bool)
        return one_to_one(matches, inl) if c.one_to_one else inl

    def score(self, f1: LocalFeatures, f2: LocalFeatures, matches: Matches) -> float:
        inl = self.inliers(f1, f2, matches)
        return float(matches.conf[inl].sum() if self.config.weighted else inl.sum())


def one_to_one(matches: Matches, among: np.ndarray) -> np.ndarray:
    """bool (M,): a greedy one-to-one subset of the matches flagged in ``among``, most confident
    first, so each keypoint of either image counts once. Matchers such as AdaLAM can send many
    query keypoints to one gallery keypoint, and a homography then counts all of them."""
    keep = np.zeros(len(matches), bool)
    seen0, seen1 = set(), set()
    candidates = np.flatnonzero(among)
    for k in candidates[np.argsort(-matches.conf[candidates], kind="stable")]:
        a, b = int(matches.idx[k, 0]), int(matches.idx[k, 1])
        if a not in seen0 and b not in seen1:
            keep[k] = True
            seen0.add(a)
            seen1.add(b)
    return keep


@hookimpl
def register_scorers(register):
    register(PluginSpec(
        name="ransac-inliers", kind="scorer", version="1", config_cls=RansacConfig,
        build=lambda config, device: RansacInliers(config),
        description="geometric inliers (homography/affine/fundamental; OpenCV USAC MAGSAC++)",
    ))
