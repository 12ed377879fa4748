"""LoadedImage → resized torch tensors, and network keypoints → LocalFeatures.

Shared by the built-in extractors (through :mod:`reid_engine.plugin`) and by the engine's
descriptor training (``training/descriptor.py``), which must see exactly the pixels the
extractors see. Every extractor sees the photo at a bounded size (``resize`` = longer side,
downscale only) and reports keypoints in the pixels of ``LoadedImage.rgb``; these helpers do
the resize and give back the scale so the keypoints can be mapped back.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from reid_engine.records import LoadedImage, LocalFeatures


def resized_size(hw: tuple[int, int], resize: int) -> tuple[tuple[int, int], float]:
    """Size (h, w) after reducing the longer side to ``resize`` (0 = keep), and the scale h'/h."""
    h, w = hw
    if not resize or max(h, w) <= resize:
        return (h, w), 1.0
    scale = resize / max(h, w)
    size = (max(8, round(h * scale)), max(8, round(w * scale)))
    return size, size[0] / h


def rgb_tensor(image: LoadedImage, resize: int, device: str) -> tuple[torch.Tensor, float]:
    """uint8 RGB (H, W, 3) → float tensor (1, 3, h, w) in [0, 1] and the scale h/H (area downscale)."""
    rgb = torch.from_numpy(np.ascontiguousarray(image.rgb)).to(device)
    tensor = rgb.permute(2, 0, 1)[None].float() / 255.0
    size, scale = resized_size(tuple(tensor.shape[-2:]), resize)
    if scale != 1.0:
        tensor = F.interpolate(tensor, size=size, mode="area")
    return tensor, scale


def grey_tensor(image: LoadedImage, resize: int, device: str) -> tuple[torch.Tensor, float]:
    """uint8 RGB (H, W, 3) → float grey tensor (1, 1, h, w) in [0, 1] (BT.601 luma) and the scale
    h/H; the longer side is reduced to ``resize`` when larger (0 = never), never enlarged."""
    rgb = torch.from_numpy(np.ascontiguousarray(image.rgb)).to(device)
    grey = (rgb.float() @ torch.tensor([0.299, 0.587, 0.114], device=device)) / 255.0
    tensor = grey[None, None]
    size, scale = resized_size(tuple(tensor.shape[-2:]), resize)
    if scale != 1.0:
        tensor = F.interpolate(tensor, size=size, mode="area")
    return tensor, scale


def mask_tensor(mask: np.ndarray | None, size: tuple[int, int], device: str) -> torch.Tensor | None:
    """bool (H, W) → float (1, 1, h, w) resized to ``size`` (nearest), or None for no mask."""
    if mask is None:
        return None
    m = torch.from_numpy(mask.astype(np.float32)).to(device)[None, None]
    return F.interpolate(m, size=size, mode="nearest")


def crop_to_mask(tensor: torch.Tensor, mask: torch.Tensor | None, margin: float = 0.1, align: int = 32
                 ) -> tuple[torch.Tensor, torch.Tensor | None, tuple[int, int]]:
    """The part of an image (…, h, w) an extractor needs when only keypoints inside ``mask``
    (1, 1, h, w) are kept: the mask's bounding box grown by ``margin`` × the image's longer side
    on every side (the context that filters and descriptor regions near the animal's outline
    reach into), clipped to the image. The crop starts on a multiple of ``align`` px, so networks
    and pyramids that halve the image (up to ``align``-fold) sample the same pixels. Returns (cropped tensor, cropped mask, (x0, y0)): add
    (x0, y0) to keypoints found on the crop. Without a mask, or with an empty one, nothing is cut."""
    if mask is None:
        return tensor, mask, (0, 0)
    rows = torch.nonzero(mask[0, 0].amax(dim=1) > 0)
    cols = torch.nonzero(mask[0, 0].amax(dim=0) > 0)
    if rows.numel() == 0:
        return tensor, mask, (0, 0)
    h, w = tensor.shape[-2:]
    pad = int(round(margin * max(h, w)))
    y0, y1 = max(0, int(rows[0]) - pad) // align * align, min(h, int(rows[-1]) + 1 + pad)
    x0, x1 = max(0, int(cols[0]) - pad) // align * align, min(w, int(cols[-1]) + 1 + pad)
    return tensor[..., y0:y1, x0:x1], mask[..., y0:y1, x0:x1], (x0, y0)


def too_small(tensor: torch.Tensor, mask: torch.Tensor | None, min_side: int = 16, min_pixels: int = 16) -> bool:
    """True when an image (…, h, w) or its mask leaves too little to detect anything on."""
    if min(tensor.shape[-2:]) < min_side:
        return True
    return mask is not None and float(mask.sum()) < min_pixels


def point_features(kpts: torch.Tensor, desc: torch.Tensor, scores: torch.Tensor, scale: float,
                   region_size: float, hw: tuple[int, int]) -> LocalFeatures:
    """Keypoints (N, 2) found at ``scale`` × the loaded photo, their descriptors (N, D) and
    scores (N,) → LocalFeatures in the photo's pixels, with upright square regions of side
    ``region_size`` network pixels as LAFs (N, 2, 3) (for drawings and ``fginn``)."""
    import kornia.feature as KF

    kpts = kpts.float()
    size = torch.full((1, kpts.shape[0], 1, 1), region_size, device=kpts.device)
    lafs = KF.laf_from_center_scale_ori(kpts[None], size, torch.zeros_like(size[..., 0]))[0] / scale
    return LocalFeatures(
        kpts=(kpts / scale).cpu().numpy().astype(np.float32),
        desc=desc.float().cpu().numpy().astype(np.float32),
        scores=scores.float().cpu().numpy().astype(np.float32),
        lafs=lafs.cpu().numpy().astype(np.float32),
        image_hw=hw,
    )
