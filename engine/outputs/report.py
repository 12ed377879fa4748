"""A self-contained HTML report of a run: one row per query with its ranked candidates.

The report is a single file that opens from disk with no server and no network: the CSS and
the (optional) filter script are inline, thumbnails are inline base64 JPEG data URIs and a
Content-Security-Policy forbids any other resource. Every text is escaped.

Memory and size stay bounded: each image is decoded at reduced size where the format allows
(JPEG draft mode), shrunk to a thumbnail and dropped; the report is streamed to disk query by
query; each distinct image's thumbnail is written once, as a CSS class that every later use
refers to, so a gallery image shown for many queries costs its bytes only once. Match
drawings (optional, made by the caller one query at a time) are inline JPEGs in a collapsed
``<details>`` under their query's row.
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import math
import numbers
import os
import warnings
from base64 import b64encode
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image, ImageChops, ImageFilter, ImageOps

from reid_engine.records import NEW_INDIVIDUAL, ImageError, Prediction

__all__ = ["write_report"]

_JPEG_QUALITY = 80
_OUTLINE_RGB = (255, 0, 200)
_EXIF_ORIENTATION = 0x0112
_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def write_report(
    path: Path,
    predictions: Sequence[Prediction],
    *,
    title: str,
    summary: Mapping[str, object],
    errors: Sequence[ImageError] = (),
    thumb_px: int = 160,
    mask_outlines: bool = False,
    masks: Mapping[str, str | Path] | None = None,
    evidence: Callable[[Prediction], Sequence[tuple[str, bytes]]] | None = None,
) -> Path:
    """Write the HTML report to ``path`` (parents created) and return ``path``.

    ``summary`` is shown as small tables in the header: top-level scalar entries (run settings,
    counts, metrics) in one table, and every entry whose value is itself a mapping as a table
    of its own, titled by its key. Floats are shown with 3 decimals, NaN/None as a dash.

    One row per query, in the given order: the query thumbnail, image id, prediction, decision
    (known/new), calibrated score and -- when ``p.truth`` is set -- whether the prediction is
    correct; then its candidates left to right in rank order (thumbnail, rank, identity,
    score, gallery image id, pipeline scores). The candidate whose identity equals the truth is
    highlighted. Last, the table of ``errors`` (images that could not be used).

    ``thumb_px`` bounds the longer side of every thumbnail. An image that cannot be read is
    shown as a grey box saying "unreadable". With ``mask_outlines`` the outline of the
    foreground mask is drawn on each thumbnail: the mask file from ``masks`` (keyed by image
    id: query ``image_id`` / candidate ``gallery_image_id``; non-zero pixels are foreground,
    in the frame of the upright image) when there is one, else the image's own alpha channel
    when it has one; images with neither are shown as they are.

    ``evidence``, when given, is called with each prediction as its row is written and returns
    ``(caption, JPEG bytes)`` match drawings (see :class:`reid_engine.outputs.evidence.ReportEvidence`);
    they are shown under the row in a collapsed "match drawing" section that opens on click. A
    drawing that fails is replaced by a note saying why; the report is written regardless.
    """
    if thumb_px < 8:
        raise ValueError(f"thumb_px must be >= 8, got {thumb_px}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    thumbs = _ThumbWriter(thumb_px, mask_outlines, masks or {})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            _write_document(out, predictions, title, summary, errors, thumbs, evidence)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# --------------------------------------------------------------------------------------------
# thumbnails


class _ThumbWriter:
    """Makes each distinct thumbnail once and hands out the CSS class that shows it.

    The first time an image is used its ``<style>`` rule is emitted (returned to the caller to
    write just before the markup that uses it); afterwards only the class name is reused, so
    nothing but a small path -> class map is kept in memory.
    """

    def __init__(self, px: int, mask_outlines: bool, masks: Mapping[str, str | Path]) -> None:
        self.px = px
        self.mask_outlines = mask_outlines
        self.masks = masks
        self._cache: dict[tuple[str, str | None], tuple[str | None, str]] = {}

    def get(self, image_path: str, image_id: str) -> tuple[str | None, str, str]:
        """``(css_class or None if unreadable, style_rule_to_emit_or_'', reason)``."""
        mask = None
        if self.mask_outlines and image_id in self.masks:
            mask = str(self.masks[image_id])
        key = (str(image_path), mask)
        if key in self._cache:
            cls, reason = self._cache[key]
            return cls, "", reason
        try:
            data = _thumbnail_jpeg(str(image_path), self.px, self.mask_outlines, mask)
        except Exception as exc:  # noqa: BLE001 - any unreadable image becomes a placeholder
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self._cache[key] = (None, reason)
            return None, "", reason
        cls = f"t{len(self._cache)}"
        self._cache[key] = (cls, "")
        rule = f".{cls}{{background-image:url(data:image/jpeg;base64,{b64encode(data).decode('ascii')})}}"
        return cls, rule, ""


def _thumbnail_jpeg(image_path: str, px: int, mask_outlines: bool, mask_path: str | None) -> bytes:
    """Decode ``image_path`` at reduced size, fit it in ``px`` x ``px`` and encode as JPEG."""
    if not image_path:
        raise FileNotFoundError("no path")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(image_path) as im:
            raw_size = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION)
            im.draft(None, (px, px))  # JPEG: decode at 1/2..1/8 scale; no-op for other formats
            im = ImageOps.exif_transpose(im)
            rgb, alpha = _to_rgb(im, px)
            del im
        rgb.thumbnail((px, px), Image.Resampling.LANCZOS)
        if mask_outlines:
            outline_mask = None
            if mask_path is not None:
                outline_mask = _load_mask(mask_path, raw_size, orientation, rgb.size)
            elif alpha is not None:
                outline_mask = alpha.resize(rgb.size, Image.Resampling.BILINEAR).point(lambda v: 255 if v >= 128 else 0)
            if outline_mask is not None:
                _draw_outline(rgb, outline_mask)
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=_JPEG_QUALITY, optimize=True)
        return buf.getvalue()


def _to_rgb(im: Image.Image, px: int) -> tuple[Image.Image, Image.Image | None]:
    """An RGB image (transparent parts on white) and the alpha channel ("L") if there was one.

    Handles greyscale, 1-bit, palette (with or without transparency), CMYK, 16/32-bit integer
    and float images (contrast-stretched to 8 bits for display) and images with alpha.
    """
    mode = im.mode
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(im, px), None
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        alpha = rgba.getchannel("A")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba.convert("RGB"), mask=alpha)
        return background, alpha
    return (im if mode == "RGB" else im.convert("RGB")), None


def _high_depth_to_rgb(im: Image.Image, px: int) -> Image.Image:
    """16-bit / 32-bit int / float greyscale -> 8-bit RGB by a robust min-max stretch.

    The image is shrunk to the thumbnail size first, so the stretch works on a small array.
    """
    if im.mode != "F":
        im = im.convert("I")  # I;16, I;16B, ... -> 32-bit int, which every resampling filter takes
    im.thumbnail((px, px), Image.Resampling.BILINEAR)
    arr = np.asarray(im, dtype=np.float32)
    if arr.ndim == 3:  # e.g. multi-channel 16-bit read as (H, W, C): show the first channel
        arr = arr[..., 0]
    finite = arr[np.isfinite(arr)]
    if finite.size:
        lo, hi = np.percentile(finite, [0.5, 99.5])
        if hi <= lo:
            lo, hi = float(finite.min()), float(finite.max())
    else:
        lo = hi = 0.0
    if hi > lo:
        scaled = (np.nan_to_num(arr, nan=lo) - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(arr)
    grey = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), mode="L")
    return grey.convert("RGB")


def _load_mask(mask_path: str, raw_size: tuple[int, int], orientation: int | None, size: tuple[int, int]) -> Image.Image:
    """The mask as a 0/255 "L" image of ``size``; rotated like the photo if it is in its raw frame."""
    with Image.open(mask_path) as m:
        m.draft(None, size)
        mask = m.convert("L")
    method = _TRANSPOSE_FOR_ORIENTATION.get(orientation or 1)
    if method is not None and mask.size == raw_size and method in (
        Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE,
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_270,
    ) and raw_size[0] != raw_size[1]:
        mask = mask.transpose(method)
    return mask.resize(size, Image.Resampling.NEAREST).point(lambda v: 255 if v > 0 else 0)


def _draw_outline(rgb: Image.Image, mask: Image.Image) -> None:
    """Paint the boundary of the 0/255 ``mask`` onto ``rgb`` in place (about 2 px wide)."""
    eroded = mask.filter(ImageFilter.MinFilter(3))
    edge = ImageChops.subtract(mask, eroded).filter(ImageFilter.MaxFilter(3))
    rgb.paste(_OUTLINE_RGB, mask=edge)


# --------------------------------------------------------------------------------------------
# formatting


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _is_nan(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(float(value))


def _fmt(value: object) -> str:
    """A summary value as display text: floats to 3 decimals, NaN/None as a dash."""
    if value is None or _is_nan(value):
        return "\u2014"
    if isinstance(value, bool) or isinstance(value, np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):.3f}"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items())
    return str(value)


def _fmt_score(value: object) -> str:
    """A score: integral values (counts) without decimals, others with 3."""
    if value is None or _is_nan(value):
        return "\u2014"
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if math.isinf(f):
        return "\u221e" if f > 0 else "-\u221e"
    if f.is_integer() and abs(f) >= 2:
        return str(int(f))
    return f"{f:.3f}"


# --------------------------------------------------------------------------------------------
# document


_CSS = """
:root{--th:160px;--bg:#f4f5f7;--card:#fff;--ink:#1d2330;--muted:#667085;--line:#e3e6ea;
--known:#1f5fbf;--known-bg:#e4eefc;--new:#a34d00;--new-bg:#fdf0e1;--ok:#16794a;--ok-bg:#e3f5ea;
--bad:#b42318;--bad-bg:#fde8e6;--truth:#16a05d}
*{box-sizing:border-box}
html{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header.top{padding:20px 24px 12px;background:var(--card);border-bottom:1px solid var(--line)}
h1{margin:0 0 4px;font-size:22px;font-weight:650}
h2{font-size:17px;margin:0 0 10px}
.meta{color:var(--muted);font-size:13px;margin-bottom:12px}
.tables{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
table.kv{border-collapse:collapse;font-size:12.5px;background:var(--card);border:1px solid var(--line);border-radius:6px}
table.kv caption{text-align:left;font-weight:600;font-size:12px;color:var(--muted);padding:0 0 3px;text-transform:uppercase;letter-spacing:.04em}
table.kv th,table.kv td{padding:3px 10px;border-top:1px solid var(--line);text-align:left;vertical-align:top}
table.kv tr:first-child th,table.kv tr:first-child td{border-top:0}
table.kv th{font-weight:500;color:var(--muted);white-space:nowrap}
table.kv td{font-variant-numeric:tabular-nums;max-width:420px;overflow-wrap:anywhere}
.toolbar{position:sticky;top:0;z-index:5;display:flex;gap:10px;align-items:center;padding:8px 24px;
background:rgba(244,245,247,.95);border-bottom:1px solid var(--line);backdrop-filter:blur(4px)}
.toolbar input,.toolbar select{font:inherit;padding:5px 9px;border:1px solid #c9ced6;border-radius:6px;background:#fff}
.toolbar input{width:320px;max-width:50vw}
.toolbar .count{color:var(--muted);font-size:13px}
main{padding:14px 24px;display:flex;flex-direction:column;gap:12px}
.empty{color:var(--muted);padding:24px;text-align:center;background:var(--card);border-radius:8px}
section.query{display:flex;gap:14px;background:var(--card);border:1px solid var(--line);border-left:5px solid #c9ced6;
border-radius:8px;padding:10px;box-shadow:0 1px 2px rgba(16,24,40,.05)}
section.query[hidden]{display:none}
section.query.ok{border-left-color:var(--ok)}
section.query.bad{border-left-color:var(--bad)}
.qcard{flex:0 0 calc(var(--th) + 40px);display:flex;flex-direction:column;gap:3px;padding-right:14px;border-right:1px solid var(--line)}
.qlabel{font-size:11px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.06em}
.qid{font-weight:600;overflow-wrap:anywhere;margin-top:4px}
.line{font-size:13px;overflow-wrap:anywhere}
.lbl{color:var(--muted)}
.badges{display:flex;flex-wrap:wrap;gap:4px;margin:2px 0}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600}
.badge.known{color:var(--known);background:var(--known-bg)}
.badge.new{color:var(--new);background:var(--new-bg)}
.badge.ok{color:var(--ok);background:var(--ok-bg)}
.badge.bad{color:var(--bad);background:var(--bad-bg)}
.note{font-size:12px;color:var(--muted)}
.cands{display:flex;gap:10px;overflow-x:auto;align-items:flex-start;padding-bottom:4px;flex:1 1 auto;min-width:0}
.cand{flex:0 0 calc(var(--th) + 14px);margin:0;padding:6px;border:2px solid transparent;border-radius:8px;background:#fafbfc}
.cand.truth{border-color:var(--truth);background:var(--ok-bg)}
.cand figcaption{font-size:12px;margin-top:4px;display:flex;flex-direction:column;gap:1px}
.cand .head{display:flex;gap:6px;align-items:baseline}
.cand .rank{color:var(--muted);font-weight:600}
.cand .ident{font-weight:600;font-size:13px;overflow-wrap:anywhere}
.cand .score{font-variant-numeric:tabular-nums}
.cand .gid{color:var(--muted);overflow-wrap:anywhere}
.cand .truthtag{color:var(--truth);font-weight:700;font-size:11px}
.ps{margin-top:2px;font-size:11px;color:var(--muted);font-variant-numeric:tabular-nums;line-height:1.3}
.ps span{display:block;overflow-wrap:anywhere}
.th{width:var(--th);height:var(--th);border-radius:6px;background-color:#e9ebef;background-size:contain;
background-position:center;background-repeat:no-repeat}
.th.ph{display:flex;align-items:center;justify-content:center;background:#c4c8cf;color:#4a505b;font-size:13px;
font-weight:600;letter-spacing:.03em}
section.errors{padding:6px 24px 32px}
table.err{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line);font-size:12.5px}
table.err th,table.err td{padding:5px 10px;border-top:1px solid var(--line);text-align:left;vertical-align:top;overflow-wrap:anywhere}
table.err th{background:#eef0f3;font-weight:600}
section.query{flex-wrap:wrap}
.cands{flex-basis:0}
.evidence{flex:1 0 100%;margin:0;font-size:13px}
details.evidence summary{cursor:pointer;color:var(--known);font-weight:600;padding:2px 0}
details.evidence figure{margin:6px 0 0}
details.evidence img{display:block;max-width:100%;height:auto;border-radius:6px}
"""

_JS = """
(function(){
var bar=document.getElementById('toolbar');if(!bar)return;bar.hidden=false;
var q=document.getElementById('flt'),m=document.getElementById('mode'),c=document.getElementById('count');
var rows=Array.prototype.slice.call(document.querySelectorAll('section.query'));
function apply(){var t=q.value.trim().toLowerCase(),v=m.value,n=0;
rows.forEach(function(r){var ok=!t||r.getAttribute('data-text').indexOf(t)>=0;
if(ok&&v!=='all'){ok=(v==='known'||v==='new')?r.getAttribute('data-decision')===v:r.getAttribute('data-result')===v;}
r.hidden=!ok;if(ok)n++;});
c.textContent=n+' of '+rows.length+' queries shown';}
q.addEventListener('input',apply);m.addEventListener('change',apply);apply();
})();
"""

_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)


def _write_document(
    out: TextIO,
    predictions: Sequence[Prediction],
    title: str,
    summary: Mapping[str, object],
    errors: Sequence[ImageError],
    thumbs: _ThumbWriter,
    evidence: Callable[[Prediction], Sequence[tuple[str, bytes]]] | None = None,
) -> None:
    n = len(predictions)
    n_known = sum(1 for p in predictions if p.decision == "known")
    n_new = sum(1 for p in predictions if p.decision != "known")
    with_truth = [p for p in predictions if p.truth is not None]
    n_correct = sum(1 for p in with_truth if _is_correct(p))
    generated = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()

    out.write("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
    out.write('<meta name="viewport" content="width=device-width, initial-scale=1">\n')
    out.write(f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">\n')
    out.write(f"<title>{_e(title)}</title>\n<style>{_CSS}:root{{--th:{thumbs.px}px}}\n</style>\n</head>\n<body>\n")

    # header
    meta = [f"{n} queries", f"{n_known} decided known", f"{n_new} decided new"]
    if with_truth:
        meta.append(f"{n_correct}/{len(with_truth)} correct")
    meta.append(f"{len(errors)} unusable images")
    meta.append(f"generated {generated}")
    out.write(f'<header class="top">\n<h1>{_e(title)}</h1>\n<div class="meta">{_e(" · ".join(meta))}</div>\n')
    out.write(_summary_tables(summary))
    out.write("</header>\n")

    # toolbar (shown by the script; useless without it)
    out.write(
        '<div class="toolbar" id="toolbar" hidden>'
        '<input type="search" id="flt" placeholder="Filter by image id or identity\u2026" aria-label="filter">'
        '<select id="mode" aria-label="show"><option value="all">all queries</option>'
        '<option value="known">decided known</option><option value="new">decided new</option>'
        '<option value="correct">correct</option><option value="wrong">wrong</option></select>'
        '<span class="count" id="count"></span></div>\n'
    )

    out.write("<main>\n")
    if not predictions:
        out.write('<div class="empty">No queries.</div>\n')
    for p in predictions:
        out.write(_query_row(p, thumbs, evidence))
    out.write("</main>\n")

    out.write(_errors_section(errors))
    out.write(f"<script>{_JS}</script>\n</body>\n</html>\n")


def _is_correct(p: Prediction) -> bool:
    return p.truth is not None and p.prediction == p.truth


def _thumb_html(thumbs: _ThumbWriter, image_path: str, image_id: str) -> str:
    cls, rule, reason = thumbs.get(image_path, image_id)
    if cls is None:
        return f'<div class="th ph" title="{_e(f"{image_path}: {reason}")}">unreadable</div>'
    style = f"<style>{rule}</style>" if rule else ""
    return f'{style}<div class="th {cls}" role="img" aria-label="{_e(image_id)}" title="{_e(image_path)}"></div>'


def _query_row(p: Prediction, thumbs: _ThumbWriter,
               evidence: Callable[[Prediction], Sequence[tuple[str, bytes]]] | None = None) -> str:
    cands = sorted(p.candidates, key=lambda c: c.rank)
    decision = "known" if p.decision == "known" else "new"
    if p.truth is None:
        result, row_cls = "", ""
    elif _is_correct(p):
        result, row_cls = "correct", " ok"
    else:
        result, row_cls = "wrong", " bad"
    search = " ".join(
        [p.image_id, p.prediction, p.truth or ""] + [s for c in cands for s in (c.identity, c.gallery_image_id)]
    ).lower()

    parts = [
        f'<section class="query{row_cls}" data-decision="{decision}" data-result="{result}" data-text="{_e(search)}">\n',
        '<div class="qcard"><div class="qlabel">query</div>',
        _thumb_html(thumbs, p.path, p.image_id),
        f'<div class="qid" title="{_e(p.path)}">{_e(p.image_id)}</div>',
        f'<div class="line"><span class="lbl">prediction </span><b>{_e(p.prediction)}</b></div>',
        '<div class="badges">',
        f'<span class="badge {decision}">{_e(p.decision)}</span>',
    ]
    if result:
        mark = "\u2713 correct" if result == "correct" else "\u2717 wrong"
        parts.append(f'<span class="badge {"ok" if result == "correct" else "bad"}">{mark}</span>')
    parts.append("</div>")
    parts.append(f'<div class="line"><span class="lbl">score </span>{_fmt_score(p.score)}</div>')
    if p.animal:  # which pixels were used: mask, instance, crop or the fallback and why
        note = ' class="note"' if "fallback" in p.animal else ' class="line"'
        parts.append(f'<div{note}><span class="lbl">animal </span>{_e(p.animal)}</div>')
    if p.truth is not None:
        parts.append(f'<div class="line"><span class="lbl">truth </span>{_e(p.truth)}</div>')
        if p.truth != NEW_INDIVIDUAL and all(c.identity != p.truth for c in cands):
            parts.append('<div class="note">truth not among the candidates</div>')
    parts.append("</div>\n")

    parts.append('<div class="cands">')
    if not cands:
        parts.append('<div class="note">no candidates</div>')
    for c in cands:
        is_truth = p.truth is not None and c.identity == p.truth
        parts.append(f'<figure class="cand{" truth" if is_truth else ""}">')
        parts.append(_thumb_html(thumbs, c.gallery_path, c.gallery_image_id))
        parts.append("<figcaption>")
        parts.append(
            f'<div class="head"><span class="rank">#{_e(c.rank)}</span>'
            f'<span class="ident">{_e(c.identity)}</span></div>'
        )
        truth_tag = ' <span class="truthtag">\u2713 truth</span>' if is_truth else ""
        parts.append(f'<div class="score"><span class="lbl">score </span>{_fmt_score(c.score)}{truth_tag}</div>')
        parts.append(f'<div class="gid" title="{_e(c.gallery_path)}">{_e(c.gallery_image_id)}</div>')
        if c.pipeline_scores:
            parts.append('<div class="ps">')
            parts.extend(f"<span>{_e(name)}: {_e(_fmt_score(v))}</span>" for name, v in c.pipeline_scores.items())
            parts.append("</div>")
        parts.append("</figcaption></figure>")
    parts.append("</div>\n")
    if evidence is not None:
        parts.append(_evidence_html(p, evidence))
    parts.append("</section>\n")
    return "".join(parts)


def _evidence_html(p: Prediction, evidence: Callable[[Prediction], Sequence[tuple[str, bytes]]]) -> str:
    """The row's match drawings in a collapsed ``<details>``, or a note why there are none."""
    try:
        figures = list(evidence(p))
    except Exception as exc:  # noqa: BLE001 - a drawing must never cost the report
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return f'<div class="evidence note">match drawing unavailable ({_e(reason)})</div>\n'
    if not figures:
        return ""
    label = "match drawing" + ("s" if len(figures) > 1 else "")
    summary = f'{label} <span class="lbl">{_e(" · ".join(caption for caption, _ in figures))}</span>'
    body = "".join(
        f'<figure><img loading="lazy" alt="{_e(caption)}" title="{_e(caption)}" '
        f'src="data:image/jpeg;base64,{b64encode(data).decode("ascii")}"></figure>'
        for caption, data in figures
    )
    return f'<details class="evidence"><summary>{summary}</summary>{body}</details>\n'


def _kv_table(rows: Iterable[tuple[object, object]], caption: str | None = None) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in rows)
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f'<table class="kv">{cap}{body}</table>'


def _summary_tables(summary: Mapping[str, object]) -> str:
    if not summary:
        return ""
    scalars = [(k, v) for k, v in summary.items() if not isinstance(v, Mapping)]
    groups = [(k, v) for k, v in summary.items() if isinstance(v, Mapping)]
    tables = []
    if scalars:
        tables.append(_kv_table(scalars, "run" if groups else None))
    for name, mapping in groups:
        if mapping:
            tables.append(_kv_table(mapping.items(), str(name)))  # type: ignore[union-attr]
    return '<div class="tables">' + "".join(tables) + "</div>\n"


def _errors_section(errors: Sequence[ImageError]) -> str:
    head = f'<section class="errors">\n<h2>Images that could not be used ({len(errors)})</h2>\n'
    if not errors:
        return head + '<div class="note">All images could be used.</div>\n</section>\n'
    rows = "".join(
        f"<tr><td>{_e(err.image_id)}</td><td>{_e(err.path)}</td><td>{_e(err.stage)}</td><td>{_e(err.reason)}</td></tr>"
        for err in errors
    )
    return (
        head
        + '<table class="err"><thead><tr><th>image_id</th><th>path</th><th>stage</th><th>reason</th></tr></thead>'
        + f"<tbody>{rows}</tbody></table>\n</section>\n"
    )
