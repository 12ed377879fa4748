"""``reid-engine enroll``: add labelled photos to a gallery database, and cache their features."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from reid_engine.components import build_components
from reid_engine.device import resolve_device
from reid_engine.errors import ReidError
from reid_engine.inputs.enrolment import enroll_manifest, ensure_gallery_features
from reid_engine.inputs.manifests import load_manifest
from reid_engine.outputs.tables import write_errors
from reid_engine.records import ImageError
from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import resolve_profile
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache


@dataclass
class Enrolled:
    """What :func:`enroll` did."""

    added: int  # images new to the database
    unchanged: int  # images it already held
    counts: dict[str, int]  # the database afterwards: "images", "individuals"
    errors: list[ImageError] = field(default_factory=list)  # images that could not be used
    errors_csv: Path | None = None  # where they are listed (None: no errors)


def enroll(gallery: Path, db: Path, table: PluginTable, *, extract: bool = True, species: str | None = None,
           profile_file: Path | None = None, device: str = "auto",
           notify: Callable[[str], None] = lambda message: None) -> Enrolled:
    """Enrol the labelled manifest (CSV or identity folders) ``gallery`` into the database ``db``.

    With ``extract`` the profile (``profile_file``, else the one of ``species``) is resolved once
    the images are enrolled, and the features it needs are computed and cached now. Notices (the
    manifest's, the profile fallback) go to ``notify`` as they come. Images that cannot be used
    are listed in ``DB-enroll-errors.csv`` next to the database; when none of the manifest's
    images is usable, that file is written and a ReidError stops the command.
    """
    manifest = load_manifest(gallery, "gallery", table)
    for notice in manifest.notices:
        notify(notice)
    errors: list[ImageError] = []
    with GalleryDatabase(db) as database:
        duplicates: list[str] = []
        added, unchanged = enroll_manifest(database, manifest, errors, duplicates)
        for notice in duplicates:
            notify(notice)
        if extract:
            profile, notice = resolve_profile(species, profile_file)
            if notice:
                notify(notice)
            comps = build_components(profile, table, resolve_device(device))
            ensure_gallery_features(database.gallery(), comps, profile, FeatureCache(database), errors)
        counts = database.counts()
    errors_csv = None
    if errors:
        errors_csv = db.with_name(db.stem + "-enroll-errors.csv")
        write_errors(errors_csv, errors)
        if added + unchanged == 0:  # as run's "no gallery image could be used": stop with the first reason
            raise ReidError(f"none of the {len(errors)} photo(s) in {gallery} could be used (first: "
                            f"{errors[0].reason}); fix or replace them and enrol again; all are listed in {errors_csv}")
    return Enrolled(added, unchanged, counts, errors, errors_csv)
