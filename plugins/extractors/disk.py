"""``disk``: DISK keypoints and descriptors (kornia, ``depth`` weights from the weights manifest).

The mask suppresses DISK's detection heatmap outside the animal before non-maximum
suppression, so the keypoint budget is spent on the animal.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reid_engine.plugin import Extractor, LoadedImage, LocalFeatures, PluginSpec, hookimpl, load_weights

from ._image import mask_tensor, point_features, rgb_tensor, too_small

DISK_DIM = 128


@dataclass(frozen=True)
class DiskConfig:
    """Options of ``disk``.

    resize           longer side (px) of the image the network sees, at most (0 = as loaded)
    max_keypoints    keypoints kept per image (strongest heatmap maxima)
    window_size      non-maximum suppression window (px)
    score_threshold  heatmap logit a maximum must exceed
    region_size      side (network px) of the square region drawn and used by ``fginn``
    """

    resize: int = 1024
    max_keypoints: int = 2048
    window_size: int = 5
    score_threshold: float = 0.0
    region_size: float = 16.0


class Disk(Extractor):
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: DiskConfig, device: str) -> None:
        import kornia.feature as KF

        if config.max_keypoints < 1:
            raise ValueError(f"disk.max_keypoints must be at least 1, got {config.max_keypoints}")
        self.config = config
        self.device = device
        self.model = load_weights(KF.DISK(), "disk-depth", key="extractor").to(device)

    @torch.inference_mode()
    def extract(self, image: LoadedImage) -> LocalFeatures:
        """Keypoints (N, 2) and square LAFs (N, 2, 3) in ``image.rgb`` pixels, descriptors (N, 128)."""
        from kornia.feature.disk.detector import heatmap_to_keypoints

        hw = image.rgb.shape[:2]
        rgb, scale = rgb_tensor(image, self.config.resize, self.device)
        h, w = rgb.shape[-2:]
        mask = mask_tensor(image.mask, (h, w), self.device)
        if too_small(rgb, mask, min_side=self.config.window_size + 8):
            return LocalFeatures.empty(DISK_DIM, hw)
        padded = F.pad(rgb, (0, -w % 16, 0, -h % 16))
        heatmap, dense = self.model.heatmap_and_dense_descriptors(padded)
        heatmap, dense = heatmap[..., :h, :w], dense[..., :h, :w]
        if mask is not None:
            heatmap = heatmap.masked_fill(mask == 0, -1e4)
        kp = heatmap_to_keypoints(heatmap, n=self.config.max_keypoints, window_size=self.config.window_size,
                                  score_threshold=self.config.score_threshold)[0]
        feats = kp.merge_with_descriptors(dense[0])
        if feats.keypoints.shape[0] == 0:
            return LocalFeatures.empty(DISK_DIM, hw)
        return point_features(feats.keypoints, feats.descriptors, feats.detection_scores, scale,
                              self.config.region_size, hw)


@hookimpl
def register_extractors(register):
    register(PluginSpec(
        name="disk", kind="extractor", version="1", config_cls=DiskConfig,
        build=lambda config, device: Disk(config, device),
        description="DISK keypoints + descriptors (kornia; weight disk-depth)",
    ))
