"""``reid-engine explain``: draw what each pipeline matched between two photos."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from reid_engine.components import build_components
from reid_engine.errors import ReidError, UsageError
from reid_engine.inputs.views import (
    gallery_record,
    image_loader,
    load_view,
    segmentation_of,
)
from reid_engine.outputs.drawing import image_format, save_png
from reid_engine.outputs.evidence import draw_evidence
from reid_engine.records import ImageRecord
from reid_engine.scoring.pairs import PairEvidence, match_pair
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache, ensure_features


@dataclass
class Explained:
    """One drawing written by :func:`explain_files`."""

    path: Path
    evidence: PairEvidence


def explain_files(query: str, gallery: str, profile, table, out: Path, *, pipeline: str | None = None,
                  db: Path | None = None, device: str = "cpu", max_width: int = 1600) -> list[Explained]:
    """Draw the matches of ``query`` against ``gallery`` for the profile's pipelines.

    ``query`` / ``gallery`` are image files; with ``db`` the gallery may also be an enrolled
    image_id, and the database's feature cache is used (and filled), else features are computed
    in a throw-away cache. With ``pipeline`` only that pipeline is built and drawn, to ``out`` (so
    another pipeline's missing weight or broken plugin does not stop it, and no model it alone
    needs is loaded); else every pipeline of the profile, to ``out`` when there is one and to
    ``OUT-PIPELINE.SUFFIX`` each when there are several. ``out`` must end in .png, .jpg or
    .jpeg (the format follows it), else a UsageError names --out before any work is done.
    """

    names = [p.name for p in profile.pipelines]
    if not names:
        raise UsageError(f"{profile.source}: profile {profile.name!r} has no [[pipelines]]; explain draws the "
                         "matches of a local-matching pipeline, so pick a profile that has one")
    if pipeline is not None and pipeline not in names:
        raise UsageError(f"--pipeline {pipeline!r}: profile {profile.name!r} has no such pipeline; "
                         f"choose one of: {', '.join(names)}")
    if db is not None and not Path(db).is_file():
        raise UsageError(f"--db {db}: no such gallery database; pass the file a run or enroll wrote, or leave --db out")
    out = Path(out)
    image_format(out)  # a bad --out fails now, not after the features are computed
    if pipeline is not None:  # build that pipeline only: the others may need weights that are not installed
        profile = dataclasses.replace(profile, pipelines=tuple(p for p in profile.pipelines if p.name == pipeline))
    drawn = [p.name for p in profile.pipelines]
    targets = [out] if len(drawn) == 1 else [out.with_name(f"{out.stem}-{n}{out.suffix}") for n in drawn]

    with tempfile.TemporaryDirectory(prefix="reid-explain-") as tmp, \
            GalleryDatabase(Path(db) if db is not None else Path(tmp) / "explain.db") as database:
        enrolled = database.gallery() if db is not None else []
        q_record, q_hash = _resolve(query, "QUERY", enrolled, db)
        g_record, g_hash = _resolve(gallery, "GALLERY_IMAGE", enrolled, db)
        components = build_components(profile, table, device)
        chosen = components.pipelines
        cache = FeatureCache(database)
        extractors = list({p.extractor.cache_id: p.extractor for p in chosen}.values())
        load = image_loader(components, profile, database)
        keys = []
        for record, chash in ((q_record, q_hash), (g_record, g_hash)):
            errors: list = []
            found = ensure_features([(record, chash)], extractors, cache, load, errors)
            if errors:
                err = errors[0]
                raise (UsageError if err.stage == "decode" else ReidError)(err.reason)
            keys.append(found[record.image_id])
        settings, segmentation = profile.image, segmentation_of(components, profile, database)
        images = [load_view(r, settings.max_side, settings.min_side, segmentation) for r in (q_record, g_record)]
        title = f"query {_label(q_record)}  vs  gallery {_label(g_record)}"
        written = []
        for p, target in zip(chosen, targets):
            f1, f2 = cache.get(keys[0], p.extractor), cache.get(keys[1], p.extractor)
            if f1 is None or f2 is None:
                raise ReidError(f"cached {p.extractor.spec.name} features vanished from {database.blob_dir}; run again")
            evidence = match_pair(p, f1, f2)
            save_png(target, draw_evidence(images[0], images[1], f1, f2, evidence, title, max_width))
            written.append(Explained(target, evidence))
    return written


def _label(record: ImageRecord) -> str:
    name = Path(record.path).name
    extra = f" ({record.identity})" if record.identity else ""
    return (name if record.image_id == Path(name).stem else f"{record.image_id} [{name}]") + extra


def _resolve(arg: str, role: str, enrolled: Sequence, db: Path | None) -> tuple[ImageRecord, str | None]:
    """An argument as (record, known content hash): an image file, or an enrolled image_id."""

    path = Path(arg)
    if path.is_file():
        resolved = str(path.resolve())
        for g in enrolled:  # an enrolled file keeps its bbox / mask / identity
            if g.path == resolved:
                return gallery_record(g), None
        return ImageRecord(image_id=path.stem, path=path), None
    for g in enrolled:
        if g.image_id == arg:
            return gallery_record(g), g.content_hash
    if path.is_dir():
        raise UsageError(f"{role} {arg}: is a folder; pass one image file")
    where = f", and no image enrolled in {db} has that image_id" if db is not None else ""
    raise UsageError(f"{role} {arg}: no such file{where}; pass an image file path"
                     + ("" if db is not None else " (or, with --db, an enrolled image_id)"))
