"""Per-image feature computation with the cache in the gallery database.

Keys are (image content hash, plugin name, plugin version, config hash) — never the image id
or path, so a renamed photo is still found and a changed config is never served stale
features.
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from .components import Built
from .database import GalleryDatabase, feature_key
from .images import ImageDecodeError, read_image
from .records import ImageError, ImageRecord, LoadedImage, LocalFeatures


class FeatureCache:
    def __init__(self, db: GalleryDatabase) -> None:
        self.db = db
        self.computed = 0
        self.reused = 0

    def key(self, content_hash: str, built: Built) -> str:
        return feature_key(content_hash, *built.cache_id)

    def has(self, content_hash: str, built: Built) -> bool:
        return self.db._blob_path("features", self.key(content_hash, built)).exists()

    def get(self, content_hash: str, built: Built) -> LocalFeatures | None:
        arrays = self.db.get_features(self.key(content_hash, built))
        return LocalFeatures.from_arrays(arrays) if arrays is not None else None

    def put(self, content_hash: str, built: Built, features: LocalFeatures) -> None:
        name, version, chash = built.cache_id
        self.db.put_features(self.key(content_hash, built), content_hash, name, version, chash, features.to_arrays())


class LazyFeatures(Sequence[LocalFeatures]):
    """Features of many images read from the cache one at a time (bounded memory)."""

    def __init__(self, cache: FeatureCache, hashes: Sequence[str], built: Built) -> None:
        self.cache, self.hashes, self.built = cache, list(hashes), built

    def __len__(self) -> int:
        return len(self.hashes)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        f = self.cache.get(self.hashes[i], self.built)
        if f is None:
            raise KeyError(f"features of image {self.hashes[i][:12]} are not cached")
        return f


def load_and_prepare(record: ImageRecord, preprocessors: Sequence[Built], max_side: int, min_side: int) -> LoadedImage:
    image = read_image(record, max_side=max_side, min_side=min_side)
    for pre in preprocessors:
        image = pre.obj(image)
    return image


def ensure_features(
    records: Iterable[tuple[ImageRecord, str | None]],
    extractors: Sequence[Built],
    cache: FeatureCache,
    load: Callable[[ImageRecord], LoadedImage],
    errors: list[ImageError],
    advance: Callable[[], None] = lambda: None,
) -> dict[str, str]:
    """Make sure every image has cached features for every extractor.

    ``records`` pairs each record with its known content hash (None: read the file to learn
    it). Returns image_id → content hash for the images that could be used; the others are
    appended to ``errors``. Decodes each image at most once, and only when something is missing.
    """
    hashes: dict[str, str] = {}
    for record, known_hash in records:
        try:
            if known_hash is not None and all(cache.has(known_hash, ex) for ex in extractors):
                hashes[record.image_id] = known_hash
                cache.reused += len(extractors)
                continue
            image = load(record)
        except ImageDecodeError as exc:
            errors.append(ImageError(record.image_id, str(record.path), "decode", str(exc)))
            advance()
            continue
        for ex in extractors:
            if cache.has(image.content_hash, ex):
                cache.reused += 1
                continue
            try:
                features = ex.obj.extract(image)
            except Exception as exc:  # noqa: BLE001 - one bad image must not stop the run
                errors.append(ImageError(record.image_id, str(record.path), f"extract:{ex.spec.name}",
                                         f"{type(exc).__name__}: {exc}"))
                break
            cache.put(image.content_hash, ex, _clean(features))
            cache.computed += 1
        else:
            hashes[record.image_id] = image.content_hash
        advance()
    cache.db.flush()
    return hashes


def _clean(f: LocalFeatures) -> LocalFeatures:
    """float32 arrays with the documented shapes, non-finite rows dropped."""
    kpts = np.asarray(f.kpts, np.float32).reshape(-1, 2)
    desc = np.asarray(f.desc, np.float32).reshape(len(kpts), -1)
    ok = np.isfinite(kpts).all(1) & np.isfinite(desc).all(1)
    lafs = None if f.lafs is None else np.asarray(f.lafs, np.float32).reshape(-1, 2, 3)[ok]
    return LocalFeatures(kpts[ok], desc[ok], np.asarray(f.scores, np.float32).reshape(-1)[ok], lafs, tuple(f.image_hw))
