"""What ``--dataset`` names: a folder or CSV in the wildlife-datasets style, a built-in
synthetic seal set, or a wildlife-datasets dataset already downloaded.

Every dataset becomes one labelled manifest (``metadata.csv``: ``image_id,identity,path`` and
optional ``orientation``, ``date``, ``mask_path``, ``sequence``, ``species`` ...; paths relative
to the CSV's folder) and, when it has them, its own fixed splits (``splits/<kind>.csv``).
Nothing is ever downloaded.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import importlib.util
import io
from dataclasses import dataclass
from pathlib import Path

from reid_engine.errors import UsageError
from reid_engine.files import write_atomic
from reid_engine.records import NEW_INDIVIDUAL
from reid_engine.synthetic.seals import SealDatasetConfig, generate_seal_dataset

REQUIRED_COLUMNS = ("image_id", "identity", "path")
# the generator's own knobs, from easy to hard; "synthetic-seal-tiny" is the test tier's
SYNTHETIC: dict[str, SealDatasetConfig] = {
    "synthetic-seal-tiny": SealDatasetConfig(n_known=4, n_unknown=1, gallery_per_individual=2, queries_per_known=2,
                                             queries_per_unknown=2, image_size=(192, 256), seed=11),
    "synthetic-seal-easy": SealDatasetConfig(n_known=20, n_unknown=5, gallery_per_individual=3, queries_per_known=2,
                                             queries_per_unknown=2, seed=21, pose_variation=0.5, occlusion=0.5, blur=0.5),
    "synthetic-seal": SealDatasetConfig(n_known=30, n_unknown=8, gallery_per_individual=3, queries_per_known=2,
                                        queries_per_unknown=2, seed=22),
    "synthetic-seal-hard": SealDatasetConfig(n_known=40, n_unknown=10, gallery_per_individual=3, queries_per_known=2,
                                             queries_per_unknown=2, seed=23, pose_variation=1.6, occlusion=1.8, blur=1.8),
    # synthetic-seal with a second seal beside the queried one in half of the query encounters
    # (each seal its own query rows, mask and sequence: the Ladoga groups of seals)
    "synthetic-seal-group": SealDatasetConfig(n_known=30, n_unknown=8, gallery_per_individual=3, queries_per_known=2,
                                              queries_per_unknown=2, seed=22, multi_seal=0.5),
}
WILDLIFE_PREFIX = "wildlife:"
UNLABELLED = {"", "unknown", "nan", "none"}


@dataclass(frozen=True)
class Dataset:
    """One dataset ready for the harness.

    name          how results name it (``--dataset`` for built-ins, the folder's name otherwise)
    metadata      the labelled manifest every cell reads (the dataset's own, or one written here)
    splits_dir    the dataset's fixed splits (``<kind>.csv``: image_id,split[,truth]), if any
    source        where it came from, in words
    """

    name: str
    metadata: Path
    splits_dir: Path | None
    source: str

    def rows(self) -> list[dict[str, str]]:
        """The manifest's rows (column → value), labelled photos only."""
        with self.metadata.open(encoding="utf-8-sig", newline="") as handle:
            return [r for r in csv.DictReader(handle) if (r.get("identity") or "").strip().lower() not in UNLABELLED]

    def columns(self) -> list[str]:
        with self.metadata.open(encoding="utf-8-sig", newline="") as handle:
            return list(csv.DictReader(handle).fieldnames or [])


def builtin_names() -> list[str]:
    return sorted(SYNTHETIC)


def resolve_dataset(spec: str, workdir: Path) -> Dataset:
    """``--dataset`` → :class:`Dataset`; built-in synthetic sets are generated under ``workdir``."""
    if spec in SYNTHETIC:
        return synthetic_dataset(spec, SYNTHETIC[spec], Path(workdir) / "datasets" / spec)
    if spec.startswith(WILDLIFE_PREFIX):
        return wildlife_dataset(spec[len(WILDLIFE_PREFIX):], Path(workdir) / "datasets")
    path = Path(spec).expanduser()
    if path.is_dir():
        metadata = path / "metadata.csv"
        if not metadata.is_file():
            raise UsageError(f"--dataset {spec}: the folder has no metadata.csv (columns image_id,identity,path, "
                             "paths relative to the folder)")
        return _checked(Dataset(path.resolve().name, metadata.resolve(), _splits_dir(path), f"folder {path}"))
    if path.is_file() and path.suffix.lower() == ".csv":
        return _checked(Dataset(path.stem, path.resolve(), _splits_dir(path.parent), f"CSV {path}"))
    raise UsageError(f"--dataset {spec}: not a folder with metadata.csv, a CSV file, a built-in ("
                     f"{', '.join(builtin_names())}) or {WILDLIFE_PREFIX}NAME=ROOT (a downloaded wildlife-datasets copy)")


def _splits_dir(folder: Path) -> Path | None:
    splits = folder / "splits"
    return splits.resolve() if splits.is_dir() else None


def _checked(dataset: Dataset) -> Dataset:
    missing = [c for c in REQUIRED_COLUMNS if c not in dataset.columns()]
    if missing:
        raise UsageError(f"{dataset.metadata}: missing column(s) {', '.join(missing)} (a dataset manifest has "
                         "image_id,identity,path)")
    if not dataset.rows():
        raise UsageError(f"{dataset.metadata}: no labelled photo (every identity is empty or 'unknown')")
    return dataset


def synthetic_dataset(name: str, config: SealDatasetConfig, folder: Path) -> Dataset:
    """Generate (or reuse) the synthetic seal set; write its one labelled manifest (every photo
    with its individual, unknown ones included) and its own fixed splits, the generator's:
    ``open`` (its gallery; its queries, of known and unknown individuals) and ``closed`` (the
    same without the unknown individuals). A known individual's queries are one sequence."""
    data = generate_seal_dataset(folder / "data", config)
    columns = ["image_id", "identity", "path", "mask_path", "sequence", "species", "orientation", "keypoints"]
    rows, splits = [], []
    for source, label, role in ((data.gallery_csv, "identity", "gallery"), (data.query_csv, "individual", "query")):
        with source.open(encoding="utf-8", newline="") as handle:
            for r in csv.DictReader(handle):
                rows.append({**{c: r.get(c, "") for c in columns}, "identity": r[label],
                             "path": f"data/{r['path']}", "mask_path": f"data/{r['mask_path']}"})
                splits.append((r["image_id"], role, r.get("truth") or r[label]))
    write_csv(folder / "metadata.csv", columns, sorted(rows, key=lambda r: r["image_id"]))
    split_columns = ["image_id", "split", "truth"]
    write_csv(folder / "splits" / "open.csv", split_columns,
                [dict(zip(split_columns, row)) for row in splits])
    write_csv(folder / "splits" / "closed.csv", split_columns,
                [dict(zip(split_columns, row)) for row in splits if row[2] != NEW_INDIVIDUAL])
    return Dataset(name, (folder / "metadata.csv").resolve(), (folder / "splits").resolve(),
                   f"built-in synthetic seals {dataclasses.asdict(config)}")


def wildlife_dataset(spec: str, workdir: Path) -> Dataset:
    """``NAME=ROOT``: a dataset class of the ``wildlife-datasets`` package over a copy the user
    downloaded to ROOT (``wildlife_datasets.datasets.NAME(ROOT).df``)."""
    name, _, root = spec.partition("=")
    if not name or not root:
        raise UsageError(f"--dataset {WILDLIFE_PREFIX}{spec}: write {WILDLIFE_PREFIX}NAME=ROOT, e.g. "
                         f"{WILDLIFE_PREFIX}SealID=/data/SealID (a copy you downloaded)")
    if importlib.util.find_spec("wildlife_datasets") is None:
        raise UsageError(f"--dataset {WILDLIFE_PREFIX}{spec}: needs the wildlife-datasets package "
                         "(pip install wildlife-datasets); the harness never downloads data")
    root_path = Path(root).expanduser()
    if not root_path.is_dir():
        raise UsageError(f"--dataset {WILDLIFE_PREFIX}{spec}: {root_path} is not there; download {name} with "
                         "wildlife-datasets first (the harness never downloads data)")
    module = importlib.import_module("wildlife_datasets.datasets")
    cls = getattr(module, name, None)
    if cls is None:
        raise UsageError(f"--dataset {WILDLIFE_PREFIX}{spec}: wildlife_datasets.datasets has no dataset {name!r}")
    try:
        frame = cls(str(root_path)).df
    except Exception as exc:  # noqa: BLE001 - the package's own errors, for a copy it cannot read
        raise UsageError(f"--dataset {WILDLIFE_PREFIX}{spec}: wildlife-datasets could not load {root_path} "
                         f"({type(exc).__name__}: {exc})") from None
    columns = ["image_id", "identity", "path"] + [c for c in ("orientation", "date", "species") if c in frame.columns]
    rows = [{c: "" if frame[c].iloc[i] is None else str(frame[c].iloc[i]) for c in columns} for i in range(len(frame))]
    for r in rows:
        r["path"] = str((root_path / r["path"]).resolve())
    metadata = workdir / f"wildlife-{name}" / "metadata.csv"
    write_csv(metadata, columns, rows)
    return _checked(Dataset(name, metadata.resolve(), _splits_dir(root_path), f"wildlife-datasets {name} at {root_path}"))


def write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> Path:
    """Write ``rows`` as a CSV with ``columns`` atomically (files.write_atomic); returns the resolved path."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(Path(path), buffer.getvalue().encode("utf-8"))
    return Path(path).resolve()
