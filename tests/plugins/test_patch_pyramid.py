"""``plugins/extractors/_patch_pyramid.py``: kornia's pyramid patches, from one pyramid for every size."""

from __future__ import annotations

import pytest
import torch

from reid_engine.plugins.extractors._patch_pyramid import PatchPyramid, level_sizes


def _image(h: int, w: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 1, h, w), 3, 1, 1)


def _frames(h: int, w: int, n: int = 300) -> torch.Tensor:
    """(n, 2, 3) frames of scales from 1 to ~80 px, some reaching past the border, some turned and sheared."""
    torch.manual_seed(1)
    centres = torch.rand(n, 2) * torch.tensor([w - 1.0, h - 1.0])
    linear = torch.randn(n, 2, 2) * torch.logspace(0, 1.9, n)[:, None, None]
    return torch.cat([linear, centres[:, :, None]], 2)


@pytest.mark.parametrize("patch_size", [19, 32])
@pytest.mark.parametrize("hw", [(345, 512), (70, 41), (25, 30)])
def test_patches_are_kornias(patch_size, hw):
    import kornia.feature as KF

    image, frames = _image(*hw), _frames(*hw)
    theirs = KF.extract_patches_from_pyramid(image, frames[None], patch_size)[0]
    ours = PatchPyramid(image, 19).patches(frames, patch_size)
    assert ours.shape == theirs.shape == (len(frames), 1, patch_size, patch_size)
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert ours.std() > 0.01  # not trivially equal


def test_one_pyramid_serves_every_size_from_its_own_levels():
    assert level_sizes(345, 512, 19) == [(345, 512), (172, 256), (86, 128), (43, 64), (21, 32)]
    assert level_sizes(345, 512, 32) == [(345, 512), (172, 256), (86, 128), (43, 64)]
    assert level_sizes(345, 512, 50) == [(345, 512), (172, 256), (86, 128)]
    assert level_sizes(20, 20, 32) == [(20, 20)]
    pyramid = PatchPyramid(_image(345, 512), 19)
    assert pyramid.sizes == level_sizes(345, 512, 19)
    with pytest.raises(ValueError, match="below the pyramid's smallest"):
        pyramid.patches(_frames(345, 512, 3), 16)


def test_a_non_finite_frame_gives_a_zero_patch_and_leaves_the_others():
    image, frames = _image(100, 120), _frames(100, 120, 4)
    frames[1, 0, 2] = float("nan")
    patches = PatchPyramid(image, 19).patches(frames, 19)
    assert torch.all(patches[1] == 0)
    assert torch.allclose(patches[[0, 2, 3]], PatchPyramid(image, 19).patches(frames[[0, 2, 3]], 19))
    assert PatchPyramid(image, 19).patches(frames[:0], 32).shape == (0, 1, 32, 32)


def test_only_one_grey_image():
    with pytest.raises(ValueError, match="one grey image"):
        PatchPyramid(torch.zeros(2, 1, 40, 40), 19)
