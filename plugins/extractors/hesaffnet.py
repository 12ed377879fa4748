"""``hesaffnet-hardnet`` and ``keynet-affnet-hardnet``: learned affine regions + patch descriptors.

- ``hesaffnet-hardnet``: Hessian blob detector (kornia ``ScaleSpaceDetector`` + ``BlobHessian``),
  affine shape from AffNet, orientation from OriNet, a descriptor on 32x32 patches: HardNet
  (the ``hardnet-liberty`` weight, or a checkpoint written by ``reid-engine train descriptor``),
  TFeat (``tfeat-liberty``) or RootSIFT. NORPPA's HesAffNet + HardNet.
- ``keynet-affnet-hardnet``: Key.Net detector (``keynet`` weight) + AffNet + OriNet + the same
  descriptors (the KeyNetAffNetHardNet of the AnimalCLEF 2025 winner).

Every network is built with ``pretrained=False`` and loaded from ``reid_engine.weights``
(verified files; kornia never downloads). As in ``hessaff-rootsift``, the image is turned grey
and its longer side reduced to ``resize``; keypoints and LAFs are returned in the pixels of
``LoadedImage.rgb``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from reid_engine.plugin import Extractor, LoadedImage, LocalFeatures, PluginSpec, hookimpl

from ._image import crop_to_mask, grey_tensor, mask_tensor
from ._patch_sift import PatchRootSift

DESCRIPTOR_DIM = 128
PATCH_SIZE = 32  # what AffNet, OriNet, HardNet and TFeat take
Descriptor = Literal["hardnet", "tfeat", "rootsift"]


def _pin_checkpoint(config: object) -> None:
    """Fill ``config.checkpoint_sha256`` with the sha256 of ``config.checkpoint`` when not given.

    Why here: the feature cache keys an extractor by (name, version, config hash), and the config
    hash is taken over the dataclass fields (``engine/components.py``, ``registry.config_hash``)
    right after the profile's options are validated. A path alone would serve stale features
    after ``train descriptor`` rewrites the file, so the file's digest becomes a field of the
    config itself and every retrained checkpoint gets its own cache entries without the engine
    knowing about checkpoints. ``build`` then loads exactly those bytes, or fails if the file
    changed in between. A user may also pin the digest in the profile (``checkpoint_sha256``).
    A missing file leaves the digest empty; ``build`` reports it.
    """
    path = getattr(config, "checkpoint")
    if not path or getattr(config, "checkpoint_sha256"):
        return
    from reid_engine.plugin import file_sha256

    try:
        digest = file_sha256(Path(path).expanduser())
    except OSError:
        return
    object.__setattr__(config, "checkpoint_sha256", digest)


@dataclass(frozen=True)
class KeyNetAffNetConfig:
    """Options of ``keynet-affnet-hardnet`` (and, with three more, of ``hesaffnet-hardnet``).

    resize            longer side (px) of the image the detector sees, at most (0 = as loaded)
    max_keypoints     regions kept per image (strongest detector responses inside the mask)
    affine            estimate each region's affine shape with AffNet (else circular regions)
    upright           skip OriNet (all regions upright)
    descriptor        "hardnet" | "tfeat" | "rootsift" on the 32x32 normalised patch
    checkpoint        HardNet checkpoint from `reid-engine train descriptor` (absolute, or relative
                      to the working directory); "" = the `hardnet-liberty` weight
    checkpoint_sha256 sha256 of ``checkpoint``; filled in from the file when empty (see _pin_checkpoint)
    crop_to_mask      detect on the mask's bounding box (+ 10 % of the image side) instead of the
                      whole image: the same regions, in less time when the animal is small
    """

    resize: int = 640
    max_keypoints: int = 1024
    affine: bool = True
    upright: bool = False
    descriptor: Descriptor = "hardnet"
    checkpoint: str = ""
    checkpoint_sha256: str = ""
    crop_to_mask: bool = True

    def __post_init__(self) -> None:
        if self.max_keypoints < 1:
            raise ValueError(f"max_keypoints must be at least 1, got {self.max_keypoints}")
        _pin_checkpoint(self)


@dataclass(frozen=True)
class HesAffNetConfig(KeyNetAffNetConfig):
    """Options of ``hesaffnet-hardnet`` (defaults after NORPPA's tuned HesAffNet settings): those
    of ``keynet-affnet-hardnet``, with NORPPA's 480 regions, and

    mr_size           measurement region, in detection scales; NORPPA 9.35
    init_sigma        blur of the first pyramid level; NORPPA 1.32
    levels            pyramid levels per octave (NORPPA used 10: slower, more scales)
    """

    max_keypoints: int = 480
    mr_size: float = 9.35
    init_sigma: float = 1.32
    levels: int = 3


# -- building blocks: every network from a verified weight file, never downloaded -------------
def _load(module: torch.nn.Module, name: str) -> torch.nn.Module:
    from reid_engine.plugin import load_weights

    return load_weights(module, name)


def affine_module(affine: bool) -> torch.nn.Module:
    """AffNet (``affnet`` weight) or a pass-through when ``affine`` is off."""
    import kornia.feature as KF

    if not affine:
        return KF.PassLAF()
    return _load(KF.LAFAffNetShapeEstimator(pretrained=False, preserve_orientation=False), "affnet")


def orientation_module(upright: bool) -> torch.nn.Module:
    """OriNet (``orinet`` weight) on 32x32 patches, or a pass-through when ``upright``."""
    import kornia.feature as KF

    if upright:
        return KF.PassLAF()
    return KF.LAFOrienter(PATCH_SIZE, angle_detector=_load(KF.OriNet(pretrained=False), "orinet")).eval()


def missing_hardnet_message(plugin: str, reason: str) -> str:
    """One message for every way HardNet weights can be missing: both ways to get them."""
    return (f"{plugin}: no HardNet weights: {reason.rstrip('.')}. To train them on your own photos: "
            "`reid-engine train descriptor PHOTOS --out hardnet.pth`, then checkpoint = \"hardnet.pth\" in the "
            "extractor's options (descriptor = \"tfeat\" or \"rootsift\" needs neither)")


def descriptor_module(plugin: str, descriptor: str, checkpoint: str, checkpoint_sha256: str) -> torch.nn.Module:
    """Patch descriptor (B, 1, 32, 32) → (B, 128) with unit rows."""
    import kornia.feature as KF

    if descriptor == "rootsift":
        return PatchRootSift(PATCH_SIZE).eval()
    if descriptor == "tfeat":
        return _UnitRows(_load(KF.TFeat(pretrained=False), "tfeat-liberty")).eval()
    if descriptor != "hardnet":
        raise ValueError(f"descriptor {descriptor!r} is not one of hardnet, tfeat, rootsift")
    from reid_engine.plugin import CheckpointError, load_hardnet, read_checkpoint

    if checkpoint:
        if not Path(checkpoint).expanduser().is_file():
            raise CheckpointError(missing_hardnet_message(
                plugin, f"checkpoint = {checkpoint!r}: no such file (absolute, or relative to {Path.cwd()}); "
                "to use the upstream HardNet instead, leave checkpoint empty and `reid-engine weights import "
                "checkpoint_liberty_with_aug.pth`"))
        try:
            return load_hardnet(read_checkpoint(checkpoint, checkpoint_sha256))
        except CheckpointError as exc:
            raise CheckpointError(f"{plugin}: {exc}") from None
    from reid_engine.plugin import MissingWeights

    try:
        return _load(KF.HardNet(pretrained=False), "hardnet-liberty")
    except MissingWeights as exc:  # same type (callers may skip on it), message adds `train descriptor`
        raise MissingWeights(missing_hardnet_message(plugin, str(exc)), exc.spec, exc.expected) from None


class _UnitRows(torch.nn.Module):
    """Wraps a descriptor whose rows are not unit vectors (TFeat) and L2-normalises them."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.net(patches), dim=1)


# -- the extractor ------------------------------------------------------------------------------
class AffNetExtractor(Extractor):
    """A kornia detector (Hessian or Key.Net, with AffNet/OriNet) + a 32x32 patch descriptor.

    ``detector(grey (1, 1, h, w), mask (1, 1, h, w) | None) -> (lafs (1, N, 2, 3), responses (1, N))``;
    ``descriptor(patches (B, 1, 32, 32)) -> (B, 128)``.
    """
    thread_safe = True  # calls change nothing in the object: the engine may run two at once

    def __init__(self, detector: torch.nn.Module, descriptor: torch.nn.Module, resize: int, device: str,
                 crop: bool = True) -> None:
        self.detector = detector.to(device).eval()
        self.descriptor = descriptor.to(device).eval()
        self.resize = resize
        self.crop = crop
        self.device = device

    @torch.inference_mode()
    def extract(self, image: LoadedImage) -> LocalFeatures:
        """Keypoints (N, 2), LAFs (N, 2, 3) in ``image.rgb`` pixels and descriptors (N, 128)."""
        import kornia.feature as KF

        hw = image.rgb.shape[:2]
        if min(hw) < 16:
            return LocalFeatures.empty(DESCRIPTOR_DIM, hw)
        grey, scale = grey_tensor(image, self.resize, self.device)
        mask = mask_tensor(image.mask, tuple(grey.shape[-2:]), self.device)
        offset = (0, 0)
        if self.crop:
            grey, mask, offset = crop_to_mask(grey, mask)
        size = tuple(grey.shape[-2:])
        if min(size) < 16 or (mask is not None and float(mask.sum()) < 16) or float(grey.std()) < 1e-4:
            return LocalFeatures.empty(DESCRIPTOR_DIM, hw)
        try:
            lafs, responses = self.detector(grey, mask)
        except (RuntimeError, ValueError):  # too small for the pyramid, degenerate input
            return LocalFeatures.empty(DESCRIPTOR_DIM, hw)
        lafs, responses = lafs[0], responses[0]
        keep = torch.isfinite(lafs).flatten(1).all(1) & (responses.abs() > 0)
        keep &= torch.linalg.det(lafs[:, :, :2]).abs() > 1e-8
        centres = lafs[:, :, 2]
        keep &= (centres[:, 0] >= 0) & (centres[:, 0] <= size[1] - 1) & (centres[:, 1] >= 0) & (centres[:, 1] <= size[0] - 1)
        if mask is not None:
            cx = centres[:, 0].round().long().clamp(0, size[1] - 1)
            cy = centres[:, 1].round().long().clamp(0, size[0] - 1)
            keep &= mask[0, 0, cy, cx] > 0
        lafs, responses = lafs[keep], responses[keep]
        if lafs.shape[0] == 0:
            return LocalFeatures.empty(DESCRIPTOR_DIM, hw)
        desc = KF.get_laf_descriptors(grey, lafs[None], self.descriptor, PATCH_SIZE, True)[0]
        ok = torch.isfinite(desc).all(1)
        lafs, responses, desc = lafs[ok], responses[ok], desc[ok]
        lafs[:, :, 2] += torch.tensor(offset, dtype=lafs.dtype, device=lafs.device)
        lafs_full = lafs / scale
        return LocalFeatures(
            kpts=lafs_full[:, :, 2].cpu().numpy().astype(np.float32),
            desc=desc.cpu().numpy().astype(np.float32),
            scores=responses.abs().cpu().numpy().astype(np.float32),
            lafs=lafs_full.cpu().numpy().astype(np.float32),
            image_hw=hw,
        )


def build_hesaffnet(config: HesAffNetConfig, device: str, plugin: str = "hesaffnet-hardnet") -> AffNetExtractor:
    import kornia.feature as KF
    from kornia.geometry import ConvQuadInterp3d, ScalePyramid

    if config.levels < 1 or config.max_keypoints < 1 or config.mr_size <= 0 or config.init_sigma <= 0:
        raise ValueError("levels and max_keypoints must be ≥ 1, mr_size and init_sigma > 0")
    descriptor = descriptor_module(plugin, config.descriptor, config.checkpoint, config.checkpoint_sha256)
    detector = KF.ScaleSpaceDetector(
        num_features=config.max_keypoints,
        mr_size=config.mr_size,
        resp_module=KF.BlobHessian(),
        scale_pyr_module=ScalePyramid(config.levels, config.init_sigma, PATCH_SIZE, double_image=False),
        subpix_module=ConvQuadInterp3d(10),
        ori_module=orientation_module(config.upright),
        aff_module=affine_module(config.affine),
        minima_are_also_good=False,  # det(Hessian) minima are saddles, not blobs (as kornia's HesAffNetHardNet)
    )
    return AffNetExtractor(detector, descriptor, config.resize, device, config.crop_to_mask)


def build_keynet(config: KeyNetAffNetConfig, device: str, plugin: str = "keynet-affnet-hardnet") -> AffNetExtractor:
    import kornia.feature as KF

    if config.max_keypoints < 1:
        raise ValueError("max_keypoints must be ≥ 1")
    descriptor = descriptor_module(plugin, config.descriptor, config.checkpoint, config.checkpoint_sha256)
    detector = KF.KeyNetDetector(
        pretrained=False,
        num_features=config.max_keypoints,
        ori_module=orientation_module(config.upright),
        aff_module=affine_module(config.affine),
    )
    _load(detector.model, "keynet")
    return AffNetExtractor(detector, descriptor, config.resize, device, config.crop_to_mask)


@hookimpl
def register_extractors(register):
    register(PluginSpec(
        name="hesaffnet-hardnet",
        kind="extractor",
        version="2",
        config_cls=HesAffNetConfig,
        build=lambda config, device: build_hesaffnet(config, device),
        description="Hessian + AffNet + OriNet regions, HardNet/TFeat/RootSIFT (weights affnet, orinet, "
                    "hardnet-liberty or a `train descriptor` checkpoint)",
    ))
    register(PluginSpec(
        name="keynet-affnet-hardnet",
        kind="extractor",
        version="2",
        config_cls=KeyNetAffNetConfig,
        build=lambda config, device: build_keynet(config, device),
        description="Key.Net + AffNet + OriNet regions, HardNet/TFeat/RootSIFT (weights keynet, affnet, orinet, ...)",
    ))
