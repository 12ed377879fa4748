"""Image derivatives equal to ``kornia.filters.spatial_gradient``'s, in a layout the CPU runs fast.

kornia filters a batch of single-channel images as a batch (``(B, 1, H, W)`` through one
``(K, 1, k, k)`` convolution). oneDNN, which runs torch's CPU convolutions, is slow on exactly that
shape: on 2 cores, one thread, 1,024 patches of 34×34 through the two 3×3 first-derivative kernels
took 40 ms, and a 430×450 pyramid level of 5 images through the three 5×5 second-derivative
kernels 40 ms (timed ad hoc, 3 Dec 2026). Here the first derivatives of patches are differences of
shifted slices and the Hessian's are one depthwise convolution, the batch moved into the channels
(12 ms), with kornia's own kernels and replicated border: the same numbers to float rounding
(``tests/plugins/test_gradients.py``). The whole ``hessaff-rootsift`` extractor, against kornia's
modules: ``benchmarks/hessaff_speed.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def diff_gradient(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of (B, 1, H, W) images, border replicated: (d/dx, d/dy), each (B, H, W);
    ``kornia.filters.spatial_gradient(images, "diff")[:, 0, 0]`` and ``[:, 0, 1]``."""
    padded = F.pad(images, [1, 1, 1, 1], mode="replicate")[:, 0]  # (B, H + 2, W + 2)
    dx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) * 0.5
    dy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) * 0.5
    return dx, dy


def _sobel_second_order_kernels() -> torch.Tensor:
    """The installed kornia's 5×5 Sobel kernels of (d²/dx², d²/dxdy, d²/dy²), float32 (3, 5, 5): read
    off its public ``spatial_gradient`` as the response to an impulse (correlation flips it back),
    so they are kornia's whatever its version normalises them to."""
    from kornia.filters import spatial_gradient

    impulse = torch.zeros(1, 1, 5, 5)
    impulse[0, 0, 2, 2] = 1.0
    return spatial_gradient(impulse, "sobel", 2)[0, 0].flip(-2, -1).contiguous()


def sobel_second_order(images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Second derivatives (B, C, 3, H, W) — xx, xy, yy — of (B, C, H, W) images through ``kernels``
    (3, 5, 5), border replicated: ``kornia.filters.spatial_gradient(images, "sobel", 2)``."""
    b, c, h, w = images.shape
    n = b * c
    padded = F.pad(images.reshape(1, n, h, w), [2, 2, 2, 2], mode="replicate")
    weight = kernels.to(images.dtype)[:, None].repeat(n, 1, 1, 1)  # (3n, 1, 5, 5)
    return F.conv2d(padded, weight, groups=n).reshape(b, c, 3, h, w)


class BlobHessian(nn.Module):
    """``kornia.feature.BlobHessian()`` (determinant of the Sobel Hessian, times sigma⁴ when scales
    are given), computed through :func:`sobel_second_order`; a drop-in ``resp_module`` for
    ``kornia.feature.ScaleSpaceDetector``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernels", _sobel_second_order_kernels(), persistent=False)

    def forward(self, images: torch.Tensor, sigmas: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H, W) responses; ``sigmas`` (B,) or None."""
        second = sobel_second_order(images, self.kernels)
        dxx, dxy, dyy = second[:, :, 0], second[:, :, 1], second[:, :, 2]
        response = dxx * dyy - dxy**2
        if sigmas is not None:
            response = response * sigmas.pow(4).view(-1, 1, 1, 1)
        return response


class SobelGradient(nn.Module):
    """``kornia.filters.SpatialGradient("sobel", 1)`` (normalised 3×3 Sobel, border replicated) as
    differences of shifted slices: (B, C, H, W) → (B, C, 2, H, W), (d/dx, d/dy). A drop-in ``gradient`` for
    kornia's patch estimators (``PatchAffineShapeEstimator``, ``PatchDominantGradientOrientation``), whose
    (1,024, 1, 21, 21) convolution oneDNN runs 10× slower than this."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        p = F.pad(images.reshape(b * c, 1, h, w), [1, 1, 1, 1], mode="replicate")[:, 0]  # (n, H + 2, W + 2)
        across = p[:, :, 2:] - p[:, :, :-2]  # (n, H + 2, W): x differences of every padded row
        dx = (across[:, :-2] + 2.0 * across[:, 1:-1] + across[:, 2:]) * 0.125
        down = p[:, 2:] - p[:, :-2]  # (n, H, W + 2)
        dy = (down[:, :, :-2] + 2.0 * down[:, :, 1:-1] + down[:, :, 2:]) * 0.125
        return torch.stack([dx, dy], 1).reshape(b, c, 2, h, w)
