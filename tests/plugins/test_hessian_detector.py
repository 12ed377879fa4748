"""``plugins/extractors/_hessian_detector.py``: kornia's Hessian scale-space detector, computed where the
extrema are."""

from __future__ import annotations

import pytest
import torch

from reid_engine.plugins.extractors._hessian_detector import HessianDetector, refine, strict_extrema


def _kornia(n: int):
    import kornia.feature as KF
    from kornia.geometry import ConvQuadInterp3d, ScalePyramid

    from reid_engine.plugins.extractors._gradients import BlobHessian

    return KF.ScaleSpaceDetector(n, mr_size=6.0, resp_module=BlobHessian(),
                                 scale_pyr_module=ScalePyramid(3, 1.6, 32, double_image=False),
                                 subpix_module=ConvQuadInterp3d(10), minima_are_also_good=True).eval()


def _image(h: int, w: int, seed: int = 0, flat_left: bool = False) -> torch.Tensor:
    torch.manual_seed(seed)
    image = torch.nn.functional.avg_pool2d(torch.rand(1, 1, h, w), 5, 1, 2)
    if flat_left:  # a plain background: every voxel of it ties with its neighbours
        image[..., : w // 2] = 0.5
    return image


def _mask(h: int, w: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    inside = ((x - w / 2) / (w / 3)) ** 2 + ((y - h / 2) / (h / 3)) ** 2 <= 1.0
    inside &= ~((x - w / 2).abs() < 6)  # a thin stripe cut out of the animal
    return inside.float()[None, None]


@pytest.mark.parametrize(("h", "w", "n", "masked", "flat_left"), [
    (240, 310, 400, True, False), (240, 310, 400, False, False), (97, 130, 2000, True, False),
    (70, 70, 50, False, False), (240, 310, 2000, False, True)])
def test_finds_kornias_regions(h, w, n, masked, flat_left):
    image = _image(h, w, seed=h, flat_left=flat_left)
    mask = _mask(h, w) if masked else None
    with torch.inference_mode():
        theirs_scores, theirs_frames = _kornia(n).detect(image, n, mask)
        filled = theirs_scores[0].abs() > 0
        scores, frames = HessianDetector().detect(image, mask, n)
    assert len(scores) == int(filled.sum()) > 5
    assert torch.allclose(frames, theirs_frames[0][filled], atol=1e-4)
    assert torch.allclose(scores, theirs_scores[0][filled], rtol=1e-5, atol=1e-9)
    assert bool((scores[:-1] >= scores[1:]).all())  # best first


def test_extrema_are_kornias_strict_ones_and_ties_are_not_extrema():
    from kornia.geometry.subpix import nms3d_minmax

    volume = torch.randn(5, 30, 40)
    volume[2, 10, 10] = volume[2, 10, 11] = 9.0  # a plateau at the top: neither is a strict maximum
    maxima, minima = strict_extrema(volume, None)
    theirs_max, theirs_min = nms3d_minmax(volume[None, None])
    assert torch.equal(maxima, theirs_max[0, 0].nonzero())
    assert torch.equal(minima, theirs_min[0, 0].nonzero())
    assert not ((maxima[:, 1] == 10) & (maxima[:, 2] == 10)).any()
    keep = torch.zeros(30, 40, dtype=torch.bool)
    keep[:, :20] = True
    kept, _ = strict_extrema(volume, keep)
    assert len(kept) and bool((kept[:, 2] < 20).all())


def test_refinement_is_kornias():
    from kornia.geometry.subpix import conv_quad_interp3d, nms3d

    torch.manual_seed(3)
    volume = torch.nn.functional.avg_pool3d(torch.randn(1, 1, 5, 60, 70), 3, 1, 1)[0, 0]
    mask = nms3d(volume[None, None], (3, 3, 3), True)
    extrema = mask[0, 0].nonzero()
    coords, values = refine(volume, extrema, 10)
    theirs_coords, theirs_values = conv_quad_interp3d(volume[None, None], 10, precomputed_nms_mask=mask)
    d, y, x = extrema.unbind(1)
    theirs = theirs_coords[0, 0][:, d, y, x]  # (3, M): level, x, y
    assert torch.allclose(coords, torch.stack([theirs[0], theirs[2], theirs[1]], 1), atol=1e-5)
    assert torch.allclose(values, theirs_values[0, 0, d, y, x], atol=1e-6)
    assert (coords - extrema).abs().max() > 0.1  # refined, not left on the grid
