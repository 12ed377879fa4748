"""The affine-shape and orientation steps of a Hessian-affine extractor, on patches of one
:class:`~._patch_pyramid.PatchPyramid`: kornia's ``LAFAffineShapeEstimator`` (preserving orientation)
and ``LAFOrienter``, with the same patch estimators (``PatchAffineShapeEstimator``,
``PatchDominantGradientOrientation``) and the same frame algebra, written with kornia's public LAF
functions. kornia's modules sample their patches from a pyramid each builds again; these share one
with the descriptor. Same frames to float rounding (``tests/plugins/test_region_steps.py``).

Both take and return frames (N, 2, 3) in the image's pixels, every one finite with a nonzero
determinant (the extractor drops the others first).
"""

from __future__ import annotations

import torch
from torch import nn

from ._gradients import SobelGradient
from ._patch_pyramid import PatchPyramid


def _valid(lafs: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) → (N,): finite, with a finite nonzero determinant: kornia 0.9's ``laf_is_valid``, written
    here because kornia 0.8, which ``pyproject.toml`` allows, has none."""
    det = torch.linalg.det(lafs[:, :, :2])
    return torch.isfinite(lafs).flatten(1).all(1) & torch.isfinite(det) & (det != 0)


class AffineShapeStep(nn.Module):
    """One Baumberg step: each frame's ellipse from the second-moment matrix of the gradients in its
    upright patch, keeping the frame's centre, scale and orientation (kornia's
    ``LAFAffineShapeEstimator(patch_size)``). A frame whose shape comes out degenerate is kept as given."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        import kornia.feature as KF

        self.patch_size = patch_size
        self.estimator = KF.PatchAffineShapeEstimator(patch_size)
        self.estimator.gradient = SobelGradient()  # kornia's Sobel, without its slow small-batch convolution

    def forward(self, lafs: torch.Tensor, pyramid: PatchPyramid) -> torch.Tensor:
        import kornia.feature as KF

        if lafs.shape[0] == 0:
            return lafs
        frames = KF.make_upright(lafs[None])[0]  # (N, 2, 3)
        ellipse = self.estimator(pyramid.patches(frames, self.patch_size))[:, 0]  # (N, 3): a, b, c
        a, b, c = ellipse.unbind(1)
        det = a * c - b * b
        bad = (~torch.isfinite(ellipse).all(1) | ~torch.isfinite(det) | (a <= 0) | (c <= 0) | (det <= 0)
               | ~(a - (b / c.sqrt()).square() > 0))
        ellipse = torch.where(bad[:, None], ellipse.new_tensor([1.0, 0.0, 1.0]), ellipse)
        shape = KF.ellipse_to_laf(torch.cat([lafs[:, :, 2], ellipse], 1)[None])[0]  # (N, 2, 3)
        frame_shape = frames[:, :, :2] / KF.get_laf_scale(frames[None])[0]
        out = torch.cat([frame_shape @ shape[:, :, :2], lafs[:, :, 2:]], 2)
        bad |= ~_valid(out)
        out = torch.where(bad[:, None, None], lafs, out)
        out = KF.scale_laf(out[None], KF.get_laf_scale(lafs[None]) / KF.get_laf_scale(out[None]))
        out = KF.set_laf_orientation(out, KF.get_laf_orientation(lafs[None]))[0]
        return torch.where(bad[:, None, None], lafs, out)


class OrientationStep(nn.Module):
    """Turns each frame by the dominant gradient direction of its patch (kornia's ``LAFOrienter(patch_size)``
    with its default 36-bin ``PatchDominantGradientOrientation``)."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        import kornia.feature as KF

        self.patch_size = patch_size
        self.estimator = KF.PatchDominantGradientOrientation(patch_size)
        self.estimator.gradient = SobelGradient()

    def forward(self, lafs: torch.Tensor, pyramid: PatchPyramid) -> torch.Tensor:
        import kornia.feature as KF

        if lafs.shape[0] == 0:
            return lafs
        angles = self.estimator(pyramid.patches(lafs, self.patch_size)).view(1, -1)  # radians
        turned = torch.rad2deg(angles) + KF.get_laf_orientation(lafs[None]).view(1, -1)
        return KF.set_laf_orientation(lafs[None], turned[..., None, None])[0]
