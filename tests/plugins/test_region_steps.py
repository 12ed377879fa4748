"""``plugins/extractors/_region_steps.py`` and the ``hessaff-rootsift`` extractor built on it: kornia's
affine shape and orientation, with patches from one shared pyramid."""

from __future__ import annotations

import numpy as np
import torch

from reid_engine.plugins.extractors._patch_pyramid import PatchPyramid
from reid_engine.plugins.extractors._region_steps import AffineShapeStep, OrientationStep


def _image() -> torch.Tensor:
    torch.manual_seed(2)
    return torch.nn.functional.avg_pool2d(torch.rand(1, 1, 180, 230), 5, 1, 2)


def _detected(image: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) upright Hessian regions of ``image``, found by kornia's detector."""
    import kornia.feature as KF
    from kornia.geometry import ConvQuadInterp3d, ScalePyramid

    detector = KF.ScaleSpaceDetector(200, mr_size=6.0, scale_pyr_module=ScalePyramid(3, 1.6, 32),
                                     subpix_module=ConvQuadInterp3d(10), minima_are_also_good=True).eval()
    responses, lafs = detector.detect(image, 200)
    return lafs[0][responses[0].abs() > 0]


def test_affine_shape_is_kornias():
    import kornia.feature as KF

    image = _image()
    frames = _detected(image)
    assert len(frames) > 50
    with torch.inference_mode():
        theirs = KF.LAFAffineShapeEstimator(19)(frames[None], image)[0]
        ours = AffineShapeStep(19)(frames, PatchPyramid(image, 19))
    assert torch.allclose(ours, theirs, atol=1e-3, rtol=1e-4)
    assert not torch.allclose(ours, frames, atol=1e-2)  # the shapes did change


def test_orientation_is_kornias():
    import kornia.feature as KF

    image = _image()
    frames = KF.LAFAffineShapeEstimator(19)(_detected(image)[None], image)[0]
    with torch.inference_mode():
        theirs = KF.LAFOrienter(19)(frames[None], image)[0]
        ours = OrientationStep(19)(frames, PatchPyramid(image, 19))
    assert torch.allclose(ours, theirs, atol=1e-3, rtol=1e-4)
    turned = KF.get_laf_orientation(ours[None]).flatten()
    assert turned.abs().max() > 30  # turned, not left upright


def test_steps_take_no_frames():
    pyramid = PatchPyramid(_image(), 19)
    empty = torch.zeros(0, 2, 3)
    assert AffineShapeStep(19)(empty, pyramid).shape == (0, 2, 3)
    assert OrientationStep(19)(empty, pyramid).shape == (0, 2, 3)


def test_extractor_finds_the_regions_and_descriptors_of_kornias_modules():
    """``hessaff-rootsift`` against the same detector with kornia's LAFAffineShapeEstimator, LAFOrienter and
    LAFDescriptor, each sampling its own pyramid (the extractor before the shared pyramid)."""
    import kornia.feature as KF

    from reid_engine.plugins.extractors._image import crop_to_mask, grey_tensor, mask_tensor
    from reid_engine.plugins.extractors.hessaff_rootsift import HessAffRootSift, HessAffRootSiftConfig
    from reid_engine.records import ImageRecord, LoadedImage

    rng = np.random.default_rng(3)
    rgb = (torch.nn.functional.avg_pool2d(torch.from_numpy(rng.random((1, 3, 300, 400), dtype=np.float32)), 7, 1, 3)
           [0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    mask = np.zeros((300, 400), bool)
    mask[40:260, 60:330] = True
    image = LoadedImage(ImageRecord(image_id="a", path="a.png"), rgb, mask, "0", (300, 400))
    config = HessAffRootSiftConfig(resize=320, max_keypoints=400, shape_patch_size=19, orientation_patch_size=19)
    extractor = HessAffRootSift(config, "cpu")
    ours = extractor.extract(image)

    grey, scale = grey_tensor(image, config.resize, "cpu")
    grey_mask = mask_tensor(image.mask, tuple(grey.shape[-2:]), "cpu")
    grey, grey_mask, offset = crop_to_mask(grey, grey_mask)
    with torch.inference_mode():
        responses, lafs = extractor.detector.detect(grey, grey_mask, config.max_keypoints)
        centres = lafs[:, :, 2].round().long()
        lafs = lafs[grey_mask[0, 0, centres[:, 1], centres[:, 0]] > 0]
        lafs = KF.LAFOrienter(19)(KF.LAFAffineShapeEstimator(19)(lafs[None], grey), grey)
        theirs = KF.LAFDescriptor(extractor.descriptor, patch_size=32)(grey, lafs)[0].numpy()
    lafs = lafs[0].clone()
    lafs[:, :, 2] += torch.tensor(offset, dtype=lafs.dtype)
    assert len(ours.kpts) == len(theirs) > 100
    assert np.allclose(ours.lafs, (lafs / scale).numpy(), atol=1e-2)
    assert np.allclose(ours.desc, theirs, atol=1e-3)


def test_a_flat_photo_or_animal_has_no_regions():
    """A flat image's Hessian is float rounding (kornia's detector found 47 "regions" on a grey photo)."""
    from reid_engine.plugins.extractors.hessaff_rootsift import HessAffRootSift, HessAffRootSiftConfig
    from reid_engine.records import ImageRecord, LoadedImage

    extractor = HessAffRootSift(HessAffRootSiftConfig(resize=320), "cpu")
    grey = np.full((200, 300, 3), 128, np.uint8)
    flat = LoadedImage(ImageRecord(image_id="a", path="a.png"), grey, None, "0", (200, 300))
    assert len(extractor.extract(flat)) == 0
    textured = (np.random.default_rng(0).random((200, 300, 3)) * 255).astype(np.uint8)
    textured[:, :150] = 128  # the animal stands on the flat half
    mask = np.zeros((200, 300), bool)
    mask[20:180, 10:60] = True
    image = LoadedImage(ImageRecord(image_id="b", path="b.png"), textured, mask, "0", (200, 300))
    assert len(extractor.extract(image)) == 0
    assert len(extractor.extract(LoadedImage(image.record, textured, None, "0", (200, 300)))) > 50
