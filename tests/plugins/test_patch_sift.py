"""``plugins/extractors/_patch_sift.py``: RootSIFT of patches equal to kornia's SIFTDescriptor."""

from __future__ import annotations

import pytest
import torch

from reid_engine.plugins.extractors._patch_sift import PatchRootSift


@pytest.mark.parametrize("patch_size", [32, 19, 41])
def test_descriptors_are_kornias(patch_size):
    import kornia.feature as KF

    torch.manual_seed(0)
    patches = torch.rand(300, 1, patch_size, patch_size)  # more than one chunk of 128
    patches[3] = 0.5  # a flat patch
    patches[4] = torch.linspace(0, 1, patch_size)  # a ramp: one angle bin
    ours = PatchRootSift(patch_size)(patches)
    theirs = KF.SIFTDescriptor(patch_size, rootsift=True)(patches)
    assert ours.shape == theirs.shape == (300, 128)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_no_patches_no_descriptors():
    assert PatchRootSift(32)(torch.zeros(0, 1, 32, 32)).shape == (0, 128)
