"""The pixels a re-ID embedder sees: the animal, background greyed, on a square canvas.

As in the DVE paper, pixels outside the animal's mask become a neutral grey (the ImageNet
mean), the photo is cropped to the mask's box (plus a margin) and padded to a square
without changing its aspect ratio. Without a mask the whole photo is used.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from reid_engine.records import LoadedImage

GREY = (124, 116, 104)  # ImageNet mean colour, uint8


def animal_square(image: LoadedImage, side: int, margin: float = 0.08) -> np.ndarray:
    """``image`` → uint8 (side, side, 3): the masked animal, cropped, padded and resized."""
    rgb = image.rgb
    h, w = rgb.shape[:2]
    box = (0, 0, w, h)
    if image.mask is not None and image.mask.any():
        mask = image.mask
        rgb = np.where(mask[..., None], rgb, np.array(GREY, np.uint8))
        ys, xs = np.nonzero(mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        my, mx = margin * (y1 - y0), margin * (x1 - x0)
        box = (int(max(0, x0 - mx)), int(max(0, y0 - my)), int(min(w, x1 + mx)), int(min(h, y1 + my)))
    crop = rgb[box[1]:box[3], box[0]:box[2]]
    ch, cw = crop.shape[:2]
    edge = max(ch, cw)
    canvas = np.empty((edge, edge, 3), np.uint8)
    canvas[:] = GREY
    oy, ox = (edge - ch) // 2, (edge - cw) // 2
    canvas[oy:oy + ch, ox:ox + cw] = crop
    return np.asarray(Image.fromarray(canvas).resize((side, side), Image.BILINEAR))


def to_input(squares: np.ndarray | torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (N, S, S, 3) (or (N, 3, S, S) tensor) → normalised float32 (N, 3, S, S)."""
    x = torch.as_tensor(squares)
    if x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s
