"""Self-supervised patch pairs for descriptor training, from a user's own photos.

photos → regions (the extractor's detector: LAFs in the pixels it sees) → for a random
homography + photometric change of the photo, the patch of each region in the photo (anchor)
and at the warped LAF in the warped copy (positive): the same physical region twice. Regions
in one draw are kept apart, so the other pairs of a batch are true negatives.

Patches are 32x32 grey uint8, ``(P, 32, 32)``; the training loop turns them into floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from reid_engine.image_tensors import grey_tensor
from reid_engine.records import LoadedImage

PATCH_SIZE = 32


@dataclass(frozen=True)
class WarpConfig:
    """How different the two views of a region are.

    max_rotation_deg  in-plane rotation, uniform in ±this (the LAF follows it, so orientation
                      estimation is not what is learnt; the resampling is)
    scale_range       isotropic zoom, log-uniform in (low, high)
    anisotropy        extra stretch of one axis, log-uniform in (1/a, a): an affine change
    perspective       corner displacement of the projective part, as a share of the image size
    brightness        additive change, uniform in ±this (intensities in [0, 1])
    contrast          multiplicative change around the mean, log-uniform in (1/(1+c), 1+c)
    gamma             gamma, log-uniform in (1/g, g)
    max_blur_sigma    Gaussian blur of the positive patch, sigma uniform in (0, this) patch pixels
    max_noise         Gaussian noise std, uniform in (0, this)
    scale_jitter      the positive's LAF is then placed as a detector would re-detect it: scale
                      ×exp(±this), shape stretched ×exp(±shape_jitter) along a random axis,
    shape_jitter      turned by ±angle_jitter_deg and shifted by ±shift_jitter × its radius
    angle_jitter_deg  (Brown et al. jitter their patch data sets the same way)
    shift_jitter
    min_separation    regions drawn together have centres at least this × the larger radius apart
    """

    max_rotation_deg: float = 30.0
    scale_range: tuple[float, float] = (0.7, 1.4)
    anisotropy: float = 1.25
    perspective: float = 0.08
    brightness: float = 0.15
    contrast: float = 0.4
    gamma: float = 1.5
    max_blur_sigma: float = 1.2
    max_noise: float = 0.03
    scale_jitter: float = 0.2
    shape_jitter: float = 0.15
    angle_jitter_deg: float = 15.0
    shift_jitter: float = 0.1
    min_separation: float = 0.5


@dataclass
class PhotoRegions:
    """One photo as the detector saw it.

    grey     uint8 (h, w), the photo at the detector's resolution
    lafs     float (N, 2, 3), its regions there
    anchors  uint8 (N, 32, 32), each region's patch (extracted once)
    """

    image_id: str
    grey: torch.Tensor
    lafs: torch.Tensor
    anchors: torch.Tensor


@dataclass
class PatchPairs:
    """anchors, positives: uint8 (P, 32, 32); photo: int64 (P,) index of the source photo."""

    anchors: torch.Tensor
    positives: torch.Tensor
    photo: torch.Tensor

    def __len__(self) -> int:
        return int(self.anchors.shape[0])

    @staticmethod
    def empty() -> "PatchPairs":
        z = torch.zeros((0, PATCH_SIZE, PATCH_SIZE), dtype=torch.uint8)
        return PatchPairs(z, z.clone(), torch.zeros((0,), dtype=torch.int64))

    @staticmethod
    def cat(parts: Sequence["PatchPairs"]) -> "PatchPairs":
        parts = [p for p in parts if len(p)]
        if not parts:
            return PatchPairs.empty()
        return PatchPairs(torch.cat([p.anchors for p in parts]), torch.cat([p.positives for p in parts]),
                          torch.cat([p.photo for p in parts]))


def grey_at(image: LoadedImage, resize: int) -> tuple[torch.Tensor, float]:
    """Grey (1, 1, h, w) in [0, 1] and the scale h/H, on the CPU: exactly the built-in
    extractors' conversion (``image_tensors.grey_tensor``), so training patches look like the ones
    described later."""

    return grey_tensor(image, resize, "cpu")


def photo_regions(image: LoadedImage, lafs_rgb: np.ndarray, resize: int) -> PhotoRegions:
    """Regions of one photo from an extractor's LAFs (N, 2, 3) in ``image.rgb`` pixels."""
    import kornia.feature as KF

    grey, scale = grey_at(image, resize)
    lafs = torch.from_numpy(np.asarray(lafs_rgb, np.float32)).reshape(-1, 2, 3) * scale
    lafs = lafs[KF.laf_is_inside_image(lafs[None], grey)[0]]
    grey_u8 = _to_u8(grey[0, 0])
    if lafs.shape[0] == 0:
        return PhotoRegions(image.record.image_id, grey_u8, lafs, torch.zeros((0, PATCH_SIZE, PATCH_SIZE), dtype=torch.uint8))
    grey_q = grey_u8.float()[None, None] / 255.0  # what the warps start from, so anchors match positives
    anchors = _to_u8(KF.extract_patches_from_pyramid(grey_q, lafs[None], PATCH_SIZE)[0, :, 0])
    return PhotoRegions(image.record.image_id, grey_u8, lafs, anchors)


def _to_u8(t: torch.Tensor) -> torch.Tensor:
    return (t * 255.0).round().clamp(0, 255).to(torch.uint8)


def random_homography(hw: tuple[int, int], cfg: WarpConfig, rng: np.random.Generator) -> torch.Tensor:
    """A (3, 3) source → destination pixel homography about the image centre."""
    h, w = hw
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    theta = math.radians(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
    s = math.exp(rng.uniform(math.log(cfg.scale_range[0]), math.log(cfg.scale_range[1])))
    a = math.exp(rng.uniform(-math.log(cfg.anisotropy), math.log(cfg.anisotropy))) if cfg.anisotropy > 1 else 1.0
    c, si = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -si, 0], [si, c, 0], [0, 0, 1]])
    stretch = np.diag([s * a, s / a, 1.0])
    size = max(h, w)
    px, py = rng.uniform(-cfg.perspective, cfg.perspective, size=2) * 2.0 / size
    proj = np.array([[1, 0, 0], [0, 1, 0], [px, py, 1]])
    shift = rng.uniform(-0.05, 0.05, size=2) * np.array([w, h])
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    back = np.array([[1, 0, cx + shift[0]], [0, 1, cy + shift[1]], [0, 0, 1]])
    m = back @ proj @ rot @ stretch @ to_centre
    return torch.from_numpy(m / m[2, 2]).float()


def photometric(patches: torch.Tensor, mean: float, cfg: WarpConfig, rng: np.random.Generator) -> torch.Tensor:
    """One random lighting and camera change on patches (P, 1, 32, 32) in [0, 1].

    Brightness, contrast (about the photo's ``mean``) and gamma as a different exposure would
    give; Gaussian blur (in patch pixels) and noise as a different focus and sensor would.
    """
    from kornia.filters import gaussian_blur2d

    out = patches
    sigma = rng.uniform(0.0, cfg.max_blur_sigma)
    if sigma > 0.3 and out.shape[0]:
        k = 2 * math.ceil(3 * sigma) + 1
        out = gaussian_blur2d(out, (k, k), (sigma, sigma), border_type="replicate")
    contrast = math.exp(rng.uniform(-math.log1p(cfg.contrast), math.log1p(cfg.contrast)))
    out = (out - mean) * contrast + mean + rng.uniform(-cfg.brightness, cfg.brightness)
    gamma = math.exp(rng.uniform(-math.log(cfg.gamma), math.log(cfg.gamma))) if cfg.gamma > 1 else 1.0
    out = out.clamp(0, 1) ** gamma
    noise = rng.uniform(0.0, cfg.max_noise)
    if noise > 0:
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        out = out + torch.randn(out.shape, generator=gen) * noise
    return out.clamp(0, 1)


def separated(lafs: torch.Tensor, order: np.ndarray, cfg: WarpConfig, limit: int) -> list[int]:
    """Greedily pick up to ``limit`` regions (in ``order``) whose centres are far enough apart."""
    import kornia.feature as KF

    if lafs.shape[0] == 0:
        return []
    centres = lafs[:, :, 2].numpy()
    radius = KF.get_laf_scale(lafs[None])[0, :, 0, 0].numpy()
    chosen: list[int] = []
    for i in order:
        if len(chosen) >= limit:
            break
        if chosen:
            d = np.linalg.norm(centres[chosen] - centres[i], axis=1)
            if (d < cfg.min_separation * np.maximum(radius[chosen], radius[i])).any():
                continue
        chosen.append(int(i))
    return chosen


def jitter_lafs(lafs: torch.Tensor, cfg: WarpConfig, rng: np.random.Generator) -> torch.Tensor:
    """Perturb LAFs (N, 2, 3) as an independent re-detection would place them (see WarpConfig)."""
    n = lafs.shape[0]
    if n == 0:
        return lafs
    import kornia.feature as KF

    def uniform(limit: float, size=n) -> torch.Tensor:
        return torch.from_numpy(rng.uniform(-limit, limit, size)).float()

    scale = torch.exp(uniform(cfg.scale_jitter))
    stretch = torch.exp(uniform(cfg.shape_jitter))
    axis = uniform(math.pi)
    c, s = torch.cos(axis), torch.sin(axis)
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)  # (N, 2, 2)
    shape = rot @ torch.diag_embed(torch.stack([stretch, 1.0 / stretch], -1)) @ rot.transpose(1, 2)
    turned = KF.rotate_laf(lafs[None], uniform(cfg.angle_jitter_deg)[None, :, None])[0]
    radius = KF.get_laf_scale(lafs[None])[0, :, 0, 0]
    shift = uniform(cfg.shift_jitter, (n, 2)) * radius[:, None]
    a = turned[:, :, :2] @ shape * scale[:, None, None]
    return torch.cat([a, (turned[:, :, 2] + shift)[:, :, None]], dim=2)


def draw_pairs(photo: PhotoRegions, index: int, region_ids: Sequence[int], cfg: WarpConfig,
               rng: np.random.Generator) -> PatchPairs:
    """Anchor and positive patches of ``region_ids`` for one random warp of ``photo``.

    The positive is cut from the warped photo at the region's warped, jittered LAF, then given
    a photometric change. Regions whose patch leaves the warped photo are dropped.
    """
    import kornia.feature as KF
    from kornia.geometry.transform import warp_perspective

    if not len(region_ids):
        return PatchPairs.empty()
    img = photo.grey.float()[None, None] / 255.0
    hw = tuple(img.shape[-2:])
    hom = random_homography(hw, cfg, rng)
    warped = warp_perspective(img, hom[None], hw, align_corners=True)
    ids = torch.as_tensor(list(region_ids), dtype=torch.int64)
    lafs_w = KF.perspective_transform_lafs(hom[None], photo.lafs[ids][None])[0]
    lafs_w = jitter_lafs(lafs_w, cfg, rng)
    ok = KF.laf_is_inside_image(lafs_w[None], warped)[0]
    ok &= torch.isfinite(lafs_w).flatten(1).all(1) & (torch.linalg.det(lafs_w[:, :, :2]).abs() > 1e-6)
    if not bool(ok.any()):
        return PatchPairs.empty()
    positives = KF.extract_patches_from_pyramid(warped, lafs_w[ok][None], PATCH_SIZE)[0]
    positives = photometric(positives, float(img.mean()), cfg, rng)[:, 0]
    return PatchPairs(photo.anchors[ids[ok]], _to_u8(positives), torch.full((int(ok.sum()),), index, dtype=torch.int64))


def sample_pairs(photos: Sequence[PhotoRegions], n_pairs: int, cfg: WarpConfig, rng: np.random.Generator,
                 per_warp: int = 128, progress: Callable[[int], None] | None = None) -> PatchPairs:
    """About ``n_pairs`` pairs from ``photos``, each region at most once (one epoch's worth).

    Photos take turns; each turn draws up to ``per_warp`` separated, not yet used regions of
    one photo under a fresh warp. Stops early when every region has been used.
    """
    queues = [list(rng.permutation(p.lafs.shape[0])) for p in photos]
    parts: list[PatchPairs] = []
    total = 0
    order = list(rng.permutation(len(photos)))
    while total < n_pairs and order:
        next_order = []
        for i in order:
            if total >= n_pairs:
                break
            queue = queues[i]
            if not queue:
                continue
            pick = separated(photos[i].lafs, np.asarray(queue), cfg, min(per_warp, n_pairs - total))
            if not pick:
                continue
            picked = set(pick)
            queues[i] = [r for r in queue if r not in picked]
            part = draw_pairs(photos[i], i, pick, cfg, rng)
            parts.append(part)
            total += len(part)
            if progress is not None:
                progress(total)
            if queues[i]:
                next_order.append(i)
        order = next_order
    pairs = PatchPairs.cat(parts)
    if len(pairs) > n_pairs:
        pairs = PatchPairs(pairs.anchors[:n_pairs], pairs.positives[:n_pairs], pairs.photo[:n_pairs])
    return pairs
