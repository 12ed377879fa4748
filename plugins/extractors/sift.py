"""``sift``: difference-of-Gaussians keypoints with RootSIFT descriptors (OpenCV SIFT).

No weights; the fastest extractor on a CPU. Descriptors are RootSIFT (L1-normalise, square
root), so Euclidean distance between them is the Hellinger kernel on SIFT histograms. LAFs
carry OpenCV's keypoint size and angle (``upright = true`` zeroes the angle and describes
every region upright).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_engine.plugin import Extractor, LoadedImage, LocalFeatures, PluginSpec, hookimpl

from ._image import resized_size

SIFT_DIM = 128


@dataclass(frozen=True)
class SiftConfig:
    """Options of ``sift``.

    resize              longer side (px) of the image SIFT sees, at most (0 = as loaded)
    max_keypoints       keypoints kept per image (strongest responses, inside the mask)
    upright             describe every region upright (orientation 0)
    contrast_threshold  OpenCV's DoG contrast threshold (lower = more, weaker keypoints)
    """

    resize: int = 1024
    max_keypoints: int = 2048
    upright: bool = False
    contrast_threshold: float = 0.02


def root_sift(desc: np.ndarray) -> np.ndarray:
    """SIFT (N, 128) → RootSIFT (N, 128): L1-normalise, square root (rows then have unit L2 norm)."""
    desc = desc.astype(np.float32)
    desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-7)
    return np.sqrt(desc)


class Sift(Extractor):
    def __init__(self, config: SiftConfig, device: str) -> None:
        import cv2

        if config.max_keypoints < 1:
            raise ValueError(f"sift.max_keypoints must be at least 1, got {config.max_keypoints}")
        self.config = config
        self.sift = cv2.SIFT_create(nfeatures=config.max_keypoints, contrastThreshold=config.contrast_threshold)

    def extract(self, image: LoadedImage) -> LocalFeatures:
        """Keypoints (N, 2) and LAFs (N, 2, 3) in ``image.rgb`` pixels, RootSIFT (N, 128)."""
        import cv2

        hw = image.rgb.shape[:2]
        (h, w), scale = resized_size(hw, self.config.resize)
        grey = cv2.cvtColor(image.rgb, cv2.COLOR_RGB2GRAY)
        mask = None if image.mask is None else image.mask.astype(np.uint8) * 255
        if scale != 1.0:
            grey = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)
            mask = None if mask is None else cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        if min(h, w) < 16 or (mask is not None and np.count_nonzero(mask) < 16):
            return LocalFeatures.empty(SIFT_DIM, hw)
        keypoints = self.sift.detect(grey, mask)
        if self.config.upright:  # OpenCV repeats a keypoint once per dominant angle: keep one upright copy
            unique = {(k.pt, k.size, k.octave): k for k in sorted(keypoints, key=lambda k: k.response)}
            keypoints = [cv2.KeyPoint(k.pt[0], k.pt[1], k.size, 0.0, k.response, k.octave) for k in unique.values()]
        keypoints = sorted(keypoints, key=lambda k: -k.response)[: self.config.max_keypoints]
        if not keypoints:
            return LocalFeatures.empty(SIFT_DIM, hw)
        keypoints, desc = self.sift.compute(grey, keypoints)
        if desc is None or not keypoints:
            return LocalFeatures.empty(SIFT_DIM, hw)
        xy = np.array([k.pt for k in keypoints], np.float32) / scale
        radius = np.array([k.size / 2.0 for k in keypoints], np.float32) / scale
        angle = np.deg2rad(np.array([k.angle for k in keypoints], np.float32))
        cos, sin = np.cos(angle) * radius, np.sin(angle) * radius
        lafs = np.stack([np.stack([cos, -sin, xy[:, 0]], 1), np.stack([sin, cos, xy[:, 1]], 1)], 1)
        return LocalFeatures(
            kpts=xy, desc=root_sift(desc), scores=np.array([k.response for k in keypoints], np.float32),
            lafs=lafs.astype(np.float32), image_hw=hw,
        )


@hookimpl
def register_extractors(register):
    register(PluginSpec(
        name="sift", kind="extractor", version="1", config_cls=SiftConfig,
        build=lambda config, device: Sift(config, device),
        description="DoG keypoints + RootSIFT (OpenCV; no weights, fastest on CPU)",
    ))
