"""Decoding photos safely: EXIF rotation, greyscale, 16-bit, alpha, huge and tiny images.

Every failure is an :class:`ImageDecodeError` whose message says what is wrong with the file
and what to do; the pipeline turns it into a row of ``errors.csv`` and goes on.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFile, ImageOps, UnidentifiedImageError

from reid_engine.errors import ImageDecodeError
from reid_engine.records import ImageRecord, LoadedImage
from reid_engine.store.database import content_hash
from reid_engine.store.features import not_a_regular_file

# Photos of 12000 px and more are legitimate here; they are reduced on load. The cap only
# guards against decompression bombs (files that claim absurd sizes).
MAX_PIXELS = 500_000_000
ImageFile.LOAD_TRUNCATED_IMAGES = False






def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode → uint8 (H, W, 3). 16-bit and float images are stretched to 8 bits."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = np.percentile(arr, [0.5, 99.5]) if arr.size else (0.0, 1.0)
        if hi <= lo:
            hi = lo + 1.0
        arr = np.clip((arr - lo) / (hi - lo), 0, 1) * 255.0
        grey = arr.astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (128, 128, 128, 255))
        img = Image.alpha_composite(background, img)
    return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy


def not_an_image(name: str) -> str:
    return f"{name}: not an image Pillow can read; convert it to JPEG or PNG"


def check_decodable(data: bytes, name: str) -> None:
    """Refuse bytes that are no image Pillow can read (header and structure, without decoding the
    pixels): an ImageDecodeError naming ``name``. Enrolment calls it, so that what cannot be
    decoded is never counted as enrolled."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except UnidentifiedImageError:
        raise ImageDecodeError(not_an_image(name)) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds for a broken file
        raise ImageDecodeError(f"{name}: truncated or corrupt image file ({exc}); re-copy or re-export it") from None


def decode_image(data: bytes, name: str, max_side: int = 1600, min_side: int = 32) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode image bytes to uint8 RGB (H, W, 3) with the longer side ≤ ``max_side``.

    Returns the array and the original (H, W) after EXIF rotation.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = MAX_PIXELS
            img = Image.open(io.BytesIO(data))
            w0, h0 = img.size
            if img.format == "JPEG" and max(w0, h0) > 2 * max_side:
                img.draft("RGB", (max_side, max_side))  # fast reduced decode of huge JPEGs
            img.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        if isinstance(exc, UnidentifiedImageError):
            raise ImageDecodeError(not_an_image(name)) from None
        raise ImageDecodeError(f"{name}: image claims an implausible size ({exc}); re-export it") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{name}: truncated or corrupt image file ({exc}); re-copy or re-export it") from None
    try:
        swapped = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        img = ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - broken EXIF must not lose the photo
        swapped = False
    original_hw = (w0, h0) if swapped else (h0, w0)
    if min(img.size) < min_side:
        raise ImageDecodeError(
            f"{name}: image is too small ({img.size[0]}x{img.size[1]} px); at least {min_side} px on the shorter side is needed"
        )
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        new = (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale)))
        if img.mode not in ("RGB", "L", "RGBA", "LA"):
            img = Image.fromarray(_to_rgb(img))
        img = img.resize(new, Image.Resampling.LANCZOS if img.mode in ("RGB", "L") else Image.Resampling.BILINEAR)
    return _to_rgb(img), original_hw


def read_image(record: ImageRecord, max_side: int = 1600, min_side: int = 32) -> LoadedImage:
    """Read, hash and decode the photo of ``record``, with its mask from the manifest if any."""
    path = Path(record.path)
    special = not_a_regular_file(path)
    if special:
        raise ImageDecodeError(special)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError(f"{path}: file not found; check the path in the manifest") from None
    except IsADirectoryError:
        raise ImageDecodeError(f"{path}: is a folder, not an image file") from None
    except PermissionError:
        raise ImageDecodeError(f"{path}: permission denied; make the file readable") from None
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise ImageDecodeError(f"{path}: file is empty; re-copy it")
    rgb, original_hw = decode_image(data, str(path), max_side, min_side)
    mask = manifest_mask(record, rgb.shape[:2], original_hw)
    return LoadedImage(record=record, rgb=rgb, mask=mask, content_hash=content_hash(data), original_hw=original_hw)


def manifest_mask(record: ImageRecord, hw: tuple[int, int], original_hw: tuple[int, int]) -> np.ndarray | None:
    """The animal's mask from the manifest (mask_path, segmentation polygon/RLE or bbox) at ``hw``.

    Coordinates in the manifest refer to the original (EXIF-upright) image. Returns bool (H, W)
    or None when the manifest gives nothing.
    """
    h, w = hw
    sy, sx = h / original_hw[0], w / original_hw[1]
    if record.mask_path is not None:
        try:
            with Image.open(record.mask_path) as m:
                m = m.convert("L").resize((w, h), Image.Resampling.NEAREST)
                return np.asarray(m) > 0
        except (OSError, UnidentifiedImageError) as exc:
            raise ImageDecodeError(f"{record.mask_path}: mask of {record.image_id} cannot be read ({exc})") from None
    if record.segmentation:
        return _segmentation_mask(record, (h, w), (sy, sx))
    if record.bbox is not None:
        x, y, bw, bh = record.bbox
        mask = np.zeros((h, w), bool)
        x0, y0 = max(0, int(round(x * sx))), max(0, int(round(y * sy)))
        x1, y1 = min(w, int(round((x + bw) * sx))), min(h, int(round((y + bh) * sy)))
        if x1 <= x0 or y1 <= y0:
            raise ImageDecodeError(f"{record.path}: bbox {record.bbox} of {record.image_id} lies outside the image")
        mask[y0:y1, x0:x1] = True
        return mask
    return None


def _segmentation_mask(record: ImageRecord, hw: tuple[int, int], scale: tuple[float, float]) -> np.ndarray:
    """COCO polygon(s) ``[[x, y, ...], ...]`` or uncompressed RLE ``{"size": [h, w], "counts": [...]}``."""
    h, w = hw
    sy, sx = scale
    try:
        seg = json.loads(record.segmentation or "")
    except json.JSONDecodeError:
        raise ImageDecodeError(
            f"{record.path}: segmentation of {record.image_id} is not JSON (expected a COCO polygon list or RLE)"
        ) from None
    if isinstance(seg, dict) and isinstance(seg.get("counts"), list):
        rh, rw = seg["size"]
        flat = np.zeros(rh * rw, bool)
        pos, value = 0, False
        for run in seg["counts"]:
            flat[pos : pos + run] = value
            pos += run
            value = not value
        full = flat.reshape(rw, rh).T  # COCO RLE is column-major
        img = Image.fromarray(full.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)
        return np.asarray(img) > 0
    if isinstance(seg, list) and seg and isinstance(seg[0], (int, float)):
        seg = [seg]
    if not isinstance(seg, list) or not all(isinstance(p, list) and len(p) >= 6 for p in seg):
        raise ImageDecodeError(
            f"{record.path}: segmentation of {record.image_id} must be COCO polygons or uncompressed RLE "
            "(compressed RLE strings are not supported; use mask_path instead)"
        )
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in seg:
        pts = [(poly[i] * sx, poly[i + 1] * sy) for i in range(0, len(poly) - 1, 2)]
        draw.polygon(pts, fill=255)
    return np.asarray(canvas) > 0
