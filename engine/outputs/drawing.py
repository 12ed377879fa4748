"""Pure drawing of matches between two photos: no plugins, no database, no pipeline.

:func:`draw_matches` puts the two images side by side at one height, joins the inlier
correspondences with lines coloured by match confidence (turbo colour map), shades the matched
regions (the ellipse that a local affine frame maps the unit circle to, kornia convention
``LAF = [A | centre]``; circles when there are no frames) and writes a caption.
:func:`save_png` writes a drawing (PNG or JPEG by suffix, atomically) and :func:`encode_jpeg`
makes the bytes of a data URI. What is matched is the business of :mod:`reid_engine.scoring.pairs` and :mod:`reid_engine.outputs.evidence`.
"""

from __future__ import annotations

import functools
import io
import math
import os
import secrets
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from reid_engine.errors import ReidError, UsageError
from reid_engine.records import LoadedImage, LocalFeatures, Matches

__all__ = ["draw_matches", "save_png", "encode_jpeg", "image_format", "IMAGE_FORMATS", "MAX_LINES_DRAWN",
           "MAX_OUTLIERS_DRAWN"]

_BG = (26, 28, 32)
_TEXT = (236, 238, 241)
_MUTED = (165, 171, 181)
_OUTLIER = (215, 215, 215)
_MASK = (255, 0, 200)
_GAP = 8
CAPTION_HEIGHT = 48
MAX_LINES_DRAWN = 120  # inlier lines; every inlier region is drawn
MAX_OUTLIERS_DRAWN = 400
# the blue end of turbo is too dark to see on a grey seal: confidences use 15-100 % of the map
_CMAP_LOW = 0.15


def draw_matches(
    img1: LoadedImage | np.ndarray,
    img2: LoadedImage | np.ndarray,
    f1: LocalFeatures,
    f2: LocalFeatures,
    matches: Matches,
    inliers: np.ndarray | None = None,
    title: str = "",
    *,
    info: str = "",
    max_width: int = 1600,
    max_height: int = 900,
    outliers: Literal["faint", "hidden"] = "faint",
) -> np.ndarray:
    """Both images side by side with their matches drawn; uint8 RGB (H, W, 3), W ≤ ``max_width``.

    img1, img2  LoadedImage (its mask, if any, is outlined) or uint8 (H, W, 3) / (H, W)
    f1, f2      their LocalFeatures; kpts (N, 2) and lafs (N, 2, 3) are in ``f.image_hw``
                pixels and are rescaled to the image drawn
    matches     idx (M, 2) rows of f1 / f2, conf (M,)
    inliers     bool (M,), or None: every match is drawn as an inlier and the caption says so
    title       first caption line; ``info`` (e.g. pipeline and score) starts the second, which
                goes on with the match and inlier counts and a colour key of the confidence
    outliers    "faint": thin translucent grey lines (at most 400); "hidden": not drawn

    Inliers are lines coloured by confidence (turbo colour map, stretched over the pair's
    inlier confidences) between the two region centres (at most 120 lines, evenly spread over
    the confidences; the caption says so), and their regions are ellipses filled more opaquely
    the more confident the match. Empty matches draw the two images alone.
    """
    rgb1, mask1 = _rgb_and_mask(img1, "img1")
    rgb2, mask2 = _rgb_and_mask(img2, "img2")
    n = len(matches)
    inl = np.ones(n, bool) if inliers is None else np.asarray(inliers, bool).reshape(-1)
    if inl.shape != (n,):
        raise ValueError(f"inliers has {inl.size} values for {n} matches; pass one bool per match")
    if outliers not in ("faint", "hidden"):
        raise ValueError(f"outliers={outliers!r}: choose 'faint' or 'hidden'")

    canvas, panels, height = _side_by_side(rgb1, mask1, rgb2, mask2, max_width, max_height)
    (_, _, _, nw1), (_, _, x2, nw2) = panels
    # correspondences in canvas pixels
    pts1, lin1 = _to_canvas(f1, rgb1.shape[:2], (height, nw1), (0, CAPTION_HEIGHT))
    pts2, lin2 = _to_canvas(f2, rgb2.shape[:2], (height, nw2), (x2, CAPTION_HEIGHT))
    i1, i2 = matches.idx[:, 0].astype(np.int64), matches.idx[:, 1].astype(np.int64)
    conf = np.asarray(matches.conf, np.float64).reshape(-1)
    order_in = np.flatnonzero(inl)
    order_in = order_in[np.argsort(conf[order_in], kind="stable")]  # most confident drawn last
    lo, hi = (float(conf[order_in].min()), float(conf[order_in].max())) if order_in.size else (0.0, 1.0)
    level = np.ones(n) if hi - lo < 1e-9 else np.clip((conf - lo) / (hi - lo), 0.0, 1.0)
    colours = _colours(level)

    if order_in.size:
        shapes = [laf_ellipses(f1.lafs, i1[order_in], lin1, pts1, max(3.0, 0.012 * height), height),
                  laf_ellipses(f2.lafs, i2[order_in], lin2, pts2, max(3.0, 0.012 * height), height)]
        _draw_regions(canvas, order_in, shapes, colours, level)
    for rgb, mask, x0, nw in panels:
        if mask is not None:
            _outline(canvas, mask, x0, nw, height)
    ends1, ends2 = pts1[i1], pts2[i2]  # (M, 2) line ends of every match
    order_out = np.flatnonzero(~inl)
    if outliers == "faint" and order_out.size:
        _draw_outlier_lines(canvas, order_out, ends1, ends2)
    if order_in.size:
        _draw_inlier_lines(canvas, order_in, ends1, ends2, colours)
    line2 = " · ".join([s for s in (info,) if s] + _counts(n, inl, inliers is not None, order_in.size))
    return _caption(canvas, title, line2, (lo, hi) if order_in.size else None)


def _side_by_side(rgb1: np.ndarray, mask1: np.ndarray | None, rgb2: np.ndarray, mask2: np.ndarray | None,
                  max_width: int, max_height: int) -> tuple[np.ndarray, list[tuple], int]:
    """The canvas, uint8 (CAPTION_HEIGHT + h, w, 3), with both photos at one height h below the
    caption band and the whole width ≤ ``max_width``; panels (rgb, mask, x0, drawn width) and h."""
    import cv2

    (h1, w1), (h2, w2) = rgb1.shape[:2], rgb2.shape[:2]
    height = float(min(max(h1, h2), max(16, max_height - CAPTION_HEIGHT)))
    width = w1 * height / h1 + _GAP + w2 * height / h2
    if width > max_width:
        height *= (max_width - _GAP) / (width - _GAP)
    height = max(16, int(height))
    nw1, nw2 = max(1, round(w1 * height / h1)), max(1, round(w2 * height / h2))
    canvas = np.empty((CAPTION_HEIGHT + height, nw1 + _GAP + nw2, 3), np.uint8)
    canvas[:] = _BG
    panels = [(rgb1, mask1, 0, nw1), (rgb2, mask2, nw1 + _GAP, nw2)]
    for rgb, _, x0, nw in panels:
        interp = cv2.INTER_AREA if nw < rgb.shape[1] else cv2.INTER_LINEAR
        canvas[CAPTION_HEIGHT:, x0:x0 + nw] = cv2.resize(rgb, (nw, height), interpolation=interp)
    return canvas, panels, height


def _draw_regions(canvas: np.ndarray, order_in: np.ndarray, shapes: list, colours: list, level: np.ndarray) -> None:
    """Matched regions of the inliers (``order_in``, least confident first) in place: filled
    ellipses blended once with alpha by confidence, then their outlines."""
    import cv2

    layer = np.zeros_like(canvas)
    alpha = np.zeros(canvas.shape[:2], np.float32)
    for k, m in enumerate(order_in):
        colour, a = colours[m], 0.06 + 0.20 * float(level[m])
        for centres, axes, angles in shapes:
            args = (_fix(centres[k]), _fix(axes[k]), float(angles[k]), 0, 360)
            cv2.ellipse(layer, *args, colour, -1, cv2.LINE_AA, 4)
            cv2.ellipse(alpha, *args, a, -1, cv2.LINE_AA, 4)
    a3 = alpha[:, :, None]
    canvas[:] = (canvas * (1.0 - a3) + layer * a3).astype(np.uint8)
    rims = canvas.copy()
    for k, m in enumerate(order_in):
        for centres, axes, angles in shapes:
            cv2.ellipse(rims, _fix(centres[k]), _fix(axes[k]), float(angles[k]), 0, 360, colours[m], 1,
                        cv2.LINE_AA, 4)
    cv2.addWeighted(rims, 0.75, canvas, 0.25, 0.0, dst=canvas)


def _draw_outlier_lines(canvas: np.ndarray, order_out: np.ndarray, ends1: np.ndarray, ends2: np.ndarray) -> None:
    """Outliers as faint grey lines (at most MAX_OUTLIERS_DRAWN), under the inliers, in place."""
    import cv2

    faint = canvas.copy()
    for m in _spread(order_out, MAX_OUTLIERS_DRAWN):
        cv2.line(faint, _fix(ends1[m]), _fix(ends2[m]), _OUTLIER, 1, cv2.LINE_AA, 4)
    cv2.addWeighted(faint, 0.35, canvas, 0.65, 0.0, dst=canvas)


def _draw_inlier_lines(canvas: np.ndarray, order_in: np.ndarray, ends1: np.ndarray, ends2: np.ndarray,
                       colours: list) -> None:
    """Inliers as coloured lines (translucent when there are many, so the regions show) with
    their end points as dots, in place."""
    import cv2

    few = order_in.size <= 60
    lines = canvas.copy()
    for m in _spread(order_in, MAX_LINES_DRAWN):
        cv2.line(lines, _fix(ends1[m]), _fix(ends2[m]), colours[m], 2 if few else 1, cv2.LINE_AA, 4)
    cv2.addWeighted(lines, 0.9 if few else 0.6, canvas, 0.1 if few else 0.4, 0.0, dst=canvas)
    for m in order_in:
        cv2.circle(canvas, _fix(ends1[m]), 2 * 16, colours[m], -1, cv2.LINE_AA, 4)
        cv2.circle(canvas, _fix(ends2[m]), 2 * 16, colours[m], -1, cv2.LINE_AA, 4)


def _counts(n: int, inl: np.ndarray, inliers_known: bool, n_inliers: int) -> list[str]:
    """The caption's match and inlier counts."""
    counts = [f"{n} match{'es' if n != 1 else ''}"]
    if inliers_known:
        counts.append(f"{int(inl.sum())} inlier{'s' if inl.sum() != 1 else ''}")
    elif n:
        counts.append("all drawn as inliers (the scorer gives no inlier set)")
    if n_inliers > MAX_LINES_DRAWN:
        counts.append(f"{MAX_LINES_DRAWN} lines drawn")
    return counts


def _spread(rows: np.ndarray, most: int) -> np.ndarray:
    """At most ``most`` of ``rows``, evenly spaced (keeps the first and the last)."""
    if rows.size <= most:
        return rows
    return rows[np.unique(np.linspace(0, rows.size - 1, most).round().astype(np.int64))]


def _rgb_and_mask(img: LoadedImage | np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(img, LoadedImage):
        rgb, mask = img.rgb, img.mask
    else:
        rgb, mask = np.asarray(img), None
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or min(rgb.shape[:2]) < 1:
        raise ValueError(f"{name}: expected an RGB image (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[:, :, :3]), mask


def _to_canvas(f: LocalFeatures, image_hw: tuple[int, int], drawn_hw: tuple[int, int],
               offset: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, 2) in canvas pixels and the linear map (2, 2) from feature to canvas pixels."""
    fh, fw = f.image_hw if min(f.image_hw) > 0 else image_hw
    sx, sy = drawn_hw[1] / fw, drawn_hw[0] / fh
    pts = np.asarray(f.kpts, np.float64).reshape(-1, 2) * (sx, sy) + offset
    return pts, np.diag([sx, sy])


def laf_ellipses(lafs: np.ndarray | None, rows: np.ndarray, lin: np.ndarray, pts: np.ndarray, radius: float,
              height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres (K, 2), semi-axes (K, 2) and angles (K,) in degrees of the regions ``rows``.

    The ellipse of a frame ``[A | c]`` is ``c + A u`` for unit ``u``: its semi-axes are the
    singular values of A (in canvas pixels) along the left singular vectors.
    """
    centres = pts[rows]
    if lafs is None or len(lafs) == 0:
        return centres, np.full((len(rows), 2), radius), np.zeros(len(rows))
    a = lin @ np.asarray(lafs, np.float64)[rows, :, :2]
    u, s, _ = np.linalg.svd(a)
    s = np.clip(np.nan_to_num(s, nan=radius), 1.5, 0.35 * height)
    angles = np.degrees(np.arctan2(u[:, 1, 0], u[:, 0, 0]))
    return centres, s, np.nan_to_num(angles)


def _fix(xy) -> tuple[int, int]:
    """A point or size as OpenCV's 4-bit fixed point (``shift=4``)."""
    return int(round(float(xy[0]) * 16)), int(round(float(xy[1]) * 16))


@functools.lru_cache(maxsize=1)
def _turbo() -> np.ndarray:
    import cv2

    ramp = np.arange(256, dtype=np.uint8).reshape(-1, 1)
    return cv2.applyColorMap(ramp, cv2.COLORMAP_TURBO).reshape(256, 3)[:, ::-1].copy()


def _colours(level: np.ndarray) -> list[tuple[int, int, int]]:
    """RGB per match from its confidence level in [0, 1]."""
    idx = np.round((_CMAP_LOW + (1.0 - _CMAP_LOW) * level) * 255).astype(np.int64)
    return [tuple(int(v) for v in c) for c in _turbo()[idx]]


def _outline(canvas: np.ndarray, mask: np.ndarray, x0: int, nw: int, height: int) -> None:
    import cv2

    small = cv2.resize(mask.astype(np.uint8), (nw, height), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(small, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if contours:
        cv2.drawContours(canvas, contours, -1, _MASK, 2, cv2.LINE_AA, offset=(x0, CAPTION_HEIGHT))


@functools.lru_cache(maxsize=4)
def caption_font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _caption(canvas: np.ndarray, title: str, line2: str, conf_range: tuple[float, float] | None) -> np.ndarray:
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    width = canvas.shape[1]
    legend_w = 230 if conf_range is not None and width >= 560 else 0
    big, small = caption_font(15), caption_font(13)
    draw.text((10, 5), fit_text(draw, title, big, width - 20), fill=_TEXT, font=big)
    draw.text((10, 26), fit_text(draw, line2, small, width - 30 - legend_w), fill=_MUTED, font=small)
    if legend_w:
        lo, hi = conf_range
        bar_w, bar_h = 70, 9
        digits = 2 if hi - lo >= 0.01 else min(6, 1 - math.floor(math.log10(max(hi - lo, 1e-6))))
        lo_s, hi_s = f"{lo:.{digits}f}", f"{hi:.{digits}f}"
        x = width - 10 - draw.textlength(hi_s, font=small) - 6 - bar_w
        ramp = _turbo()[np.round(np.linspace(_CMAP_LOW, 1.0, bar_w) * 255).astype(np.int64)]
        bar = Image.fromarray(np.repeat(ramp[None], bar_h, axis=0).astype(np.uint8))
        image.paste(bar, (int(x), 30))
        draw.text((x + bar_w + 6, 26), hi_s, fill=_MUTED, font=small)
        x_lo = x - 6 - draw.textlength(lo_s, font=small)
        draw.text((x_lo, 26), lo_s, fill=_MUTED, font=small)
        label = "confidence"
        draw.text((x_lo - 8 - draw.textlength(label, font=small), 26), label, fill=_MUTED, font=small)
    return np.asarray(image).copy()


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def image_format(path: Path) -> str:
    """The Pillow format a drawing is written in, from the suffix of ``path`` (.png, .jpg, .jpeg).

    Any other suffix (or none) is a :class:`UsageError` naming ``--out``, the option that names
    the file in ``reid-engine explain``.
    """
    fmt = IMAGE_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        suffix = Path(path).suffix or "no suffix"
        raise UsageError(f"--out {path}: {suffix} is not an image type the drawing can be written as; "
                         f"end the name in {', '.join(IMAGE_FORMATS)}")
    return fmt


def save_png(path: Path, rgb: np.ndarray, jpeg_quality: int = 90) -> Path:
    """Write uint8 RGB (H, W, 3) to ``path`` (parents created) and return ``path``.

    The format follows the suffix (:func:`image_format`: PNG for .png, JPEG for .jpg / .jpeg;
    anything else is a UsageError). The file is written atomically: into a temp file in the
    same folder, then ``os.replace``-d over ``path``, so a reader never sees half a drawing and
    an interrupted write leaves ``path`` as it was and no temp file behind.
    """
    path = Path(path)
    fmt = image_format(path)
    options = {"quality": jpeg_quality, "optimize": True} if fmt == "JPEG" else {}
    image = Image.fromarray(rgb)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as handle:  # "x": never another writer's temp file; mode follows the umask
            image.save(handle, format=fmt, **options)
        os.replace(tmp, path)
    except OSError as exc:
        raise ReidError(f"{path}: cannot write the {fmt} ({exc.strerror or exc}); pass another --out") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def encode_jpeg(rgb: np.ndarray, quality: int = 78) -> bytes:
    """uint8 RGB (H, W, 3) as JPEG bytes (for data URIs)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()
