"""``plugins/extractors/_gradients.py``: kornia's derivatives and Hessian response, computed faster."""

from __future__ import annotations

import pytest
import torch

from reid_engine.plugins.extractors._gradients import BlobHessian, diff_gradient


@pytest.mark.parametrize("shape", [(7, 1, 19, 19), (3, 1, 34, 21), (1, 1, 2, 2)])
def test_diff_gradient_is_kornias(shape):
    from kornia.filters import spatial_gradient

    torch.manual_seed(0)
    images = torch.rand(shape)
    dx, dy = diff_gradient(images)
    theirs = spatial_gradient(images, "diff")
    assert dx.shape == dy.shape == (shape[0], *shape[2:])
    assert torch.allclose(dx, theirs[:, 0, 0], atol=1e-7)
    assert torch.allclose(dy, theirs[:, 0, 1], atol=1e-7)


@pytest.mark.parametrize("sigmas", [None, torch.tensor([1.6, 2.0, 2.5])])
def test_blob_hessian_is_kornias(sigmas):
    import kornia.feature as KF

    torch.manual_seed(0)
    images = torch.rand(3, 1, 45, 38)
    images[1] = torch.linspace(0, 1, 38) ** 2  # a parabola along x: constant d2/dx2, no blob
    ours = BlobHessian()(images, sigmas)
    theirs = KF.BlobHessian()(images, sigmas)
    assert ours.shape == theirs.shape == (3, 1, 45, 38)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert ours.abs().max() > 1e-3  # not trivially zero


def test_detector_finds_kornias_regions():
    """The Hessian-affine detector with this response finds the very regions kornia's finds."""
    import kornia.feature as KF
    from kornia.geometry import ConvQuadInterp3d, ScalePyramid

    def detector(response):
        return KF.ScaleSpaceDetector(64, resp_module=response, scale_pyr_module=ScalePyramid(3, 1.6, 32),
                                     subpix_module=ConvQuadInterp3d(10), minima_are_also_good=True).eval()

    torch.manual_seed(1)
    image = torch.nn.functional.avg_pool2d(torch.rand(1, 1, 160, 200), 5, 1, 2)
    with torch.inference_mode():
        ours, ours_resp = detector(BlobHessian())(image)
        theirs, theirs_resp = detector(KF.BlobHessian())(image)
    assert ours.shape == theirs.shape and ours.shape[1] > 10
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)  # the scale fit amplifies rounding: 2e-5 of 74 px
    assert torch.allclose(ours_resp, theirs_resp, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("shape", [(7, 1, 19, 19), (2, 3, 17, 23), (1, 1, 1, 2)])
def test_sobel_gradient_is_kornias(shape):
    from kornia.filters import SpatialGradient

    from reid_engine.plugins.extractors._gradients import SobelGradient

    torch.manual_seed(0)
    images = torch.rand(shape)
    ours, theirs = SobelGradient()(images), SpatialGradient("sobel", 1)(images)
    assert ours.shape == theirs.shape == (shape[0], shape[1], 2, *shape[2:])
    assert torch.allclose(ours, theirs, atol=1e-6)
