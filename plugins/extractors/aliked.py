"""``aliked``: ALIKED keypoints and descriptors (kornia), weights from the weights manifest.

Four backbones: ``aliked-n16`` (default), ``aliked-n16rot`` (trained with in-plane rotation),
``aliked-n32`` and ``aliked-t16`` (tiny). The mask multiplies ALIKED's score map before
non-maximum suppression, so the whole keypoint budget goes to the animal rather than being
spent on the background and filtered afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from reid_engine.plugin import Extractor, LoadedImage, LocalFeatures, PluginSpec, hookimpl, load_weights

from ._image import crop_to_mask, mask_tensor, point_features, rgb_tensor, too_small

ALIKED_DIMS = {"aliked-t16": 64, "aliked-n16": 128, "aliked-n16rot": 128, "aliked-n32": 128}


@dataclass(frozen=True)
class AlikedConfig:
    """Options of ``aliked``.

    model                backbone (and the weight of that name in ``reid-engine weights list``)
    resize               longer side (px) of the image the network sees, at most (0 = as loaded)
    max_keypoints        keypoints kept per image: the strongest maxima of the score map
    detection_threshold  > 0 keeps only maxima above it (at most max_keypoints); 0 = top-k
    nms_radius           non-maximum suppression radius in network pixels
    region_size          side (network px) of the square region drawn and used by ``fginn``
    crop_to_mask         run the network on the mask's bounding box (+ 10 % of the image side)
                         instead of the whole image: less time when the animal is small
    """

    model: Literal["aliked-n16", "aliked-n16rot", "aliked-n32", "aliked-t16"] = "aliked-n16"
    resize: int = 1024
    max_keypoints: int = 2048
    detection_threshold: float = 0.0
    nms_radius: int = 2
    region_size: float = 16.0
    crop_to_mask: bool = True


class Aliked(Extractor):
    """ALIKED on the device, one image at a time (the images differ in size)."""

    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: AlikedConfig, device: str) -> None:
        import kornia.feature as KF

        if config.max_keypoints < 1:
            raise ValueError(f"aliked.max_keypoints must be at least 1, got {config.max_keypoints}")
        self.config = config
        self.device = device
        self.dim = ALIKED_DIMS[config.model]
        model = KF.ALIKED(
            model_name=config.model,
            max_num_keypoints=config.max_keypoints,
            detection_threshold=config.detection_threshold,
            nms_radius=config.nms_radius,
        )
        self.model = load_weights(model, config.model, allowed_missing=("dkd.hw_grid",)).to(device)

    @torch.inference_mode()
    def extract(self, image: LoadedImage) -> LocalFeatures:
        """Keypoints (N, 2) and square LAFs (N, 2, 3) in ``image.rgb`` pixels, descriptors (N, D)."""

        hw = image.rgb.shape[:2]
        rgb, scale = rgb_tensor(image, self.config.resize, self.device)
        mask = mask_tensor(image.mask, tuple(rgb.shape[-2:]), self.device)
        offset = (0, 0)
        if self.config.crop_to_mask:
            rgb, mask, offset = crop_to_mask(rgb, mask)
        if too_small(rgb, mask, min_side=2 * self.config.nms_radius + 8):
            return LocalFeatures.empty(self.dim, hw)
        feature_map, score_map = self.model.extract_dense_map(rgb)
        if mask is not None:
            score_map = score_map * mask
        keypoints, scores, _ = self.model.dkd(score_map)
        if keypoints[0].shape[0] == 0:
            return LocalFeatures.empty(self.dim, hw)
        descriptors, _ = self.model.desc_head(feature_map, keypoints)
        h, w = rgb.shape[-2:]
        wh = torch.tensor([w - 1, h - 1], device=rgb.device, dtype=torch.float32)
        kpts = wh * (keypoints[0].float() + 1) / 2.0 + torch.tensor(offset, device=rgb.device, dtype=torch.float32)
        keep = scores[0] > 0
        kpts, desc, resp = kpts[keep], descriptors[0][keep], scores[0][keep]
        if kpts.shape[0] == 0:
            return LocalFeatures.empty(self.dim, hw)
        return point_features(kpts, desc, resp, scale, self.config.region_size, hw)


@hookimpl
def register_extractors(register):
    register(PluginSpec(
        name="aliked", kind="extractor", version="2", config_cls=AlikedConfig,
        build=lambda config, device: Aliked(config, device),
        description="ALIKED keypoints + descriptors (kornia; weights aliked-n16/n16rot/n32/t16)",
    ))
