"""What the pipeline's stages see of a photo: a gallery row as a record, and the profile's
decoding + ``[segment]`` + preprocessing as one loader. Shared by run, calibrate, explain and
train embedder (below all of them, so none imports another for it)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from reid_engine.components import Built, Components
from reid_engine.errors import ImageDecodeError, raise_if_resource_fault
from reid_engine.inputs.images import read_image
from reid_engine.inputs.segmentation import Segmentation
from reid_engine.records import ImageRecord, LoadedImage
from reid_engine.registry.profiles import Profile
from reid_engine.store.database import GalleryDatabase, GalleryImage


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
    """The profile's ``[segment]`` step, caching masks in ``db`` (None: no segment step); the same
    object for the same ``components``, ``db`` and settings, so views chosen while extracting are
    remembered (:meth:`Segmentation.view_of`)."""
    if profile.segment is None:
        return None
    for db_, settings, segmentation in components.segmentations:
        if db_ is db and settings is profile.segment and segmentation.segmenter is components.segmenter:
            return segmentation
    segmentation = Segmentation(profile.segment, components.segmenter, db)
    components.segmentations.append((db, profile.segment, segmentation))
    return segmentation


def image_loader(components: Components, profile: Profile,
                 db: GalleryDatabase | None = None) -> Callable[[ImageRecord], LoadedImage]:
    """Decode + segment/crop + preprocess a record as this profile's extractors expect."""
    segmentation = segmentation_of(components, profile, db)
    return lambda record: load_and_prepare(record, components.preprocessors, profile.image.max_side,
                                           profile.image.min_side, segmentation)


def load_and_prepare(record: ImageRecord, preprocessors: Sequence[Built], max_side: int, min_side: int,
                     segmentation: "Segmentation | None" = None) -> LoadedImage:
    """Decode a photo, put it on the animal (mask, crop: ``segmentation``) and run the profile's
    preprocessors; their failures are ImageDecodeErrors."""
    image = load_view(record, max_side, min_side, segmentation)
    for pre in preprocessors:
        try:
            image = pre.obj(image)
        except Exception as exc:  # noqa: BLE001
            raise_if_resource_fault(exc, record.path)
            raise ImageDecodeError(f"{record.path}: preprocessor {pre.spec.name!r} failed ({type(exc).__name__}: {exc})") from None
    return image


def load_view(record: ImageRecord, max_side: int, min_side: int,
              segmentation: "Segmentation | None" = None) -> LoadedImage:
    """Decode a photo and, with ``segmentation``, mask and crop it to the animal (no preprocessing:
    what match drawings show, in the pixels the keypoints refer to)."""
    if segmentation is None:
        return read_image(record, max_side=max_side, min_side=min_side)
    if segmentation.settings.crop and segmentation.settings.crop_side > 0:
        max_side = max(max_side, 2 * segmentation.settings.crop_side)  # the crop gets the photo's pixels
    image = read_image(record, max_side=max_side, min_side=min_side)
    try:
        return segmentation.apply(image)
    except ImageDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise_if_resource_fault(exc, record.path)  # e.g. no space left to cache the mask
        name = segmentation.segmenter.spec.name if segmentation.segmenter else "segment"
        raise ImageDecodeError(f"{record.path}: segmenter {name!r} failed ({type(exc).__name__}: {exc})") from None
