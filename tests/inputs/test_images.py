"""Decoding bad and unusual photos: each failure is one clear message naming the file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from reid_engine.errors import ImageDecodeError
from reid_engine.inputs.images import read_image
from reid_engine.records import ImageRecord
from tests.conftest import write_image


def _record(path, **kw):
    return ImageRecord(image_id=path.stem, path=path, **kw)


def _pattern(h, w):
    rng = np.random.default_rng(0)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def test_exif_rotation_is_applied(tmp_path):
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :10] = 255  # bright band on the left
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    loaded = read_image(_record(path))
    assert loaded.rgb.shape == (80, 40, 3)
    assert loaded.original_hw == (80, 40)
    assert loaded.rgb[:10].mean() > 200  # band now on top


def test_greyscale_16bit_alpha_and_palette_become_rgb(tmp_path):
    grey = write_image(tmp_path / "grey.png", (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8))
    deep = tmp_path / "deep.png"
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(deep)
    alpha = write_image(tmp_path / "alpha.png", np.dstack([_pattern(64, 64), np.full((64, 64), 128, np.uint8)]))
    pal = tmp_path / "pal.gif"
    Image.fromarray(_pattern(64, 64)).convert("P").save(pal)
    for path in (grey, deep, alpha, pal):
        loaded = read_image(_record(path))
        assert loaded.rgb.dtype == np.uint8 and loaded.rgb.shape == (64, 64, 3)
    assert read_image(_record(deep)).rgb.std() > 10  # 16-bit range was stretched, not clipped to black/white


def test_huge_images_are_reduced_on_load(tmp_path):
    path = tmp_path / "huge.jpg"
    Image.new("RGB", (12000, 3000), (90, 120, 60)).save(path, quality=70)
    loaded = read_image(_record(path), max_side=1600)
    assert max(loaded.rgb.shape[:2]) == 1600
    assert loaded.original_hw == (3000, 12000)


def test_tiny_image_is_refused_with_sizes(tmp_path):
    path = write_image(tmp_path / "tiny.png", _pattern(20, 20))
    with pytest.raises(ImageDecodeError, match=r"tiny.png.*too small \(20x20 px\)"):
        read_image(_record(path))


@pytest.mark.parametrize("name,content,message", [
    ("notes.jpg", b"this is not a picture", "not an image"),
    ("empty.jpg", b"", "empty"),
])
def test_non_images_are_named(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=message) as info:
        read_image(_record(path))
    assert name in str(info.value)


def test_truncated_jpeg_is_named(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(_pattern(200, 200)).save(buffer, format="JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="cut.jpg.*truncated or corrupt"):
        read_image(_record(path))


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="gone.jpg: file not found"):
        read_image(_record(tmp_path / "gone.jpg"))


def test_bbox_and_mask_from_manifest(tmp_path):
    path = write_image(tmp_path / "a.png", _pattern(100, 200))
    loaded = read_image(_record(path, bbox=(50, 10, 100, 50)))
    assert loaded.mask is not None and loaded.mask.sum() == 100 * 50
    mask_path = write_image(tmp_path / "m.png", np.pad(np.full((50, 100), 255, np.uint8), ((25, 25), (50, 50))))
    loaded = read_image(_record(path, mask_path=mask_path))
    assert loaded.mask.sum() == 100 * 50
    poly = read_image(_record(path, segmentation="[[0, 0, 100, 0, 100, 100, 0, 100]]"))
    assert 9000 < poly.mask.sum() < 11000


def test_content_hash_is_of_the_bytes(tmp_path):
    a = write_image(tmp_path / "a.png", _pattern(64, 64))
    b = tmp_path / "b.png"
    b.write_bytes(a.read_bytes())
    assert read_image(_record(a)).content_hash == read_image(_record(b)).content_hash
