"""``isnet``: class-agnostic salient-object segmentation with IS-Net (ONNX, onnxruntime).

The weight ``isnet-small`` (``reid-engine weights list``) takes a fixed RGB input of
1024x1024, normalised as ``(pixel - 128) / 256``, and returns a foreground probability map
(1, 1, 1024, 1024) in [0, 1]. The engine caches that map per photo (``probability``, the
expensive part) and asks ``clean`` to threshold it, open and close it, drop connected
components smaller than ``min_blob`` of the image and split it into instances, largest first
(so changing these options never re-runs the network). The CUDA provider is used when
onnxruntime has it and the device is ``cuda``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_engine.records import LoadedImage
from reid_engine.registry import PluginSpec, hookimpl

INPUT_SIZE = 1024


@dataclass(frozen=True)
class IsNetConfig:
    """Options of ``isnet``.

    threshold   foreground probability a pixel must exceed
    min_blob    connected components smaller than this share of the image are dropped
    close_px    closing radius (px at 1024) that fills thin gaps such as stripes on a flank
    """

    threshold: float = 0.5
    min_blob: float = 0.005
    close_px: int = 7


def clean_mask(prob: np.ndarray, threshold: float, min_blob: float, close_px: int) -> list[np.ndarray]:
    """Probability map float (H, W) → cleaned instance masks, bool (H, W) each, largest first."""
    import cv2

    mask = (prob > threshold).astype(np.uint8)
    if close_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * close_px + 1, 2 * close_px + 1))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_blob * mask.size]
    keep.sort(key=lambda i: -stats[i, cv2.CC_STAT_AREA])
    return [labels == i for i in keep]


class IsNet:
    def __init__(self, config: IsNetConfig, device: str) -> None:
        import onnxruntime as ort

        from reid_engine.weights import weight_path

        if not 0.0 < config.threshold < 1.0:
            raise ValueError(f"isnet.threshold must lie in (0, 1), got {config.threshold}")
        self.config = config
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(weight_path("isnet-small")), providers=providers)
        self.input = self.session.get_inputs()[0].name
        self.model_id = f"isnet-small@{INPUT_SIZE}"  # what ``probability`` depends on (the cache key)

    def probability(self, image: LoadedImage) -> np.ndarray:
        """Foreground probability float32 (H, W) in [0, 1] at the photo's size."""
        import cv2

        h, w = image.rgb.shape[:2]
        x = cv2.resize(image.rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        x = ((x - 128.0) / 256.0).transpose(2, 0, 1)[None]
        prob = self.session.run(["output"], {self.input: x})[0][0, 0]
        return cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR).clip(0.0, 1.0)

    def clean(self, prob: np.ndarray) -> list[np.ndarray]:
        """Probability float (h, w) → instance masks, bool (h, w) each, largest first; [] when nothing stands out."""
        c = self.config
        return clean_mask(prob, c.threshold, c.min_blob, max(0, round(c.close_px * max(prob.shape[:2]) / INPUT_SIZE)))

    def masks(self, image: LoadedImage) -> list[np.ndarray]:
        """Instance masks at the photo's size, bool (H, W) each, largest first."""
        return self.clean(self.probability(image))


@hookimpl
def register_segmenters(register):
    register(PluginSpec(
        name="isnet", kind="segmenter", version="1", config_cls=IsNetConfig,
        build=lambda config, device: IsNet(config, device),
        description="IS-Net salient-object masks (ONNX, onnxruntime; weight isnet-small)",
    ))
