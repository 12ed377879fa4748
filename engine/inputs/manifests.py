"""Reading gallery/query manifests through the dataset-adapter plugins, and split files."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from reid_engine.errors import ManifestError, UsageError
from reid_engine.records import NEW_INDIVIDUAL, Manifest
from reid_engine.registry import PluginTable

GALLERY_SPLITS = {"gallery", "database", "train", "reference"}
QUERY_SPLITS = {"query", "test", "queries"}
# key in ImageRecord.extra: the true individual of a query whose truth is new_individual
# (so BAUS can be balanced per unknown individual)
UNKNOWN_GROUP = "unknown_individual"


def load_manifest(path: Path, role: str, table: PluginTable) -> Manifest:
    """Load ``path`` (CSV file or folder) with the first dataset adapter that accepts it."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"{path}: no such file or folder; pass a manifest CSV or an image folder as --{role}")
    for name in table.names("dataset"):
        spec = table.get("dataset", name)
        adapter = spec.build(spec.make_config({}), "cpu")
        if adapter.can_load(path):
            return _no_reserved_identity(adapter.load(path, role))
    adapters = ", ".join(table.names("dataset")) or "none installed"
    raise ManifestError(f"{path}: no dataset adapter reads this (adapters: {adapters}); pass a .csv file or a folder")


def _no_reserved_identity(manifest: Manifest) -> Manifest:
    """``new_individual`` is the answer "not in the gallery": no photo may be labelled with it."""
    reserved = [r for r in manifest.records if r.identity == NEW_INDIVIDUAL]
    if reserved:
        raise ManifestError(f"{manifest.source}: {len(reserved)} photo(s) are labelled {NEW_INDIVIDUAL!r} (first: image "
                            f"{reserved[0].image_id}); that name is reserved for \"not in the gallery\": give those "
                            "photos their individual's name, or leave them out of the gallery")
    return manifest


def apply_split(manifest: Manifest, split_csv: Path) -> tuple[Manifest, Manifest]:
    """Split one labelled manifest into (gallery, query) with a CSV ``image_id,split[,truth]``.

    ``split`` is gallery/database/train or query/test. Query records lose their identity (it
    becomes their ``truth``, or the split's ``truth`` column when given, e.g. new_individual).
    """
    split_csv = Path(split_csv)
    if not split_csv.is_file():
        raise ManifestError(f"{split_csv}: split file not found")
    with split_csv.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "image_id" not in columns or "split" not in columns:
            raise ManifestError(f"{split_csv}: a split file needs columns image_id and split (found: {', '.join(columns)})")
        rows = list(reader)
    by_id = {r.image_id: r for r in manifest.records}
    gallery, query, unknown_ids = [], [], []
    for lineno, row in enumerate(rows, start=2):
        image_id = (row.get("image_id") or "").strip()
        split = (row.get("split") or "").strip().lower()
        record = by_id.get(image_id)
        if record is None:
            unknown_ids.append(image_id)
            continue
        if split in GALLERY_SPLITS:
            gallery.append(record)
        elif split in QUERY_SPLITS:
            truth = (row.get("truth") or "").strip() or record.identity or None
            extra = {**record.extra, UNKNOWN_GROUP: record.identity} if truth == NEW_INDIVIDUAL and record.identity else record.extra
            query.append(dataclasses.replace(record, identity=None, truth=truth, extra=extra))
        else:
            raise ManifestError(
                f"{split_csv} line {lineno}: split {split!r} is neither a gallery split "
                f"({', '.join(sorted(GALLERY_SPLITS))}) nor a query split ({', '.join(sorted(QUERY_SPLITS))})"
            )
    if unknown_ids:
        raise ManifestError(
            f"{split_csv}: {len(unknown_ids)} image id(s) not in {manifest.source} (e.g. {unknown_ids[0]!r}); "
            "use the split file that belongs to this manifest"
        )
    if not gallery or not query:
        raise ManifestError(f"{split_csv}: the split needs both gallery and query rows")
    gallery_ids = {r.identity for r in gallery}
    query = [
        dataclasses.replace(r, truth=NEW_INDIVIDUAL, extra={**r.extra, UNKNOWN_GROUP: r.truth})
        if r.truth and r.truth not in gallery_ids else r
        for r in query
    ]
    return (Manifest(tuple(gallery), f"{manifest.source} [{split_csv.name}: gallery]", manifest.notices, manifest.skipped),
            Manifest(tuple(query), f"{manifest.source} [{split_csv.name}: query]"))


def run_manifests(gallery: Path | None, query: Path | None, split: Path | None,
                  table: PluginTable) -> tuple[Manifest | None, Manifest]:
    """The (gallery, query) manifests of a run: ``--gallery`` and ``--query``, or ``--split`` of
    ``--gallery`` into both. There must be queries; the gallery may already be enrolled."""
    gallery_manifest = query_manifest = None
    if split is not None:
        if gallery is None:
            raise UsageError("--split needs --gallery: the labelled manifest the split refers to")
        if query is not None:
            raise UsageError("--split makes the queries from --gallery; do not pass --query as well")
        gallery_manifest, query_manifest = apply_split(load_manifest(gallery, "gallery", table), split)
    else:
        if gallery is not None:
            gallery_manifest = load_manifest(gallery, "gallery", table)
        if query is not None:
            query_manifest = load_manifest(query, "query", table)
    if query_manifest is None:
        raise UsageError("no queries: pass --query (a CSV or a folder of photos), or --split with --gallery")
    return gallery_manifest, query_manifest
