"""Built-in dataset adapters: wildlife-datasets style CSV files and identity folders.

Registered through the ``reid_engine.plugins`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from reid_engine.plugin import (
    DatasetLoader,
    ImageError,
    ImageRecord,
    Manifest,
    ManifestError,
    PluginSpec,
    hookimpl,
    parse_keypoints,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".jfif"}
OPTIONAL_COLUMNS = (
    "bbox", "segmentation", "mask_path", "date", "orientation", "species", "keypoints", "sequence", "truth",
)


@dataclass(frozen=True)
class CsvConfig:
    """Options of the CSV adapter (none needed for wildlife-datasets style files)."""

    delimiter: str = ","


def _parse_bbox(text: str, where: str) -> tuple[float, float, float, float] | None:
    text = text.strip()
    if not text:
        return None
    numbers = re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text)
    if len(numbers) != 4:
        raise ManifestError(f"{where}: bbox {text!r} must hold 4 numbers: x, y, width, height (pixels)")
    x, y, w, h = (float(n) for n in numbers)
    if w <= 0 or h <= 0:
        raise ManifestError(f"{where}: bbox {text!r} has a non-positive width or height")
    return (x, y, w, h)


def _checked_keypoints(text: str, where: str) -> str | None:
    """The keypoints column as written, once it parses (a bad one raises, naming the line)."""
    parse_keypoints(text, where)
    return text or None


class CsvManifestAdapter(DatasetLoader):
    """Reads a CSV with columns ``image_id``, ``path`` and (gallery) ``identity``.

    Optional columns: bbox, segmentation, mask_path, date, orientation, species, keypoints,
    sequence, truth. Paths are relative to the CSV's folder or absolute. Other columns are
    kept in ``ImageRecord.extra``.
    """

    def __init__(self, config: CsvConfig) -> None:
        self.config = config

    def can_load(self, path: Path) -> bool:
        return path.is_file() and path.suffix.lower() in (".csv", ".tsv", ".txt")

    def load(self, path: Path, role: str) -> Manifest:
        path = Path(path)
        delimiter = "\t" if path.suffix.lower() == ".tsv" else self.config.delimiter
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise ManifestError(f"{path}: not a UTF-8 text file; save the manifest as UTF-8 CSV") from None
        reader = csv.DictReader(text.splitlines(), delimiter=delimiter)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        required = ["image_id", "path"] + (["identity"] if role == "gallery" else [])
        missing = [c for c in required if c not in columns]
        if missing:
            found = ", ".join(columns) if columns else "none (empty file?)"
            raise ManifestError(
                f"{path}: missing column {', '.join(map(repr, missing))} (columns found: {found}); "
                f"a {role} manifest needs {', '.join(required)}"
            )
        notices: list[str] = []
        has_identity = "identity" in columns
        if role == "query" and has_identity:
            notices.append(
                f"{path}: query manifest has an 'identity' column; it is NOT used to predict, only to score "
                "the run (identities absent from the gallery count as new_individual)"
            )
        records: list[ImageRecord] = []
        first_line: dict[str, int] = {}
        duplicates: list[str] = []
        for lineno, raw in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{path} line {lineno}"
            image_id = row.get("image_id", "")
            if not image_id:
                raise ManifestError(f"{where}: empty image_id; every row needs a unique image_id")
            if image_id in first_line:
                duplicates.append(f"{image_id!r} (lines {first_line[image_id]} and {lineno})")
                continue
            first_line[image_id] = lineno
            if not row.get("path"):
                raise ManifestError(f"{where}: empty path for image {image_id!r}")
            identity = row.get("identity") or None
            if role == "gallery" and identity is None:
                raise ManifestError(f"{where}: empty identity for gallery image {image_id!r}; label it or move it to the queries")
            img_path = Path(row["path"])
            if not img_path.is_absolute():
                img_path = path.parent / img_path
            mask_path = row.get("mask_path") or None
            if mask_path and not Path(mask_path).is_absolute():
                mask_path = str(path.parent / mask_path)
            truth = row.get("truth") or None
            if role == "query":
                truth = truth or identity
                identity = None
            extra = {k: v for k, v in row.items() if k not in ("image_id", "path", "identity", *OPTIONAL_COLUMNS)}
            records.append(
                ImageRecord(
                    image_id=image_id,
                    path=img_path,
                    identity=identity,
                    truth=truth,
                    bbox=_parse_bbox(row.get("bbox", ""), where),
                    mask_path=Path(mask_path) if mask_path else None,
                    segmentation=row.get("segmentation") or None,
                    date=row.get("date") or None,
                    orientation=row.get("orientation") or None,
                    species=row.get("species") or None,
                    sequence=row.get("sequence") or None,
                    keypoints=_checked_keypoints(row.get("keypoints", ""), where),
                    extra=extra,
                )
            )
        if duplicates:
            shown = "; ".join(duplicates[:5]) + (f"; and {len(duplicates) - 5} more" if len(duplicates) > 5 else "")
            raise ManifestError(f"{path}: duplicate image_id {shown}; image ids must be unique")
        if not records:
            raise ManifestError(f"{path}: the manifest lists no images")
        return Manifest(tuple(records), str(path), tuple(notices))


@dataclass(frozen=True)
class FolderConfig:
    """Options of the folder adapter."""

    follow_symlinks: bool = True


class FolderManifestAdapter(DatasetLoader):
    """A gallery folder holds one subfolder per identity; a query folder is flat (or nested).

    ``image_id`` is the path relative to the folder, without suffix (``identity/photo``).
    """

    def __init__(self, config: FolderConfig) -> None:
        self.config = config

    def can_load(self, path: Path) -> bool:
        return path.is_dir()

    def load(self, path: Path, role: str) -> Manifest:
        path = Path(path)
        images, skipped = _scan(path, self.config.follow_symlinks)
        if not images:
            raise ManifestError(
                f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                + ("a gallery folder needs one subfolder of photos per identity" if role == "gallery" else "put query photos in it")
            )
        records = []
        notices = []
        loose = []
        seen: dict[str, str] = {}
        for p in images:
            rel = p.relative_to(path)
            image_id = rel.with_suffix("").as_posix()
            if image_id in seen:
                raise ManifestError(
                    f"{path}: {seen[image_id]} and {rel.as_posix()} would both be image {image_id!r}; "
                    "rename one of them (image ids are paths without the suffix)"
                )
            seen[image_id] = rel.as_posix()
            if role == "gallery":
                if len(rel.parts) < 2:
                    loose.append(rel.as_posix())
                    skipped.append(ImageError(image_id, str(p), "scan", f"{p}: at the top level of the gallery folder, "
                                              "so it has no identity; put it in a subfolder named after its individual"))
                    continue
                identity = rel.parts[0]
                records.append(ImageRecord(image_id=image_id, path=p, identity=identity))
            else:
                records.append(ImageRecord(image_id=image_id, path=p))
        if loose:
            notices.append(
                f"{path}: {len(loose)} image(s) at the top level have no identity and were skipped "
                f"(e.g. {loose[0]}); put each identity's photos in a subfolder named after it"
            )
        if not records:
            raise ManifestError(f"{path}: no images inside identity subfolders; a gallery folder needs <identity>/<photo> files")
        return Manifest(tuple(records), str(path), tuple(notices), tuple(skipped))


def _scan(folder: Path, follow_symlinks: bool = True) -> tuple[list[Path], list[ImageError]]:
    """The image files under ``folder`` (sorted; hidden names left out) and every other file
    passed over, with why: an unsupported format, a dangling link, a special file (FIFO,
    device, socket: never opened, so a scan cannot hang on one), a linked folder not followed
    (``follow_symlinks`` false) or met a second time (a link loop, or two links to one folder)."""
    images, skipped = [], []

    def skip(p: Path, reason: str) -> None:
        skipped.append(ImageError(p.relative_to(folder).with_suffix("").as_posix(), str(p), "scan", reason))

    seen_dirs = {os.path.realpath(folder)}
    for top, dirs, files in os.walk(folder, followlinks=follow_symlinks):
        base = Path(top)
        for name in sorted(dirs):
            d = base / name
            if name.startswith("."):
                dirs.remove(name)
            elif d.is_symlink() and not follow_symlinks:
                dirs.remove(name)
                skip(d, f"{d}: a link to the folder {os.readlink(d)}, not followed (follow_symlinks = false)")
            elif d.is_symlink():
                real = os.path.realpath(d)
                if any(d == real or d.startswith(real + os.sep) for d in seen_dirs):  # holds a scanned folder
                    dirs.remove(name)
                    skip(d, f"{d}: a link to {os.readlink(d)}, a folder already scanned (a link loop, or two "
                            "links to one folder); its photos are listed once")
                else:
                    seen_dirs.add(real)
            else:
                seen_dirs.add(os.path.realpath(d))
        dirs.sort()
        for name in sorted(files):
            p = base / name
            if name.startswith("."):
                continue
            if p.is_symlink() and not p.exists():
                skip(p, f"{p}: a link to {os.readlink(p)}, which does not exist; fix or remove the link")
            elif not p.is_file():
                skip(p, f"{p}: not a regular file (a FIFO, device or socket); it was not read")
            elif p.suffix.lower() not in IMAGE_SUFFIXES:
                skip(p, f"{p}: {p.suffix or 'no suffix'} is not an image format reid-engine reads "
                        f"({', '.join(sorted(IMAGE_SUFFIXES))}); convert it (e.g. HEIC to JPEG) or move it out")
            else:
                images.append(p)
    return sorted(images), sorted(skipped, key=lambda e: e.path)


@hookimpl
def register_datasets(register):
    register(PluginSpec(
        name="csv", kind="dataset", version="1", config_cls=CsvConfig,
        build=lambda config, device: CsvManifestAdapter(config),
        description="wildlife-datasets style CSV (image_id, identity, path, ...)",
    ))
    register(PluginSpec(
        name="folder", kind="dataset", version="1", config_cls=FolderConfig,
        build=lambda config, device: FolderManifestAdapter(config),
        description="a folder: one subfolder per identity (gallery) or flat (queries)",
    ))
