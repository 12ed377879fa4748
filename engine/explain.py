"""Evidence for the expert: draw what one pipeline matched between two photos.

:func:`draw_matches` puts the two images side by side at one height, joins the inlier
correspondences with lines coloured by match confidence, shades the matched regions (the
ellipse that a local affine frame maps the unit circle to, kornia convention
``LAF = [A | centre]``; circles when there are no frames) and writes a caption.
:func:`match_pair` runs one pipeline's matcher and scorer on a pair and keeps the scorer's
inlier set when the scorer has one (``inliers(f1, f2, matches) -> bool (M,)``); without it every
match counts as an inlier and the caption says so. :class:`ReportEvidence` makes the small
JPEGs of report.html and :func:`explain_files` does the work of ``reid-engine explain``.
"""

from __future__ import annotations

import functools
import io
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .errors import ReidError, UsageError
from .records import ImageRecord, LoadedImage, LocalFeatures, Matches, Prediction

__all__ = [
    "PairEvidence", "ReportEvidence", "Explained", "draw_matches", "draw_evidence", "match_pair",
    "save_png", "encode_jpeg", "explain_files",
]

_BG = (26, 28, 32)
_TEXT = (236, 238, 241)
_MUTED = (165, 171, 181)
_OUTLIER = (215, 215, 215)
_MASK = (255, 0, 200)
_GAP = 8
_CAPTION_H = 48
MAX_LINES_DRAWN = 120  # inlier lines; every inlier region is drawn
MAX_OUTLIERS_DRAWN = 400
# the blue end of turbo is too dark to see on a grey seal: confidences use 15-100 % of the map
_CMAP_LOW = 0.15


# --------------------------------------------------------------------------------------------
# drawing


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
    import cv2

    rgb1, mask1 = _rgb_and_mask(img1, "img1")
    rgb2, mask2 = _rgb_and_mask(img2, "img2")
    n = len(matches)
    inliers_known = inliers is not None
    inl = np.ones(n, bool) if inliers is None else np.asarray(inliers, bool).reshape(-1)
    if inl.shape != (n,):
        raise ValueError(f"inliers has {inl.size} values for {n} matches; pass one bool per match")
    if outliers not in ("faint", "hidden"):
        raise ValueError(f"outliers={outliers!r}: choose 'faint' or 'hidden'")

    # layout: one height for both, the whole width bounded
    (h1, w1), (h2, w2) = rgb1.shape[:2], rgb2.shape[:2]
    height = float(min(max(h1, h2), max(16, max_height - _CAPTION_H)))
    width = w1 * height / h1 + _GAP + w2 * height / h2
    if width > max_width:
        height *= (max_width - _GAP) / (width - _GAP)
    height = max(16, int(height))
    nw1, nw2 = max(1, round(w1 * height / h1)), max(1, round(w2 * height / h2))
    canvas = np.empty((_CAPTION_H + height, nw1 + _GAP + nw2, 3), np.uint8)
    canvas[:] = _BG
    x2 = nw1 + _GAP
    panels = [(rgb1, mask1, 0, nw1), (rgb2, mask2, x2, nw2)]
    for rgb, mask, x0, nw in panels:
        interp = cv2.INTER_AREA if nw < rgb.shape[1] else cv2.INTER_LINEAR
        canvas[_CAPTION_H:, x0:x0 + nw] = cv2.resize(rgb, (nw, height), interpolation=interp)

    # correspondences in canvas pixels
    pts1, lin1 = _to_canvas(f1, rgb1.shape[:2], (height, nw1), (0, _CAPTION_H))
    pts2, lin2 = _to_canvas(f2, rgb2.shape[:2], (height, nw2), (x2, _CAPTION_H))
    i1, i2 = matches.idx[:, 0].astype(np.int64), matches.idx[:, 1].astype(np.int64)
    conf = np.asarray(matches.conf, np.float64).reshape(-1)
    order_in = np.flatnonzero(inl)
    order_in = order_in[np.argsort(conf[order_in], kind="stable")]  # most confident drawn last
    lo, hi = (float(conf[order_in].min()), float(conf[order_in].max())) if order_in.size else (0.0, 1.0)
    level = np.ones(n) if hi - lo < 1e-9 else np.clip((conf - lo) / (hi - lo), 0.0, 1.0)
    colours = _colours(level)

    # matched regions: filled ellipses blended once, alpha by confidence, then their outlines
    if order_in.size:
        layer = np.zeros_like(canvas)
        alpha = np.zeros(canvas.shape[:2], np.float32)
        radius = max(3.0, 0.012 * height)
        shapes = [_ellipses(f1.lafs, i1[order_in], lin1, pts1, radius, height),
                  _ellipses(f2.lafs, i2[order_in], lin2, pts2, radius, height)]
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

    for rgb, mask, x0, nw in panels:
        if mask is not None:
            _outline(canvas, mask, x0, nw, height)

    # outliers: faint grey lines under the inliers
    order_out = np.flatnonzero(~inl)
    if outliers == "faint" and order_out.size:
        faint = canvas.copy()
        for m in _spread(order_out, MAX_OUTLIERS_DRAWN):
            cv2.line(faint, _fix(pts1[i1[m]]), _fix(pts2[i2[m]]), _OUTLIER, 1, cv2.LINE_AA, 4)
        cv2.addWeighted(faint, 0.35, canvas, 0.65, 0.0, dst=canvas)

    # inliers: coloured lines (translucent when there are many, so the regions show), end points as dots
    if order_in.size:
        few = order_in.size <= 60
        lines = canvas.copy()
        for m in _spread(order_in, MAX_LINES_DRAWN):
            cv2.line(lines, _fix(pts1[i1[m]]), _fix(pts2[i2[m]]), colours[m], 2 if few else 1, cv2.LINE_AA, 4)
        cv2.addWeighted(lines, 0.9 if few else 0.6, canvas, 0.1 if few else 0.4, 0.0, dst=canvas)
        for m in order_in:
            cv2.circle(canvas, _fix(pts1[i1[m]]), 2 * 16, colours[m], -1, cv2.LINE_AA, 4)
            cv2.circle(canvas, _fix(pts2[i2[m]]), 2 * 16, colours[m], -1, cv2.LINE_AA, 4)

    counts = [f"{n} match{'es' if n != 1 else ''}"]
    if inliers_known:
        counts.append(f"{int(inl.sum())} inlier{'s' if inl.sum() != 1 else ''}")
    elif n:
        counts.append("all drawn as inliers (the scorer gives no inlier set)")
    if order_in.size > MAX_LINES_DRAWN:
        counts.append(f"{MAX_LINES_DRAWN} lines drawn")
    line2 = " · ".join([s for s in (info,) if s] + counts)
    return _caption(canvas, title, line2, (lo, hi) if order_in.size else None)


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


def _ellipses(lafs: np.ndarray | None, rows: np.ndarray, lin: np.ndarray, pts: np.ndarray, radius: float,
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
        cv2.drawContours(canvas, contours, -1, _MASK, 2, cv2.LINE_AA, offset=(x0, _CAPTION_H))


@functools.lru_cache(maxsize=4)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: float) -> str:
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
    big, small = _font(15), _font(13)
    draw.text((10, 5), _fit(draw, title, big, width - 20), fill=_TEXT, font=big)
    draw.text((10, 26), _fit(draw, line2, small, width - 30 - legend_w), fill=_MUTED, font=small)
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


def save_png(path: Path, rgb: np.ndarray) -> Path:
    """Write uint8 RGB (H, W, 3) as PNG to ``path`` (parents created); returns ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(path, format="PNG")
    except OSError as exc:
        raise ReidError(f"{path}: cannot write the PNG ({exc.strerror or exc}); pass another --out") from None
    return path


def encode_jpeg(rgb: np.ndarray, quality: int = 78) -> bytes:
    """uint8 RGB (H, W, 3) as JPEG bytes (for data URIs)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# one pipeline on one pair


@dataclass
class PairEvidence:
    """What one pipeline found between two images.

    matches        Matches (M,) of the pipeline's matcher, f1 → f2
    inliers        bool (M,): the scorer's inlier set, or all True when it gives none
    inliers_known  whether the scorer gave an inlier set (``inliers(f1, f2, matches)``)
    score          the scorer's raw score of the pair (what the run fuses)
    """

    pipeline: str
    scorer: str
    matches: Matches
    inliers: np.ndarray
    inliers_known: bool
    score: float

    @property
    def n_inliers(self) -> int:
        return int(self.inliers.sum())

    def info(self) -> str:
        return f"{self.pipeline} · score {_fmt_score(self.score)}"


def _fmt_score(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else f"{value:.3f}"


def match_pair(pipeline, f1: LocalFeatures, f2: LocalFeatures) -> PairEvidence:
    """Match and score ``f1`` → ``f2`` with one :class:`~reid_engine.components.Pipeline`, as the run does."""
    matches = pipeline.matcher.obj.match(f1, f2)
    score = float(pipeline.scorer.obj.score(f1, f2, matches))
    name = pipeline.scorer.spec.name
    find = getattr(pipeline.scorer.obj, "inliers", None)
    if callable(find):
        inl = np.asarray(find(f1, f2, matches), bool).reshape(-1)
        if inl.shape != (len(matches),):
            raise ReidError(f"scorer {name!r}: inliers() returned {inl.size} values for {len(matches)} matches; "
                            "it must return one bool per match (fix or update the plugin)")
        return PairEvidence(pipeline.name, name, matches, inl, True, score)
    return PairEvidence(pipeline.name, name, matches, np.ones(len(matches), bool), False, score)


def draw_evidence(img1: LoadedImage | np.ndarray, img2: LoadedImage | np.ndarray, f1: LocalFeatures,
                  f2: LocalFeatures, evidence: PairEvidence, title: str = "", max_width: int = 1600) -> np.ndarray:
    """:func:`draw_matches` of a :class:`PairEvidence`, captioned with its pipeline and score."""
    return draw_matches(img1, img2, f1, f2, evidence.matches, evidence.inliers if evidence.inliers_known else None,
                        title, info=evidence.info(), max_width=max_width)


# --------------------------------------------------------------------------------------------
# report.html


class ReportEvidence:
    """report.html's match drawings: each query against its top ``top`` candidates, one pipeline.

    A context manager (it opens the gallery database for the feature cache the run just
    filled); called with a Prediction it returns ``(caption, JPEG bytes)`` per drawn candidate.
    Images are decoded again for drawing, as photographed (before preprocessing), and drawn at
    most ``max_width`` px wide as JPEG of ``quality`` (about 35 kB each on the demo's photos). ``queries`` / ``gallery`` map image_id → (record, image key).
    """

    def __init__(self, pipeline, db_path: Path, image_settings, queries: dict[str, tuple[ImageRecord, str]],
                 gallery: dict[str, tuple[ImageRecord, str]], top: int = 1, max_width: int = 720,
                 quality: int = 70) -> None:
        self.pipeline, self.db_path, self.image_settings = pipeline, Path(db_path), image_settings
        self.queries, self.gallery, self.top, self.max_width = queries, gallery, top, max_width
        self.quality = quality
        self.seconds = 0.0
        self._db = self._cache = None

    def __enter__(self) -> "ReportEvidence":
        from .database import GalleryDatabase
        from .features import FeatureCache

        self._db = GalleryDatabase(self.db_path)
        self._cache = FeatureCache(self._db)
        return self

    def __exit__(self, *exc) -> None:
        if self._db is not None:
            self._db.close()
        self._db = self._cache = None

    def __call__(self, prediction: Prediction) -> list[tuple[str, bytes]]:
        if self._cache is None or self.top <= 0 or prediction.image_id not in self.queries:
            return []
        t = time.perf_counter()
        try:
            record, key = self.queries[prediction.image_id]
            fq = self._features(key, record)
            query_image = self._display(record)
            out = []
            for c in sorted(prediction.candidates, key=lambda c: c.rank)[: self.top]:
                if c.gallery_image_id not in self.gallery:
                    continue
                g_record, g_key = self.gallery[c.gallery_image_id]
                fg = self._features(g_key, g_record)
                evidence = match_pair(self.pipeline, fq, fg)
                title = f"query {prediction.image_id}  vs  #{c.rank} {c.identity} ({c.gallery_image_id})"
                rgb = draw_evidence(query_image, self._display(g_record), fq, fg, evidence, title, self.max_width)
                caption = (f"#{c.rank} {c.identity}: {evidence.n_inliers if evidence.inliers_known else len(evidence.matches)}"
                           f" {'inliers' if evidence.inliers_known else 'matches'} ({evidence.pipeline})")
                out.append((caption, encode_jpeg(rgb, self.quality)))
            return out
        finally:
            self.seconds += time.perf_counter() - t

    def _features(self, key: str, record: ImageRecord) -> LocalFeatures:
        f = self._cache.get(key, self.pipeline.extractor)
        if f is None:
            raise ReidError(f"{record.path}: no cached {self.pipeline.extractor.spec.name} features in {self.db_path}")
        return f

    def _display(self, record: ImageRecord) -> LoadedImage:
        from .images import read_image

        return read_image(record, self.image_settings.max_side, self.image_settings.min_side)


# --------------------------------------------------------------------------------------------
# reid-engine explain


@dataclass
class Explained:
    """One drawing written by :func:`explain_files`."""

    path: Path
    evidence: PairEvidence


def explain_files(query: str, gallery: str, profile, table, out: Path, *, pipeline: str | None = None,
                  db: Path | None = None, device: str = "cpu", max_width: int = 1600) -> list[Explained]:
    """Draw the matches of ``query`` against ``gallery`` for the profile's pipelines.

    ``query`` / ``gallery`` are image files; with ``db`` the gallery may also be an enrolled
    image_id, and the database's feature cache is used (and filled), else features are computed
    in a throw-away cache. With ``pipeline`` only that pipeline is drawn, to ``out``; else every
    pipeline of the profile, to ``out`` when there is one and to ``OUT-PIPELINE.png`` each when
    there are several.
    """
    from .components import build_components
    from .database import GalleryDatabase
    from .features import FeatureCache, ensure_features
    from .images import read_image
    from .pipeline import image_loader

    names = [p.name for p in profile.pipelines]
    if not names:
        raise UsageError(f"{profile.source}: profile {profile.name!r} has no [[pipelines]]; explain draws the "
                         "matches of a local-matching pipeline, so pick a profile that has one")
    if pipeline is not None and pipeline not in names:
        raise UsageError(f"--pipeline {pipeline!r}: profile {profile.name!r} has no such pipeline; "
                         f"choose one of: {', '.join(names)}")
    if db is not None and not Path(db).is_file():
        raise UsageError(f"--db {db}: no such gallery database; pass the file a run or enroll wrote, or leave --db out")
    out = Path(out)
    drawn = [n for n in names if pipeline is None or n == pipeline]
    targets = [out] if len(drawn) == 1 else [out.with_name(f"{out.stem}-{n}{out.suffix or '.png'}") for n in drawn]

    with tempfile.TemporaryDirectory(prefix="reid-explain-") as tmp, \
            GalleryDatabase(Path(db) if db is not None else Path(tmp) / "explain.db") as database:
        enrolled = database.gallery() if db is not None else []
        q_record, q_hash = _resolve(query, "QUERY", enrolled, db)
        g_record, g_hash = _resolve(gallery, "GALLERY_IMAGE", enrolled, db)
        components = build_components(profile, table, device)
        chosen = [p for p in components.pipelines if p.name in drawn]
        cache = FeatureCache(database)
        extractors = list({p.extractor.cache_id: p.extractor for p in chosen}.values())
        load = image_loader(components, profile)
        keys = []
        for record, chash in ((q_record, q_hash), (g_record, g_hash)):
            errors: list = []
            found = ensure_features([(record, chash)], extractors, cache, load, errors)
            if errors:
                err = errors[0]
                raise (UsageError if err.stage == "decode" else ReidError)(err.reason)
            keys.append(found[record.image_id])
        settings = profile.image
        images = [read_image(r, settings.max_side, settings.min_side) for r in (q_record, g_record)]
        title = f"query {_label(q_record)}  vs  gallery {_label(g_record)}"
        written = []
        for p, target in zip(chosen, targets):
            f1, f2 = cache.get(keys[0], p.extractor), cache.get(keys[1], p.extractor)
            if f1 is None or f2 is None:
                raise ReidError(f"cached {p.extractor.spec.name} features vanished from {database.blob_dir}; run again")
            evidence = match_pair(p, f1, f2)
            save_png(target, draw_evidence(images[0], images[1], f1, f2, evidence, title, max_width))
            written.append(Explained(target, evidence))
    return written


def _label(record: ImageRecord) -> str:
    name = Path(record.path).name
    extra = f" ({record.identity})" if record.identity else ""
    return (name if record.image_id == Path(name).stem else f"{record.image_id} [{name}]") + extra


def _resolve(arg: str, role: str, enrolled: Sequence, db: Path | None) -> tuple[ImageRecord, str | None]:
    """An argument as (record, known content hash): an image file, or an enrolled image_id."""
    from .pipeline import gallery_record

    path = Path(arg)
    if path.is_file():
        resolved = str(path.resolve())
        for g in enrolled:  # an enrolled file keeps its bbox / mask / identity
            if g.path == resolved:
                return gallery_record(g), None
        return ImageRecord(image_id=path.stem, path=path), None
    for g in enrolled:
        if g.image_id == arg:
            return gallery_record(g), g.content_hash
    if path.is_dir():
        raise UsageError(f"{role} {arg}: is a folder; pass one image file")
    where = f", and no image enrolled in {db} has that image_id" if db is not None else ""
    raise UsageError(f"{role} {arg}: no such file{where}; pass an image file path"
                     + ("" if db is not None else " (or, with --db, an enrolled image_id)"))
