"""Per-image feature computation with the cache in the gallery database.

Keys are (image content hash, plugin name, plugin version, config hash) — never the image id
or path, so a renamed photo is still found and a changed config is never served stale
features.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from reid_engine.components import Built
from reid_engine.errors import ImageDecodeError, ReidError, raise_if_resource_fault
from reid_engine.records import (
    INSTANCE_KEY,
    ImageError,
    ImageRecord,
    LoadedImage,
    LocalFeatures,
)
from reid_engine.store.database import GalleryDatabase, content_hash, feature_key
from reid_engine.threads import ordered_map


class FeatureCache:
    def __init__(self, db: GalleryDatabase) -> None:
        self.db = db
        self.computed = 0
        self.reused = 0
        self.image_ids: dict[str, str] = {}  # image key -> the image id it was cached for, this run
        # image key -> (record, loader) of the photos ensure_features checked this run: a blob found
        # damaged or deleted when read later is recomputed from them, in the same run
        self.sources: dict[str, tuple[ImageRecord, Callable[[ImageRecord], LoadedImage]]] = {}
        self.recomputed = 0

    def describe(self, key: str) -> str:
        """How messages name the image behind an image key: its image id when this run knows it."""
        image_id = self.image_ids.get(key)
        return f"image {image_id!r}" if image_id else f"the image with key {key[:12]}"

    def key(self, content_hash: str, built: Built) -> str:
        return feature_key(content_hash, *built.cache_id)

    def has(self, content_hash: str, built: Built) -> bool:
        return self.db.blob_path("features", self.key(content_hash, built)).exists()

    def get(self, content_hash: str, built: Built) -> LocalFeatures | None:
        """Cached features of an image key, or None. A blob that is damaged (the database removes
        it when read) or gone since this run checked it is recomputed now from its photo."""
        arrays = self.db.get_features(self.key(content_hash, built))
        if arrays is not None:
            return LocalFeatures.from_arrays(arrays)
        if content_hash not in self.sources:
            return None
        record, load = self.sources[content_hash]
        try:
            features = clean_features(built.obj.extract(load(record)))
        except ImageDecodeError:  # the photo changed or went away since: nothing to recompute from
            return None
        self.put(content_hash, built, features)
        self.computed += 1
        self.recomputed += 1
        return features

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
        if f is None:  # deleted or damaged since this run cached it (the damaged blob is removed)
            raise ReidError(f"cached features of {self.cache.describe(self.hashes[i])} ({self.built.spec.name}) are missing "
                            f"or damaged in {self.cache.db.blob_dir}; run again and they are recomputed")
        return f






def ensure_features(
    records: Iterable[tuple[ImageRecord, str | None]],
    extractors: Sequence[Built],
    cache: FeatureCache,
    load: Callable[[ImageRecord], LoadedImage],
    errors: list[ImageError],
    advance: Callable[[], None] = lambda: None,
    content_hashes: dict[str, str] | None = None,
    workers: int = 1,
) -> dict[str, str]:
    """Make sure every image has cached features for every extractor.

    ``records`` pairs each record with its known content hash (None: read the file's bytes to
    learn it). Returns image_id → image key (see :func:`image_key`) for the images that could
    be used; the others are appended to ``errors``. An image is decoded at most once, and only
    when one of its features is missing from the cache. ``content_hashes``, when given, receives
    image_id → the photo's content hash (so callers need not read the files again).

    ``workers`` > 1 decodes, segments and extracts that many photos side by side (``load`` and
    every extractor must then be thread-safe: ``Components.feature_workers`` says); the
    database is written from this thread only, in the records' order.
    """
    records = list(records)

    def compute(item: tuple[ImageRecord, str | None]) -> tuple[str, str, int, list[tuple[Built, LocalFeatures]]]:
        """(content hash, image key, features reused, features computed) of one photo; no writes."""
        record, known_hash = item
        chash = known_hash if known_hash is not None else content_hash(_read_bytes(record))
        key = image_key(record, chash)
        missing = [ex for ex in extractors if not cache.has(key, ex)]
        computed = []
        if missing:
            image = load(record)
            chash = image.content_hash  # the file may have changed since enrolment
            key = image_key(record, chash)
            computed = [(ex, clean_features(ex.obj.extract(image))) for ex in missing if not cache.has(key, ex)]
        return chash, key, len(extractors) - len(missing), computed

    keys: dict[str, str] = {}
    for (record, _), outcome in zip(records, ordered_map(compute, records, workers)):
        try:
            chash, key, reused, computed = outcome.result()
            cache.reused += reused
            for ex, features in computed:
                cache.put(key, ex, features)
                cache.computed += 1
            keys[record.image_id] = key
            cache.image_ids[key] = record.image_id
            cache.sources[key] = (record, load)
            if content_hashes is not None:
                content_hashes[record.image_id] = chash
        except ImageDecodeError as exc:
            errors.append(ImageError(record.image_id, str(record.path), "decode", str(exc)))
        except Exception as exc:  # noqa: BLE001 - one bad image (or plugin bug on it) must not stop the run
            raise_if_resource_fault(exc, cache.db.blob_dir)  # a full disk is not the photo's fault: stop
            errors.append(ImageError(record.image_id, str(record.path), "features", f"{type(exc).__name__}: {exc}"))
        advance()
    cache.db.flush()
    return keys


def not_a_regular_file(path: Path) -> str | None:
    """Why ``path`` must not be read (a FIFO, device or socket would block or never end), or None."""
    if path.exists() and not path.is_file() and not path.is_dir():
        return f"{path}: not a regular file (a FIFO, device or socket); it was not read"
    return None


def _read_bytes(record: ImageRecord) -> bytes:
    special = not_a_regular_file(Path(record.path))
    if special:
        raise ImageDecodeError(special)
    try:
        return Path(record.path).read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError(f"{record.path}: file not found; check the path in the manifest") from None
    except OSError as exc:
        raise ImageDecodeError(f"{record.path}: cannot be read ({exc.strerror or exc})") from None


def image_key(record: ImageRecord, chash: str) -> str:
    """The cache identity of an image *as the extractors see it*: its content hash, plus the
    manifest's bbox / segmentation / mask file when given and the animal instance a query record
    stands for (they change the features)."""
    instance = record.extra.get(INSTANCE_KEY)
    if instance is not None:
        chash = hashlib.sha256(f"{chash}|instance {instance}".encode()).hexdigest()
    if record.bbox is None and not record.segmentation and record.mask_path is None:
        return chash
    mask_bytes = b""
    if record.mask_path is not None:
        try:
            mask_bytes = Path(record.mask_path).read_bytes()
        except OSError:
            mask_bytes = b"unreadable"
    view = f"{chash}|{record.bbox}|{record.segmentation}|".encode() + hashlib.sha256(mask_bytes).digest()
    return hashlib.sha256(view).hexdigest()


def clean_features(f: LocalFeatures) -> LocalFeatures:
    """float32 arrays with the documented shapes, non-finite rows dropped (empty stays empty)."""
    kpts = np.asarray(f.kpts, np.float32).reshape(-1, 2)
    desc = np.asarray(f.desc, np.float32)
    desc = desc.reshape(len(kpts), desc.shape[-1] if desc.ndim == 2 else -1) if len(kpts) else desc.reshape(0, desc.shape[-1] if desc.ndim == 2 else 0)
    ok = np.isfinite(kpts).all(1) & np.isfinite(desc).all(1)
    lafs = None if f.lafs is None else np.asarray(f.lafs, np.float32).reshape(-1, 2, 3)[ok]
    scores = np.asarray(f.scores, np.float32).reshape(-1)
    return LocalFeatures(kpts[ok], desc[ok], scores[ok] if len(scores) == len(kpts) else np.ones(int(ok.sum()), np.float32),
                         lafs, tuple(f.image_hw))
