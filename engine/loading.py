"""What the pipeline's stages see of a photo: a gallery row as a record, and the profile's
decoding + ``[segment]`` + preprocessing as one loader. Shared by run, calibrate, explain and
train embedder (below all of them, so none imports another for it)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from reid_engine.registry.profiles import Profile

from .components import Components
from .database import GalleryDatabase, GalleryImage
from .features import load_and_prepare
from .records import ImageRecord, LoadedImage
from .segmentation import Segmentation


def gallery_record(image: GalleryImage) -> ImageRecord:
    meta = dict(image.metadata)
    bbox = meta.pop("bbox", None)
    mask_path = meta.pop("mask_path", None)
    return ImageRecord(
        image_id=image.image_id, path=Path(image.path), identity=image.identity,
        bbox=tuple(bbox) if bbox else None, mask_path=Path(mask_path) if mask_path else None,
        **{k: meta.get(k) for k in ("segmentation", "date", "orientation", "species", "sequence", "keypoints")},
    )


def segmentation_of(components: Components, profile: Profile, db: GalleryDatabase | None) -> Segmentation | None:
    """The profile's ``[segment]`` step, caching masks in ``db`` (None: no segment step)."""
    return None if profile.segment is None else Segmentation(profile.segment, components.segmenter, db)


def image_loader(components: Components, profile: Profile,
                 db: GalleryDatabase | None = None) -> Callable[[ImageRecord], LoadedImage]:
    """Decode + segment/crop + preprocess a record as this profile's extractors expect."""
    segmentation = segmentation_of(components, profile, db)
    return lambda record: load_and_prepare(record, components.preprocessors, profile.image.max_side,
                                           profile.image.min_side, segmentation)
