"""The extractors' image-tensor helpers: the crop around a mask."""

from __future__ import annotations

import torch

from reid_engine.image_tensors import crop_to_mask


def test_crop_to_mask_keeps_the_mask_box_and_its_margin():
    image = torch.arange(100 * 200, dtype=torch.float32).view(1, 1, 100, 200)
    mask = torch.zeros(1, 1, 100, 200)
    mask[..., 40:50, 90:120] = 1
    cropped, cropped_mask, (x0, y0) = crop_to_mask(image, mask, margin=0.1, align=1)  # 20 px: 10 % of 200
    assert (x0, y0) == (70, 20)
    assert cropped.shape[-2:] == (50, 70) and cropped_mask.shape == (1, 1, 50, 70)
    assert torch.equal(cropped, image[..., 20:70, 70:140])  # pixels, not a resample
    assert cropped_mask.sum() == mask.sum()
    aligned, _, (x0, y0) = crop_to_mask(image, mask, margin=0.1)  # starts on multiples of 32
    assert (x0, y0) == (64, 0) and aligned.shape[-2:] == (70, 76)
    assert cropped_mask.sum() == mask.sum()


def test_crop_to_mask_is_clipped_to_the_image_and_cuts_nothing_without_a_mask():
    image = torch.rand(1, 3, 60, 80)
    mask = torch.zeros(1, 1, 60, 80)
    mask[..., 0:5, 70:80] = 1
    cropped, _, (x0, y0) = crop_to_mask(image, mask, margin=0.1, align=1)
    assert (x0, y0) == (62, 0) and cropped.shape[-2:] == (13, 18)
    for m in (None, torch.zeros(1, 1, 60, 80)):
        same, _, offset = crop_to_mask(image, m)
        assert same is image and offset == (0, 0)
