"""``hessaff-rootsift``: Hessian blob detector, affine shape (Baumberg), dominant orientation,
RootSIFT descriptors on 32x32 patches — kornia's, no downloaded weights. Each step gives kornia's
numbers to float rounding, computed faster on the CPU: the detector (``_hessian_detector``: kornia's
``ScaleSpaceDetector``, extrema found and refined where they are), the Hessian (``_gradients``), the
shape and orientation steps and every patch from one pyramid (``_region_steps``, ``_patch_pyramid``),
the descriptor (``_patch_sift``). ``benchmarks/hessaff_speed.py`` times it against kornia's modules.

The image is converted to grey, resized so its longer side is ``resize`` px, and keypoints
are detected on it; keypoints and affine frames are returned in the pixels of the image
handed in (``LoadedImage.rgb``), so matchers and drawings need not know the resize.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reid_engine.plugin import Extractor, LoadedImage, LocalFeatures, PluginSpec, hookimpl

from ._hessian_detector import HessianDetector
from ._image import crop_to_mask, grey_tensor, mask_tensor
from ._patch_pyramid import PatchPyramid
from ._patch_sift import PatchRootSift
from ._region_steps import AffineShapeStep, OrientationStep

DESCRIPTOR_DIM = 128


@dataclass(frozen=True)
class HessAffRootSiftConfig:
    """Options of ``hessaff-rootsift``.

    resize         longer side (px) of the image the detector sees, at most (0 = as loaded)
    max_keypoints  keypoints kept per image (strongest responses, inside the mask)
    affine         estimate the affine shape of each region (else circular regions)
    upright        skip orientation estimation (all regions upright)
    patch_size     side of the normalised patch the descriptor sees
    shape_patch_size        side of the patch the affine shape is estimated on (0 = patch_size;
                            kornia's own default is 19)
    orientation_patch_size  side of the patch the dominant orientation is found on (0 = patch_size)
    mr_size        measurement region size, in detection scales
    crop_to_mask   detect on the mask's bounding box (+ 10 % of the image side) instead of the
                   whole image: the same regions, in less time when the animal is small
    """

    resize: int = 640
    max_keypoints: int = 1024
    affine: bool = True
    upright: bool = False
    patch_size: int = 32
    mr_size: float = 6.0
    crop_to_mask: bool = True
    shape_patch_size: int = 0
    orientation_patch_size: int = 0

    def __post_init__(self) -> None:
        if self.max_keypoints < 1:
            raise ValueError(f"max_keypoints must be at least 1, got {self.max_keypoints}")
        if not 8 <= self.patch_size <= 128:
            raise ValueError(f"patch_size must be between 8 and 128 px, got {self.patch_size}")
        for name in ("shape_patch_size", "orientation_patch_size"):
            size = getattr(self, name)
            if size and not 8 <= size <= 128:
                raise ValueError(f"{name} must be between 8 and 128 px (or 0: patch_size), got {size}")


class HessAffRootSift(Extractor):
    """Weight-free Hessian-affine regions with RootSIFT descriptors (kornia)."""

    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, config: HessAffRootSiftConfig, device: str) -> None:
        self.config = config
        self.device = device
        ps = config.patch_size
        shape_ps, orientation_ps = config.shape_patch_size or ps, config.orientation_patch_size or ps
        # the detector finds centres and scales; the shape, orientation and descriptor steps then sample
        # their patches from one pyramid of the image (kornia's modules would each build their own)
        self.detector = HessianDetector(config.mr_size, levels=3, init_sigma=1.6, min_size=ps,
                                        refine_iterations=10).to(device).eval()
        self.shape = AffineShapeStep(shape_ps).to(device).eval() if config.affine else None
        self.orientation = None if config.upright else OrientationStep(orientation_ps).to(device).eval()
        self.descriptor = PatchRootSift(ps).to(device).eval()
        self.smallest_patch = min(ps, shape_ps, orientation_ps)

    @torch.inference_mode()
    def extract(self, image: LoadedImage) -> LocalFeatures:
        """Keypoints (N, 2), LAFs (N, 2, 3) in ``image.rgb`` pixels and RootSIFT (N, 128)."""
        hw = image.rgb.shape[:2]
        grey, scale = grey_tensor(image, self.config.resize, self.device)
        mask = mask_tensor(image.mask, tuple(grey.shape[-2:]), self.device)
        if mask is not None and float(mask.sum()) < 16:
            return LocalFeatures.empty(DESCRIPTOR_DIM, hw)
        offset = (0, 0)
        if self.config.crop_to_mask:
            grey, mask, offset = crop_to_mask(grey, mask)
        if float(grey.std()) < 1e-4:  # flat: its Hessian is float rounding, and so would its "regions" be
            return LocalFeatures.empty(DESCRIPTOR_DIM, hw)
        try:
            responses, lafs = self.detector.detect(grey, mask, self.config.max_keypoints)
        except (RuntimeError, ValueError):  # too small for the pyramid, degenerate input
            return LocalFeatures.empty(DESCRIPTOR_DIM, hw)
        keep = torch.isfinite(lafs).flatten(1).all(1) & (responses.abs() > 0)
        if mask is not None:
            centres = lafs[:, :, 2].round().long()
            cx = centres[:, 0].clamp(0, grey.shape[-1] - 1)
            cy = centres[:, 1].clamp(0, grey.shape[-2] - 1)
            keep &= mask[0, 0, cy, cx] > 0
        lafs, responses = lafs[keep], responses[keep]
        if lafs.shape[0] == 0:
            return LocalFeatures.empty(DESCRIPTOR_DIM, hw)
        lafs, desc = self.describe(grey, lafs)
        lafs[:, :, 2] += torch.tensor(offset, dtype=lafs.dtype, device=lafs.device)
        lafs_full = lafs / scale
        return LocalFeatures(
            kpts=lafs_full[:, :, 2].cpu().numpy().astype(np.float32),
            desc=desc.cpu().numpy().astype(np.float32),
            scores=responses.abs().cpu().numpy().astype(np.float32),
            lafs=lafs_full.cpu().numpy().astype(np.float32),
            image_hw=hw,
        )

    def describe(self, grey: torch.Tensor, lafs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Upright regions (N, 2, 3) of ``grey`` (1, 1, h, w) → their affine shape and orientation (N, 2, 3) and
        RootSIFT (N, 128), every patch sampled from one pyramid of ``grey``."""
        pyramid = PatchPyramid(grey, self.smallest_patch)
        if self.shape is not None:
            lafs = self.shape(lafs, pyramid)
        if self.orientation is not None:
            lafs = self.orientation(lafs, pyramid)
        return lafs, self.descriptor(pyramid.patches(lafs, self.config.patch_size))


@hookimpl
def register_extractors(register):
    register(PluginSpec(
        name="hessaff-rootsift",
        kind="extractor",
        version="4",  # 4: own detector, one patch pyramid: frames and descriptors differ from 3 by float rounding
        config_cls=HessAffRootSiftConfig,
        build=lambda config, device: HessAffRootSift(config, device),
        description="Hessian-affine regions + RootSIFT (kornia; no weights needed)",
    ))
