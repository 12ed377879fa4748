"""The pixels a re-ID embedder sees: the animal, background greyed, on a square canvas.

As in the DVE paper, pixels outside the animal's mask become a neutral grey (the ImageNet
mean), the photo is cropped to the mask's box (plus a margin) and padded to a square
without changing its aspect ratio. Without a mask the whole photo is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from reid_engine.records import LoadedImage

GREY = (124, 116, 104)  # ImageNet mean colour, uint8


@dataclass(frozen=True)
class SquareFrame:
    """Where the animal square comes from: ``box`` (x0, y0, x1, y1) px of ``image.rgb`` pasted at
    (``ox``, ``oy``) on a grey ``edge`` × ``edge`` canvas, which is then resized to the square's side."""

    box: tuple[int, int, int, int]
    edge: int
    ox: int
    oy: int

    def points(self, xy: np.ndarray, side: int) -> np.ndarray:
        """Points float32 (K, 2) x, y in ``image.rgb`` px → the same points in a ``side`` px square
        (NaN stays NaN)."""
        f = side / self.edge
        shifted = np.asarray(xy, np.float32) - np.array(self.box[:2], np.float32) + np.array([self.ox, self.oy], np.float32)
        return ((shifted + 0.5) * f - 0.5).astype(np.float32)


def square_frame(image: LoadedImage, margin: float = 0.08) -> SquareFrame:
    """The crop (mask's box plus ``margin`` of its size; the whole photo without a mask) and its
    place on the square canvas."""
    h, w = image.rgb.shape[:2]
    box = (0, 0, w, h)
    if image.mask is not None and image.mask.any():
        ys, xs = np.nonzero(image.mask)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        my, mx = margin * (y1 - y0), margin * (x1 - x0)
        box = (int(max(0, x0 - mx)), int(max(0, y0 - my)), int(min(w, x1 + mx)), int(min(h, y1 + my)))
    ch, cw = box[3] - box[1], box[2] - box[0]
    edge = max(ch, cw)
    return SquareFrame(box, edge, (edge - cw) // 2, (edge - ch) // 2)


def animal_square(image: LoadedImage, side: int, margin: float = 0.08) -> np.ndarray:
    """``image`` → uint8 (side, side, 3): the masked animal, cropped, padded and resized."""
    rgb = image.rgb
    if image.mask is not None and image.mask.any():
        rgb = np.where(image.mask[..., None], rgb, np.array(GREY, np.uint8))
    frame = square_frame(image, margin)
    x0, y0, x1, y1 = frame.box
    canvas = np.empty((frame.edge, frame.edge, 3), np.uint8)
    canvas[:] = GREY
    canvas[frame.oy:frame.oy + y1 - y0, frame.ox:frame.ox + x1 - x0] = rgb[y0:y1, x0:x1]
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
