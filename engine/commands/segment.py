"""``reid-engine segment``: mask every photo of a manifest ahead of a run, report what was found,
and draw a grid of the masks to look at.

The masks land in the gallery database's cache (keyed by the photo's content, not its name),
so a later ``reid-engine run`` with the same profile and ``--db`` does not segment again.
"""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reid_engine.components import build_plugin, workers_for
from reid_engine.errors import ImageDecodeError, UsageError, raise_if_resource_fault
from reid_engine.inputs.images import read_image
from reid_engine.inputs.segmentation import AnimalView, Segmentation
from reid_engine.inputs.views import load_view
from reid_engine.outputs.drawing import caption_font, fit_text, save_png
from reid_engine.records import ImageError, ImageRecord, LoadedImage
from reid_engine.store.database import GalleryDatabase
from reid_engine.threads import ordered_map

_TINT = np.array([255, 0, 200], np.float32)  # the report's mask colour


@dataclass
class SegmentSummary:
    """What ``segment_manifest`` did: per image the view, how many masks were new, and the wall time."""

    views: dict[str, AnimalView] = field(default_factory=dict)
    computed: int = 0
    seconds: float = 0.0  # wall time of masking them all (photos side by side where the segmenter allows)
    errors: list[ImageError] = field(default_factory=list)
    grid: Path | None = None

    @property
    def fallbacks(self) -> dict[str, AnimalView]:
        return {i: v for i, v in self.views.items() if v.fallback}

    def coverage(self) -> tuple[float, float, float]:
        """Mean, 5th and 95th percentile of mask coverage over the photos that got a mask."""
        c = np.array([v.coverage for v in self.views.values() if not v.fallback and v.source != "none"])
        if c.size == 0:
            return (float("nan"),) * 3
        return float(c.mean()), float(np.percentile(c, 5)), float(np.percentile(c, 95))


def require_segmenter(profile):
    """The profile's [segment] settings; a UsageError when it names no segmenter."""
    if profile.segment is None or profile.segment.segmenter is None:
        raise UsageError(f"{profile.source}: profile {profile.name!r} has no [segment] segmenter; add e.g. "
                         "[segment] segmenter = \"isnet\" to it, or pick a profile that has one")
    return profile.segment


def segment_manifest(profile, records: list[ImageRecord], db_path: Path, table, device: str = "cpu",
                     grid: Path | None = None, sample: int = 20, seed: int = 0,
                     progress=lambda: None) -> SegmentSummary:
    """Mask ``records`` with the profile's ``[segment]`` step, caching in ``db_path``; with ``grid``,
    draw ``sample`` random photos (``seed``) with their masks into that PNG."""

    seg = require_segmenter(profile)
    if grid is not None and grid.suffix.lower() != ".png":
        raise UsageError(f"--grid {grid}: the grid is written as PNG; end the name in .png")
    segmenter = build_plugin(table, "segmenter", seg.segmenter, device, f"{profile.source} [segment].segmenter")
    summary = SegmentSummary()
    shown: dict[str, LoadedImage] = {}
    chosen = set(random.Random(seed).sample([r.image_id for r in records], min(sample, len(records)))) \
        if grid is not None else set()
    workers = workers_for(device, [segmenter.obj])
    with GalleryDatabase(db_path) as db:
        segmentation = Segmentation(seg, segmenter, db)

        def mask(record: ImageRecord) -> LoadedImage:  # run side by side
            return segmentation.apply(read_image(record, profile.image.max_side, profile.image.min_side))

        t = time.perf_counter()
        for record, outcome in zip(records, ordered_map(mask, records, workers)):
            try:
                image = outcome.result()
                summary.views[record.image_id] = image.view
                if record.image_id in chosen:  # uncropped, so the grid shows what was cut away
                    whole = dataclasses.replace(seg, crop=False)
                    shown[record.image_id] = load_view(record, profile.image.max_side, profile.image.min_side,
                                                       Segmentation(whole, segmenter, db))
            except ImageDecodeError as exc:
                summary.errors.append(ImageError(record.image_id, str(record.path), "decode", str(exc)))
            except Exception as exc:  # noqa: BLE001 - one photo must not stop the others
                raise_if_resource_fault(exc, record.path)
                summary.errors.append(ImageError(record.image_id, str(record.path), "segment",
                                                 f"{type(exc).__name__}: {exc}"))
            progress()
        summary.computed, summary.seconds = segmentation.computed, time.perf_counter() - t
    if grid is not None:
        tiles = [(i, shown[i], summary.views[i]) for i in sorted(shown)]
        summary.grid = write_mask_grid(grid, tiles)
    return summary


def write_mask_grid(path: Path, tiles: list[tuple[str, LoadedImage, AnimalView]], columns: int = 5,
                    tile_w: int = 320) -> Path:
    """A PNG of photos with their masks tinted and outlined and the crop box drawn; under each,
    the image id and its view (fallbacks in red)."""
    import cv2
    from PIL import Image, ImageDraw

    if not tiles:
        raise UsageError("no photo could be drawn into the mask grid")
    label_h = 34
    heights = []
    panels = []
    for image_id, image, view in tiles:
        h, w = image.rgb.shape[:2]
        th = max(1, round(h * tile_w / w))
        rgb = cv2.resize(image.rgb, (tile_w, th), interpolation=cv2.INTER_AREA).astype(np.float32)
        if image.mask is not None:
            m = cv2.resize(image.mask.astype(np.uint8), (tile_w, th), interpolation=cv2.INTER_NEAREST)
            rgb[m > 0] = rgb[m > 0] * 0.8 + _TINT * 0.2
            rgb[m == 0] *= 0.55
            rgb = rgb.astype(np.uint8)
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(rgb, contours, -1, (255, 0, 200), 2, cv2.LINE_AA)
        rgb = np.ascontiguousarray(rgb.astype(np.uint8))
        if view.crop is not None:
            x0, y0, x1, y1 = view.crop
            cv2.rectangle(rgb, (int(x0 * tile_w), int(y0 * th)), (int(x1 * tile_w) - 1, int(y1 * th) - 1),
                          (255, 220, 0), 1, cv2.LINE_AA)
        panels.append((image_id, rgb, view))
        heights.append(th)
    rows = [panels[i:i + columns] for i in range(0, len(panels), columns)]
    row_h = [max(p[1].shape[0] for p in row) + label_h for row in rows]
    canvas = Image.new("RGB", (columns * tile_w + (columns + 1) * 4, sum(row_h) + (len(rows) + 1) * 4), (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    small = caption_font(12)
    y = 4
    for row, rh in zip(rows, row_h):
        x = 4
        for image_id, rgb, view in row:
            canvas.paste(Image.fromarray(rgb), (x, y))
            ty = y + rgb.shape[0] + 2
            draw.text((x + 2, ty), fit_text(draw, image_id, small, tile_w - 4), fill=(235, 235, 235), font=small)
            draw.text((x + 2, ty + 15), fit_text(draw, view.describe(), small, tile_w - 4),
                      fill=(255, 110, 110) if view.fallback else (170, 170, 180), font=small)
            x += tile_w + 4
        y += rh + 4
    return save_png(path, np.asarray(canvas))
