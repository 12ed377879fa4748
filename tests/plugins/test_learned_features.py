"""ALIKED, DISK, LightGlue and fginn (and every extractor's crop to the mask) beyond the shared plugin contract: geometry, masks, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reid_engine.errors import UsageError
from reid_engine.records import ImageRecord, LoadedImage
from reid_engine.registry import PluginTable
from reid_engine.registry.spec import ConfigError

TABLE = PluginTable.discover()


def _build(kind, name, **options):
    spec = TABLE.get(kind, name)
    return spec.build(spec.make_config(options), "cpu")


def _texture(size=(240, 320), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[0] // 8, size[1] // 8, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((8, 8, 1), np.uint8)).astype(np.float32)
    yy, xx = np.mgrid[: size[0], : size[1]]
    big += (40 * np.sin(xx / 9.0 + yy / 13.0))[..., None]
    return np.clip(big, 0, 255).astype(np.uint8)


def _loaded(rgb, mask=None) -> LoadedImage:
    return LoadedImage(ImageRecord("x", "x.png"), rgb, mask, "0" * 64, rgb.shape[:2])


@pytest.mark.parametrize("name", ["aliked", "disk", "sift"])
def test_keypoints_are_reported_in_loaded_image_pixels_after_resize(name):
    rgb = _texture((240, 320))
    full = _build("extractor", name, resize=0, max_keypoints=256).extract(_loaded(rgb))
    half = _build("extractor", name, resize=160, max_keypoints=256).extract(_loaded(rgb))
    assert half.image_hw == (240, 320)
    # keypoints of the half-size pass span the full image, not its top-left quarter
    assert half.kpts[:, 0].max() > 200 and half.kpts[:, 1].max() > 150
    assert full.kpts[:, 0].max() > 200
    if name != "sift":  # fixed-size regions in network pixels grow in image pixels with the resize
        assert np.median(np.abs(half.lafs[:, 0, 0])) > 1.5 * np.median(np.abs(full.lafs[:, 0, 0]))


def test_aliked_mask_spends_the_whole_budget_inside_the_mask():
    rgb = _texture((240, 320))
    mask = np.zeros((240, 320), bool)
    mask[40:200, 60:200] = True
    f = _build("extractor", "aliked", max_keypoints=300).extract(_loaded(rgb, mask))
    assert len(f) == 300  # not 300 minus those that fell outside
    x, y = f.kpts[:, 0], f.kpts[:, 1]
    assert ((x >= 58) & (x <= 201) & (y >= 38) & (y <= 201)).all()


def _shifted_pair_and_another():
    """ALIKED features of a texture, of it shifted by (x 20, y 12) px, and of another texture."""
    rgb = _texture((240, 320), seed=1)
    extractor = _build("extractor", "aliked", max_keypoints=512)
    return (extractor.extract(_loaded(rgb)), extractor.extract(_loaded(np.roll(rgb, (12, 20), axis=(0, 1)))),
            extractor.extract(_loaded(_texture((240, 320), seed=7))))


def test_lightglue_recovers_a_known_shift_and_rejects_another_image():
    f1, f2, other = _shifted_pair_and_another()
    matcher = _build("matcher", "lightglue")
    m = matcher.match(f1, f2)
    assert len(m) > 100
    d = f2.kpts[m.idx[:, 1]] - f1.kpts[m.idx[:, 0]]
    good = np.abs(d - [20, 12]).max(axis=1) < 2.0
    assert good.mean() > 0.8
    assert len(matcher.match(f1, other)) < 0.2 * len(m)


def test_lightglue_in_bf16_finds_the_fp32_matches_of_a_known_shift():
    f1, f2, other = _shifted_pair_and_another()
    fp32, bf16 = _build("matcher", "lightglue"), _build("matcher", "lightglue", precision="bf16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    a, b = fp32.match(f1, f2), bf16.match(f1, f2)
    assert b.conf.dtype == np.float32 and len(b) > 0.9 * len(a)
    d = f2.kpts[b.idx[:, 1]] - f1.kpts[b.idx[:, 0]]
    assert (np.abs(d - [20, 12]).max(axis=1) < 2.0).mean() > 0.8
    shared = set(map(tuple, a.idx)) & set(map(tuple, b.idx))
    assert len(shared) > 0.8 * len(a)
    assert len(bf16.match(f1, other)) < 0.2 * len(b)
    with pytest.raises(ConfigError):
        TABLE.get("matcher", "lightglue").make_config({"precision": "fp8"})


def test_lightglue_keypoint_cap_returns_indices_of_the_full_sets():
    extractor = _build("extractor", "aliked", max_keypoints=600)
    rgb = _texture((240, 320), seed=2)
    f = extractor.extract(_loaded(rgb))
    m = _build("matcher", "lightglue", max_keypoints=200).match(f, f)
    assert 0 < len(m) <= 200
    strongest = set(np.argsort(-f.scores)[:200])
    assert set(m.idx[:, 0]) <= strongest and (m.idx[:, 0] == m.idx[:, 1]).mean() > 0.9


def test_lightglue_options_are_checked():
    with pytest.raises(ConfigError):
        TABLE.get("matcher", "lightglue").make_config({"features": "superpoint"})
    with pytest.raises(ValueError, match="depth_confidence"):
        _build("matcher", "lightglue", depth_confidence=1.5)


def test_fginn_matches_with_lafs_and_refuses_without():
    extractor = _build("extractor", "hessaff-rootsift")
    f = extractor.extract(_loaded(_texture()))
    matcher = _build("matcher", "fginn")
    assert len(matcher.match(f, f)) > 0.3 * len(f)
    f.lafs = None
    with pytest.raises(UsageError, match="affine frames"):
        matcher.match(f, f)


def test_lightglue_batched_pairs_give_the_single_pair_matches():
    extractor = _build("extractor", "aliked", max_keypoints=256)
    feats = [extractor.extract(_loaded(np.roll(_texture((200, 256), seed=3), (3 * k, 5 * k), axis=(0, 1))))
             for k in range(4)]
    assert len({len(f) for f in feats}) == 1  # top-k extraction: equal counts, so one batch
    matcher = _build("matcher", "lightglue", depth_confidence=-1, width_confidence=-1, batch_size=8, workers=1)
    batched = matcher.match_many(feats[:3], feats[1:])
    for (a, b), m in zip(zip(feats[:3], feats[1:]), batched):
        single = matcher.match(a, b)
        assert len(m) > 50 and np.array_equal(m.idx, single.idx)
        assert np.allclose(m.conf, single.conf, atol=1e-4)


def test_lightglue_pairs_matched_in_parallel_on_the_cpu_give_the_single_pair_matches():
    import torch

    extractor = _build("extractor", "aliked", max_keypoints=256)
    feats = [extractor.extract(_loaded(np.roll(_texture((200, 256), seed=3), (3 * k, 5 * k), axis=(0, 1))))
             for k in range(5)]
    matcher = _build("matcher", "lightglue", workers=3)
    threads = torch.get_num_threads()
    parallel = matcher.match_many(feats[:4], feats[1:])
    assert torch.get_num_threads() == threads  # restored after the workers
    for (a, b), m in zip(zip(feats[:4], feats[1:]), parallel):
        single = matcher.match(a, b)
        assert len(m) > 50 and np.array_equal(m.idx, single.idx)
        assert np.allclose(m.conf, single.conf, atol=1e-5)  # one thread or two: float rounding only
    with pytest.raises(ValueError, match="workers"):
        _build("matcher", "lightglue", workers=-1)


def test_lightglue_refuses_descriptors_of_another_kind():
    f = _build("extractor", "aliked", model="aliked-t16", max_keypoints=128).extract(_loaded(_texture()))
    assert f.desc.shape[1] == 64
    with pytest.raises(UsageError, match="128-d aliked descriptors"):
        _build("matcher", "lightglue").match(f, f)
    with pytest.raises(ValueError, match="max_keypoints"):
        _build("matcher", "lightglue", max_keypoints=-1)


def test_upright_sift_has_no_duplicate_keypoints():
    f = _build("extractor", "sift", upright=True).extract(_loaded(_texture()))
    assert len(f) > 20 and (f.lafs[:, 0, 1] == 0).all()
    assert len(np.unique(f.kpts.round(3), axis=0)) == len(f)
    m = _build("matcher", "smnn").match(f, f)
    assert len(m) > 0.9 * len(f)  # no twin descriptors to fail the ratio test


@pytest.mark.parametrize("name, options, min_cosine", [
    ("aliked", {}, 0.9), ("hessaff-rootsift", {}, 0.95),
    ("hesaffnet-hardnet", {"descriptor": "rootsift", "affine": False, "upright": True}, 0.95)])
def test_crop_to_mask_finds_the_regions_of_the_whole_image_pass(name, options, min_cosine):
    """Detecting on the mask's box (the default) gives the whole image's regions inside the
    mask, reported in the photo's pixels, not the crop's. ALIKED's descriptors differ a little
    more: its stride-32 features are upsampled with corners aligned to the image's size."""
    rgb = _texture((320, 480), seed=3)
    mask = np.zeros((320, 480), bool)
    mask[120:250, 230:400] = True
    cropped = _build("extractor", name, max_keypoints=200, **options).extract(_loaded(rgb, mask))
    whole = _build("extractor", name, max_keypoints=200, crop_to_mask=False, **options).extract(_loaded(rgb, mask))
    assert len(cropped) > 50
    x, y = cropped.kpts[:, 0], cropped.kpts[:, 1]
    assert ((x >= 228) & (x <= 401) & (y >= 118) & (y <= 251)).all()
    distance = np.linalg.norm(cropped.kpts[:, None] - whole.kpts[None], axis=2)
    nearest = distance.argmin(1)
    same_place = distance[np.arange(len(cropped)), nearest] < 1.0
    cosine = np.sum(cropped.desc * whole.desc[nearest], axis=1) / (
        np.linalg.norm(cropped.desc, axis=1) * np.linalg.norm(whole.desc[nearest], axis=1))
    assert same_place.mean() > 0.8
    assert np.median(cosine[same_place]) > min_cosine
