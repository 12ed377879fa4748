"""Putting the engine's pixels on the animal: masks, the instance policy, fallback, crop.

One photo's way to the extractors (``features.load_and_prepare``)::

    decode → mask: the manifest's mask/segmentation/bbox wins; else the segmenter's
    foreground probability (cached per photo in the gallery database, at most
    ``PROB_SIDE`` px) is cleaned into instances → one instance by the profile's policy →
    fallback when nothing usable stands out → crop to the animal (+ margin) from the
    decoded photo, resized so its longer side is ``crop_side`` → preprocessors → extractors.

Cleaning and choosing work on the small cached probability map, so what a photo's view is
(:class:`AnimalView`, written to the outputs) is known without decoding the photo again, and
changing the cleaning options never re-runs the network.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from reid_engine.records import INSTANCE_KEY, ImageRecord, LoadedImage
from reid_engine.store.database import feature_key

if TYPE_CHECKING:
    from reid_engine.components import Built
    from reid_engine.registry.profiles import SegmentSettings
    from reid_engine.store.database import GalleryDatabase

PROB_SIDE = 1024  # cached probability maps keep at most this many px on the longer side


@dataclass(frozen=True)
class AnimalView:
    """Which pixels of a photo the extractors saw.

    source     "manifest", the segmenter's name, or "none" (no mask asked for)
    instances  animals the segmenter found (after cleaning); 0 for manifest / none
    instance   the one used, 0 = largest (None: whole photo or manifest)
    coverage   share of the photo inside the mask used (1.0 = whole photo)
    fallback   "" or why the segmenter's mask was not used (then ``mask`` is whole / centre box)
    crop       (x0, y0, x1, y1) in 0..1 of the photo's width / height, or None
    """

    source: str
    instances: int = 0
    instance: int | None = None
    coverage: float = 1.0
    fallback: str = ""
    crop: tuple[float, float, float, float] | None = None

    def describe(self) -> str:
        """One short phrase for predictions.csv and report.html."""
        if self.source == "none":
            return "whole photo"
        if self.fallback:
            return f"{self.source}: fallback {self.fallback}"
        what = "manifest mask" if self.source == "manifest" else (
            f"{self.source} instance {self.instance + 1} of {self.instances}" if self.instances > 1
            else f"{self.source} mask")
        return f"{what}, {self.coverage:.0%} of photo{', cropped' if self.crop else ''}"


@dataclass
class SegmentResult:
    """A chosen mask at probability-map resolution: bool (h, w) or None for the whole photo."""

    mask: np.ndarray | None
    view: AnimalView


class Segmentation:
    """The profile's ``[segment]`` settings with its segmenter and (optional) cache database."""

    def __init__(self, settings: "SegmentSettings", segmenter: "Built | None", db: "GalleryDatabase | None") -> None:
        self.settings, self.segmenter, self.db = settings, segmenter, db
        self.fresh: set[str] = set()  # content hashes of the photos whose map this object computed
        self.chosen: dict[tuple[str, str, object], AnimalView] = {}  # (image id, content hash, instance) -> view

    @property
    def computed(self) -> int:
        """Photos whose probability map this object computed (the others came from the cache)."""
        return len(self.fresh)

    # -- the network's output, cached ------------------------------------------------------
    def _key(self, content_hash: str) -> str:
        s = self.segmenter
        return feature_key(content_hash, s.spec.name, s.spec.version, f"{s.obj.model_id}|{PROB_SIDE}")

    def cached_probability(self, content_hash: str) -> np.ndarray | None:
        """The stored probability map, float32 (h, w) in [0, 1], or None."""
        if self.db is None or self.segmenter is None:
            return None
        arrays = self.db.get_segmentation(self._key(content_hash))
        return None if arrays is None else arrays["prob"].astype(np.float32) / 255.0

    def probability(self, image: LoadedImage) -> np.ndarray:
        """Foreground probability of ``image`` at ≤ PROB_SIDE px, float32 (h, w); computed once per photo."""
        prob = self.cached_probability(image.content_hash)
        if prob is not None:
            return prob
        full = np.asarray(self.segmenter.obj.probability(image), np.float32)
        prob = _resize(full, _small_hw(full.shape[:2]), nearest=False)
        self.fresh.add(image.content_hash)  # a set: safe from several workers, where a += count is not
        if self.db is not None:
            q = np.round(np.clip(prob, 0.0, 1.0) * 255.0).astype(np.uint8)
            self.db.put_segmentation(self._key(image.content_hash), {"prob": q})
            return q.astype(np.float32) / 255.0
        return prob

    # -- choosing --------------------------------------------------------------------------
    def choose(self, prob: np.ndarray, record: ImageRecord) -> SegmentResult:
        """Clean ``prob`` into instances and pick one by the instance policy, or fall back."""
        s = self.settings
        name = self.segmenter.spec.name
        masks = list(self.segmenter.obj.clean(prob))
        if not masks:
            return self._fallback(prob.shape, AnimalView(name, 0, None, 1.0, "no animal found"))
        index = pick_instance(masks, s.instance, record)
        if index >= len(masks):
            index = 0
        mask = masks[index]
        coverage = float(mask.mean())
        if coverage < s.min_coverage:
            return self._fallback(prob.shape, AnimalView(
                name, len(masks), index, coverage, f"mask covers {coverage:.1%} < min_coverage {s.min_coverage:.0%}"))
        return SegmentResult(mask, AnimalView(name, len(masks), index, coverage, "", _crop_box(mask, s)))

    def _fallback(self, hw: tuple[int, int], view: AnimalView) -> SegmentResult:
        if self.settings.fallback == "centre-box":
            h, w = hw
            m = self.settings.centre_box
            mask = np.zeros(hw, bool)
            mask[round(h * (1 - m) / 2):round(h * (1 + m) / 2), round(w * (1 - m) / 2):round(w * (1 + m) / 2)] = True
            view = dataclasses.replace(view, fallback=f"centre box ({view.fallback})", coverage=float(mask.mean()),
                                       crop=_crop_box(mask, self.settings))
            return SegmentResult(mask, view)
        return SegmentResult(None, dataclasses.replace(view, fallback=f"whole photo ({view.fallback})", coverage=1.0))

    def instance_masks(self, image: LoadedImage) -> list[np.ndarray]:
        """The animals the segmenter finds in ``image``: bool masks (h, w) at the probability map's
        size, largest first (the order of ``IMAGE_ID#1``, ``#2``, ...); [] without a segmenter."""
        return list(self.segmenter.obj.clean(self.probability(image))) if self.segmenter is not None else []

    # -- applying --------------------------------------------------------------------------
    def apply(self, image: LoadedImage) -> LoadedImage:
        """``image`` with its animal mask set and, with ``crop``, cropped to the animal."""
        s = self.settings
        if image.mask is not None:  # the manifest's mask or box wins over the segmenter
            view = AnimalView("manifest", coverage=float(image.mask.mean()),
                              crop=_crop_box(image.mask, s) if image.mask.any() else None)
            mask = image.mask
        elif self.segmenter is not None:
            chosen = self.choose(self.probability(image), image.record)
            view = chosen.view
            self.chosen[_view_key(image.record, image.content_hash)] = view
            mask = None if chosen.mask is None else _resize(chosen.mask.astype(np.float32), image.rgb.shape[:2]) > 0.5
        else:
            return dataclasses.replace(image, view=AnimalView("none"))
        image = dataclasses.replace(image, mask=mask, view=view)
        return crop_to(image, view.crop, s.crop_side) if view.crop is not None else image

    def views_key(self, photos: list[tuple[ImageRecord, str]]) -> str:
        """Model key of the views of these (record, content hash) photos: everything a view depends
        on (the photos, their manifest masks and instances, the [segment] settings, the segmenter)."""
        s = self.segmenter
        parts = [json.dumps(dataclasses.asdict(self.settings), sort_keys=True, default=str), str(PROB_SIDE),
                 "" if s is None else f"{s.spec.name}|{s.spec.version}|{s.obj.model_id}"]
        parts += [f"{r.image_id}|{h}|{_manifest_mask(r)}|{r.extra.get(INSTANCE_KEY, '')}" for r, h in photos]
        return "views-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:40]

    def view_of(self, record: ImageRecord, content_hash: str) -> AnimalView | None:
        """The view of an already segmented photo, from the cache (None when unknown or manifest)."""
        if _manifest_mask(record):
            return AnimalView("manifest")
        known = self.chosen.get(_view_key(record, content_hash))
        if known is not None:  # chosen while this process extracted the photo's features
            return known
        prob = self.cached_probability(content_hash)
        return None if prob is None else self.choose(prob, record).view


def _view_key(record: ImageRecord, content_hash: str) -> tuple[str, str, object]:
    """What a view depends on besides the settings and the segmenter: the photo and which animal of it."""
    return record.image_id, content_hash, record.extra.get(INSTANCE_KEY)


def _manifest_mask(record: ImageRecord) -> bool:
    """Whether the manifest gives this photo's animal (mask file, polygon or box)."""
    return record.mask_path is not None or bool(record.segmentation) or record.bbox is not None


def pick_instance(masks: list[np.ndarray], policy: str, record: ImageRecord) -> int:
    """Index into ``masks`` (largest first) by policy: largest, central, or each (the record's instance)."""
    if policy == "each":
        return int(record.extra.get(INSTANCE_KEY, 0))
    if policy == "central":
        h, w = masks[0].shape
        def distance(m: np.ndarray) -> float:
            ys, xs = np.nonzero(m)
            return float(np.hypot(xs.mean() / w - 0.5, ys.mean() / h - 0.5))
        return int(np.argmin([distance(m) for m in masks]))
    return 0


def _crop_box(mask: np.ndarray, s: "SegmentSettings") -> tuple[float, float, float, float] | None:
    """Bounding box of ``mask`` grown by ``crop_margin`` of its size, in 0..1 of the photo; None without crop."""
    if not s.crop:
        return None
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    h, w = mask.shape
    x0, x1, y0, y1 = xs.min() / w, (xs.max() + 1) / w, ys.min() / h, (ys.max() + 1) / h
    mx, my = (x1 - x0) * s.crop_margin, (y1 - y0) * s.crop_margin
    return (max(0.0, x0 - mx), max(0.0, y0 - my), min(1.0, x1 + mx), min(1.0, y1 + my))


def crop_to(image: LoadedImage, box: tuple[float, float, float, float], side: int) -> LoadedImage:
    """Crop ``image`` (and its mask) to ``box`` (0..1), resized so the longer side is ``side`` (0: as is)."""
    h, w = image.rgb.shape[:2]
    x0, y0 = int(np.floor(box[0] * w)), int(np.floor(box[1] * h))
    x1, y1 = max(x0 + 1, int(np.ceil(box[2] * w))), max(y0 + 1, int(np.ceil(box[3] * h)))
    rgb = image.rgb[y0:y1, x0:x1]
    mask = None if image.mask is None else image.mask[y0:y1, x0:x1]
    if side > 0:
        scale = side / max(rgb.shape[:2])
        hw = (max(1, round(rgb.shape[0] * scale)), max(1, round(rgb.shape[1] * scale)))
        rgb = _resize(rgb, hw, nearest=False)
        mask = None if mask is None else _resize(mask.astype(np.float32), hw) > 0.5
    return dataclasses.replace(image, rgb=np.ascontiguousarray(rgb), mask=mask)


def _small_hw(hw: tuple[int, int]) -> tuple[int, int]:
    scale = min(1.0, PROB_SIDE / max(hw))
    return (max(1, round(hw[0] * scale)), max(1, round(hw[1] * scale)))


def _resize(array: np.ndarray, hw: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """Resize (h, w[, c]) to ``hw``: area when shrinking, cubic (images) / linear (maps) when growing."""
    import cv2

    if array.shape[:2] == tuple(hw):
        return array
    shrinking = hw[0] * hw[1] < array.shape[0] * array.shape[1]
    if nearest:
        how = cv2.INTER_NEAREST
    elif shrinking:
        how = cv2.INTER_AREA
    else:
        how = cv2.INTER_CUBIC if array.dtype == np.uint8 else cv2.INTER_LINEAR
    return cv2.resize(array, (hw[1], hw[0]), interpolation=how)
