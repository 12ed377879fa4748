"""Image derivatives equal to ``kornia.filters.spatial_gradient``'s, in a layout the CPU runs fast.

kornia filters a batch of single-channel images as a batch (``(B, 1, H, W)`` through one
``(K, 1, k, k)`` convolution). oneDNN, which runs torch's CPU convolutions, is slow on exactly that
shape: on 2 cores, one thread, 1,024 patches of 34×34 through the two 3×3 first-derivative kernels
took 40 ms, and a 430×450 pyramid level of 5 images through the three 5×5 second-derivative
kernels 40 ms (timed ad hoc, 3 Dec 2026); even as one depthwise convolution, the batch moved into the
channels, a 450×450 octave of 5 levels took 25 ms. Here every derivative is a sum of shifted slices
(the Hessian's kernels are separable: 5.5 ms for that octave), with kornia's kernels and replicated
border: the same numbers to float rounding (``tests/plugins/test_gradients.py``). The whole
``hessaff-rootsift`` extractor, against kornia's modules: ``benchmarks/hessaff_speed.py``.
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


def sobel_second_order(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Second derivatives (d²/dx², d²/dy², d²/dxdy), each (B, C, H, W), of (B, C, H, W) images through kornia's
    normalised 5×5 Sobel kernels, border replicated (``kornia.filters.spatial_gradient(images, "sobel", 2)``).

    Each kernel is an outer product of two 5-tap filters, the smoothing s = (1, 4, 6, 4, 1), the second
    difference d2 = (1, 0, -2, 0, 1) and the first difference d1 = (1, 2, 0, -2, -1), over 64 (kornia divides
    each by the sum of its absolute values, 64 for all three, a power of two): d²/dx² = s(y) d2(x),
    d²/dy² = d2(y) s(x), d²/dxdy = d1(y) d1(x). Applied as sums of shifted slices, rows then columns."""
    b, c, h, w = images.shape
    p = F.pad(images.reshape(1, b * c, h, w), [2, 2, 2, 2], mode="replicate")[0]  # (n, H + 4, W + 4)
    r0, r1, r2, r3, r4 = (p[:, k: k + h] for k in range(5))  # rows shifted by -2 .. 2
    outer, inner = r0 + r4, r1 + r3
    smooth_y = torch.add(outer, inner, alpha=4).add_(r2, alpha=6)
    second_y = torch.add(outer, r2, alpha=-2)
    first_y = torch.sub(r0, r4).add_(torch.sub(r1, r3), alpha=2)
    c0, c1, c2, c3, c4 = (slice(k, k + w) for k in range(5))  # columns shifted by -2 .. 2
    dxx = torch.add(smooth_y[..., c0], smooth_y[..., c4]).add_(smooth_y[..., c2], alpha=-2)
    dyy = torch.add(second_y[..., c0], second_y[..., c4])
    dyy = dyy.add_(torch.add(second_y[..., c1], second_y[..., c3]), alpha=4).add_(second_y[..., c2], alpha=6)
    dxy = torch.sub(first_y[..., c0], first_y[..., c4]).add_(torch.sub(first_y[..., c1], first_y[..., c3]), alpha=2)
    return tuple(d.mul_(1.0 / 64.0).view(b, c, h, w) for d in (dxx, dyy, dxy))


class BlobHessian(nn.Module):
    """``kornia.feature.BlobHessian()`` (determinant of the Sobel Hessian, times sigma⁴ when scales
    are given), computed through :func:`sobel_second_order`; a drop-in ``resp_module`` for
    ``kornia.feature.ScaleSpaceDetector``."""

    def forward(self, images: torch.Tensor, sigmas: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) → (B, C, H, W) responses; ``sigmas`` (B,) or None."""
        dxx, dyy, dxy = sobel_second_order(images)
        response = dxx.mul_(dyy).sub_(dxy.mul_(dxy))
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
