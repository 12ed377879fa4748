"""The animals in each photo: one query per animal (instance policy ``each``), which pixels were
used (AnimalView per image), and the counts and notices a run reports about masks."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from reid_engine.errors import ImageDecodeError, raise_if_resource_fault
from reid_engine.inputs.images import read_image
from reid_engine.inputs.segmentation import AnimalView, Segmentation
from reid_engine.inputs.tracks import Centroid, mask_centroid, track_instances
from reid_engine.records import INSTANCE_KEY, ImageError, ImageRecord
from reid_engine.registry.profiles import Profile


def each_animal(records: list[ImageRecord], segmentation: Segmentation, profile: Profile,
                errors: list[ImageError]) -> list[ImageRecord]:
    """Instance policy ``each``: a query photo showing n > 1 animals becomes n queries
    ``IMAGE_ID#1`` … ``IMAGE_ID#n`` (largest first). Runs the segmenter (cached) on every query.

    A sequence with such a photo is split into one sequence per animal, ``SEQUENCE#1``, ``#2``
    …, by tracking where the animals lie (:mod:`reid_engine.inputs.tracks`), so that pooling a
    sequence's evidence never mixes two animals."""

    out: list[ImageRecord] = []
    placed: list[tuple[int, Centroid] | None] = []  # per query: (its photo's index, where the animal lies)
    for p, record in enumerate(records):
        try:
            image = read_image(record, profile.image.max_side, profile.image.min_side)
            if image.mask is not None:  # a manifest mask names one animal
                centroids = [mask_centroid(image.mask)]
            else:
                centroids = [mask_centroid(m) for m in segmentation.instance_masks(image)]
        except ImageDecodeError:
            out.append(record)  # ensure_features reports it
            placed.append(None)
            continue
        except Exception as exc:  # noqa: BLE001 - the segmenter failing on one photo must not stop the run
            raise_if_resource_fault(exc, record.path)
            errors.append(ImageError(record.image_id, str(record.path), "segment", f"{type(exc).__name__}: {exc}"))
            out.append(record)
            placed.append(None)
            continue
        if len(centroids) <= 1:
            out.append(record)
            placed.append((p, centroids[0]) if centroids else None)
            continue
        for k, centroid in enumerate(centroids):
            out.append(dataclasses.replace(record, image_id=f"{record.image_id}#{k + 1}",
                                           extra={**record.extra, INSTANCE_KEY: str(k)}))
            placed.append((p, centroid))
    return split_sequences(out, placed)


def split_sequences(queries: list[ImageRecord], placed: list[tuple[int, Centroid] | None]) -> list[ImageRecord]:
    """Rename the sequence of every query in a sequence where some photo shows several animals to
    ``SEQUENCE#TRACK`` (``placed``: per query, its photo's index and its animal's centroid, or None)."""
    photos: dict[str, dict[int, list[int]]] = {}
    for i, (query, where) in enumerate(zip(queries, placed)):
        if query.sequence and where is not None:
            photos.setdefault(query.sequence, {}).setdefault(where[0], []).append(i)
    out = list(queries)
    for sequence, by_photo in photos.items():
        groups = list(by_photo.values())
        if all(len(g) == 1 for g in groups):
            continue
        tracks = track_instances([[placed[i][1] for i in g] for g in groups])
        for group, labels in zip(groups, tracks):
            for i, track in zip(group, labels):
                out[i] = dataclasses.replace(out[i], sequence=f"{sequence}#{track + 1}")
    return out


def animal_views(segmentation: Segmentation, photos: list[tuple[ImageRecord, str]], remember: bool = False) -> dict:
    """image_id → AnimalView for (record, content hash) pairs, from the mask cache (no decoding).

    With ``remember`` (the gallery's photos) the views are stored in the gallery database as one
    entry keyed by everything they depend on (:meth:`Segmentation.views_key`), so a warm run over
    the same gallery reads them instead of cleaning every cached mask again (nyala-dev, 1,087
    photos: 5.5 s a run). Views are stored only when every photo's mask was cached.
    """
    db = segmentation.db
    key = segmentation.views_key(photos) if remember and db is not None else ""
    stored = db.get_model(key) if key else None
    if stored is not None:
        views = json.loads(str(stored["views"]))
        return {image_id: AnimalView(**{**v, "crop": None if v["crop"] is None else tuple(v["crop"])})
                for image_id, v in views.items()}
    found = {record.image_id: segmentation.view_of(record, chash) for record, chash in photos}
    if key and all(v is not None for v in found.values()):
        db.put_model(key, "animal-views", "segment", "1", key[6:22], {"photos": len(photos)},
                     {"views": np.array(json.dumps({i: dataclasses.asdict(v) for i, v in found.items()}))})
    return {image_id: v or AnimalView("none") for image_id, v in found.items()}


def mask_counts(views: dict, query_ids: set[str]) -> dict[str, float | int]:
    """summary.json counts: masks used, fallbacks and mean coverage, for gallery and queries."""
    out: dict[str, float | int] = {}
    for role, ids in (("gallery", [i for i in views if i not in query_ids]), ("query", [i for i in views if i in query_ids])):
        vs = [views[i] for i in ids]
        masked = [v for v in vs if v.source != "none" and not v.fallback]
        out[f"{role}_masked"] = len(masked)
        out[f"{role}_mask_fallbacks"] = sum(1 for v in vs if v.fallback)
        if masked and any(v.source != "manifest" for v in masked):
            out[f"{role}_mask_coverage"] = round(float(np.mean([v.coverage for v in masked if v.source != "manifest"])), 3)
    return out


def mask_notices(views: dict, query_ids: set[str]) -> list[str]:
    fallbacks = [(i, v) for i, v in views.items() if v.fallback]
    if not fallbacks:
        return []
    first_id, first = fallbacks[0]
    return [f"{len(fallbacks)} of {len(views)} photos use a fallback instead of a mask "
            f"(first: {first_id}: {first.fallback}); predictions.csv's 'animal' column says which"]
