"""The gallery: enrol a labelled manifest, make sure every enrolled image has its cached features,
and score a query's truth against what the gallery holds."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path
from typing import Callable

from reid_engine.components import Components
from reid_engine.errors import ImageDecodeError, UsageError
from reid_engine.inputs.animals import each_animal
from reid_engine.inputs.images import check_decodable
from reid_engine.inputs.manifests import UNKNOWN_GROUP
from reid_engine.inputs.views import gallery_record, image_loader, segmentation_of
from reid_engine.progress import Progress
from reid_engine.records import NEW_INDIVIDUAL, ImageError, ImageRecord, Manifest
from reid_engine.registry.profiles import Profile
from reid_engine.store.database import GalleryDatabase, GalleryImage, content_hash
from reid_engine.store.features import FeatureCache, ensure_features, not_a_regular_file

METADATA_FIELDS = ("bbox", "mask_path", "segmentation", "date", "orientation", "species", "sequence", "keypoints")


def enroll_manifest(db: GalleryDatabase, manifest: Manifest, errors: list[ImageError],
                    notices: list[str] | None = None) -> tuple[int, int]:
    """Hash and enrol a labelled manifest's images; unreadable files, and the files its loader
    passed over (``manifest.skipped``), go to ``errors``; photos enrolled twice (the same content
    under two identities, or under several image ids) are said in ``notices``."""
    errors.extend(manifest.skipped)
    entries = []
    for record in manifest.records:
        special = not_a_regular_file(Path(record.path))
        if special:
            errors.append(ImageError(record.image_id, str(record.path), "enroll", special))
            continue
        try:
            data = Path(record.path).read_bytes()
        except OSError as exc:
            reason = "file not found; check the path in the manifest" if isinstance(exc, FileNotFoundError) else str(exc)
            errors.append(ImageError(record.image_id, str(record.path), "enroll", f"{record.path}: {reason}"))
            continue
        if not data:
            errors.append(ImageError(record.image_id, str(record.path), "enroll", f"{record.path}: file is empty"))
            continue
        try:
            check_decodable(data, str(record.path))
        except ImageDecodeError as exc:  # not enrolled, so never counted as enrolled
            errors.append(ImageError(record.image_id, str(record.path), "enroll", str(exc)))
            continue
        meta = {k: getattr(record, k) for k in METADATA_FIELDS if getattr(record, k) is not None}
        meta = {k: (str(Path(v).resolve()) if isinstance(v, Path) else v) for k, v in meta.items()}
        entries.append((record.image_id, content_hash(data), str(Path(record.path).resolve()), record.identity, meta))
    if notices is not None:
        notices.extend(duplicate_notices(db.gallery(), [(e[0], e[1], e[3]) for e in entries], manifest.source))
    return db.enroll(entries, manifest.source)


def duplicate_notices(enrolled: list[GalleryImage], entries: list[tuple[str, str, str]], source: str) -> list[str]:
    """What a manifest's (image_id, content hash, identity) ``entries`` duplicate, with what is
    already ``enrolled``: one photo's content under two identities (a label is wrong), or under
    several image ids of one identity (the gallery would hold it twice). Only groups that touch
    the manifest are reported."""
    holders: dict[str, dict[str, str]] = defaultdict(dict)  # content hash -> image id -> identity
    for g in enrolled:
        holders[g.content_hash][g.image_id] = g.identity
    mine = set()
    for image_id, chash, identity in entries:
        holders[chash][image_id] = identity
        mine.add(chash)
    groups = [holders[h] for h in sorted(mine) if len(holders[h]) > 1]
    if not groups:
        return []

    def show(group: dict[str, str]) -> str:
        return " = ".join(f"{i!r} ({ident})" for i, ident in sorted(group.items())[:3])

    labels = [g for g in groups if len(set(g.values())) > 1]
    copies = [g for g in groups if len(set(g.values())) == 1]
    out = []
    if labels:
        out.append(f"{source}: {len(labels)} photo(s) are the same file under two identities, e.g. "
                   f"{'; '.join(show(g) for g in labels[:2])}; one label is wrong: fix it, or the photo counts as "
                   "two individuals")
    if copies:
        out.append(f"{source}: {len(copies)} photo(s) are the same file under several image ids, e.g. "
                   f"{'; '.join(show(g) for g in copies[:2])}; the gallery holds every copy (an identity with copies "
                   "weighs more): drop the copies from the manifest, or re-enrol under the old image ids")
    return out


def truth_against_gallery(record: ImageRecord, identities: set[str]) -> ImageRecord:
    """A query whose true identity is not in the gallery is, for scoring, a new individual."""
    if record.truth is None or record.truth == NEW_INDIVIDUAL or record.truth in identities:
        return record
    return dataclasses.replace(record, truth=NEW_INDIVIDUAL, extra={**record.extra, UNKNOWN_GROUP: record.truth})


def ensure_gallery_features(gallery: list[GalleryImage], components: Components, profile: Profile,
                            cache: FeatureCache, errors: list[ImageError],
                            advance: Callable[[], None] = lambda: None) -> dict[str, str]:
    """Cached features of every enrolled image for every extractor the profile needs
    (image_id → image key; unusable images go to ``errors``)."""
    return ensure_features([(gallery_record(g), g.content_hash) for g in gallery], components.extractors(), cache,
                           image_loader(components, profile, cache.db), errors, advance,
                           workers=components.feature_workers())


def enrol_gallery(db: GalleryDatabase, manifest: Manifest | None, split: bool,
                  errors: list[ImageError], notices: list[str] | None = None) -> tuple[list[GalleryImage], int, int]:
    """Enrol ``manifest`` (if any) and return (the gallery, images added now, already enrolled).

    With ``split`` the manifest defines the gallery exactly: images enrolled by other runs stay
    out (they could be this split's queries). An empty gallery is a UsageError."""
    added = unchanged = 0
    if manifest is not None:
        added, unchanged = enroll_manifest(db, manifest, errors, notices)
    gallery = db.gallery()
    if split:
        wanted = {r.image_id for r in manifest.records}
        gallery = [g for g in gallery if g.image_id in wanted]
    if not gallery:
        raise UsageError(f"{db.path}: the gallery is empty; pass --gallery or run `reid-engine enroll` first")
    return gallery, added, unchanged


def ensure_query_features(records: list[ImageRecord], gallery: list[GalleryImage], components: Components,
                          profile: Profile, cache: FeatureCache, errors: list[ImageError],
                          progress: Progress) -> tuple[list[ImageRecord], dict[str, str], dict[str, str]]:
    """Cached features of every query (one query per animal under instance policy ``each``).

    Returns (usable queries, their truth scored against the gallery's identities; image_id →
    image key; image_id → content hash); unusable queries go to ``errors``."""
    segmentation = segmentation_of(components, profile, cache.db)
    if segmentation is not None and profile.segment.instance == "each":
        records = each_animal(records, segmentation, profile, errors)
    advance = progress.task("query features", len(records))
    content: dict[str, str] = {}
    keys = ensure_features([(r, None) for r in records], components.extractors(), cache,
                           image_loader(components, profile, cache.db), errors, advance, content,
                           workers=components.feature_workers())
    identities = {g.identity for g in gallery}
    queries = [truth_against_gallery(r, identities) for r in records if r.image_id in keys]
    return queries, keys, content
