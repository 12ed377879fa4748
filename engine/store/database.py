"""The gallery database: one SQLite file (WAL, versioned schema) plus a folder of blobs.

Tables: ``individuals``, ``images`` (content hash, path, identity, metadata JSON),
``enrolments`` (who was added when, from which manifest), ``features`` (index of cached
per-image feature blobs) and ``models`` (fitted PCA/GMM, calibrators, ... with what they
were fitted on). Blobs (``.npz``) live in ``<db>.d/`` and are written to a temporary name and
renamed, so a killed run never leaves a half-written blob under a real name; the blob file is
the truth and its table row an index, so a row lost to a kill is simply written again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import sqlite3
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from reid_engine.errors import DatabaseError, ResourceError, UsageError
from reid_engine.files import write_atomic

SCHEMA_VERSION = 1

# version -> statements that bring a database from version-1 to version (forward only)
MIGRATIONS: dict[int, list[str]] = {
    1: [
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS individuals (identity TEXT PRIMARY KEY, created_at TEXT NOT NULL)",
        """CREATE TABLE IF NOT EXISTS images (
               image_id TEXT PRIMARY KEY,
               content_hash TEXT NOT NULL,
               path TEXT NOT NULL,
               identity TEXT NOT NULL REFERENCES individuals(identity),
               metadata TEXT NOT NULL DEFAULT '{}',
               added_at TEXT NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS images_by_hash ON images(content_hash)",
        "CREATE INDEX IF NOT EXISTS images_by_identity ON images(identity)",
        """CREATE TABLE IF NOT EXISTS enrolments (
               id INTEGER PRIMARY KEY AUTOINCREMENT,
               image_id TEXT NOT NULL,
               identity TEXT NOT NULL,
               source TEXT NOT NULL,
               enrolled_at TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS features (
               key TEXT PRIMARY KEY,
               content_hash TEXT NOT NULL,
               plugin TEXT NOT NULL,
               version TEXT NOT NULL,
               config_hash TEXT NOT NULL,
               nbytes INTEGER NOT NULL,
               created_at TEXT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS models (
               key TEXT PRIMARY KEY,
               kind TEXT NOT NULL,
               plugin TEXT NOT NULL,
               version TEXT NOT NULL,
               config_hash TEXT NOT NULL,
               fitted_on TEXT NOT NULL,
               created_at TEXT NOT NULL)""",
    ],
}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def database_error(path: Path, exc: sqlite3.Error) -> DatabaseError | ResourceError:
    """One sentence for an SQLite error on the database at ``path`` that names the real cause."""
    text = str(exc).lower()
    if "disk is full" in text or "database or disk is full" in text:
        return ResourceError(f"{path}: no space left on the device for the gallery database; free space (or pass "
                             "--db on another disk) and run again: what is already stored is kept")
    if "locked" in text or "busy" in text:
        return DatabaseError(f"{path}: the gallery database is locked by another process (another reid-engine run?) "
                             "and stayed locked for 30 s; wait for it to finish, or pass another --db")
    if "readonly" in text or "read-only" in text or "unable to open" in text or "disk i/o" in text:
        return DatabaseError(f"{path}: the gallery database cannot be written ({exc}): check that the file and its "
                             "folder are writable and the disk is mounted read-write, or pass another --db")
    if "not a database" in text or "malformed" in text or "encrypted" in text:
        return DatabaseError(f"{path}: not a reid-engine gallery database ({exc}); pass another --db path")
    return DatabaseError(f"{path}: gallery database error ({exc}); run again, and if it persists pass another --db")


def feature_key(content_hash: str, plugin: str, version: str, config_hash: str) -> str:
    """Cache key of one image's features under one plugin config (hex, 40 chars)."""
    raw = f"{content_hash}|{plugin}|{version}|{config_hash}".encode()
    return hashlib.sha256(raw).hexdigest()[:40]


@dataclass(frozen=True)
class GalleryImage:
    """One enrolled image as stored in the database."""

    image_id: str
    content_hash: str
    path: str
    identity: str
    metadata: dict


class GalleryDatabase:
    """Open (creating or migrating) a gallery database at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.blob_dir = self.path.with_name(self.path.name + ".d")
        self._pending_features: list[tuple] = []
        if self.path.exists() and self.path.is_dir():
            raise UsageError(f"{self.path}: is a folder; --db takes a database file path (e.g. gallery.db)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise database_error(self.path, exc) from None
        if version > SCHEMA_VERSION:
            self.conn.close()
            raise DatabaseError(
                f"{self.path}: written by a newer reid-engine (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade reid-engine (pip install -U reid-engine) to use it"
            )
        if version == 0 and self._has_foreign_tables():
            self.conn.close()
            raise DatabaseError(f"{self.path}: an SQLite file that is not a reid-engine database; pass another --db path")
        self._migrate(version)

    # -- schema ----------------------------------------------------------------------------
    def _has_foreign_tables(self) -> bool:
        names = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return bool(names - {"meta", "individuals", "images", "enrolments", "features", "models", "sqlite_sequence"})

    def _migrate(self, version: int) -> None:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                for statement in MIGRATIONS[target]:
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {target}")

    def transaction(self):
        return _Transaction(self.conn)

    def close(self) -> None:
        self.flush()
        self.conn.close()

    def __enter__(self) -> "GalleryDatabase":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- gallery ---------------------------------------------------------------------------
    def enroll(self, entries: Iterable[tuple[str, str, str, str, dict]], source: str) -> tuple[int, int]:
        """Add (image_id, content_hash, path, identity, metadata) rows; returns (added, unchanged).

        An image id already enrolled under another identity is a UsageError (nothing written).
        """
        entries = list(entries)
        existing = {r[0]: (r[1], r[2]) for r in self.conn.execute("SELECT image_id, identity, content_hash FROM images")}
        clashes = [
            f"{image_id!r} (enrolled as {existing[image_id][0]!r}, {source} says {identity!r})"
            for image_id, _, _, identity, _ in entries
            if image_id in existing and existing[image_id][0] != identity
        ]
        if clashes:
            raise UsageError(
                f"{source}: image id already enrolled under another identity: {'; '.join(clashes[:3])}"
                f"{' and more' if len(clashes) > 3 else ''}; give the image a new image_id or fix the label"
            )
        added = unchanged = 0
        now = _now()
        with self.transaction():
            for image_id, chash, path, identity, metadata in entries:
                if image_id in existing and existing[image_id][1] == chash:
                    # same photo: keep its enrolment, but follow a moved file or corrected metadata
                    self.conn.execute("UPDATE images SET path = ?, metadata = ? WHERE image_id = ?",
                                      (path, json.dumps(metadata, sort_keys=True), image_id))
                    unchanged += 1
                    continue
                self.conn.execute("INSERT OR IGNORE INTO individuals VALUES (?, ?)", (identity, now))
                self.conn.execute(
                    "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?)",
                    (image_id, chash, path, identity, json.dumps(metadata, sort_keys=True), now),
                )
                self.conn.execute(
                    "INSERT INTO enrolments (image_id, identity, source, enrolled_at) VALUES (?, ?, ?, ?)",
                    (image_id, identity, source, now),
                )
                added += 1
        return added, unchanged

    def gallery(self) -> list[GalleryImage]:
        rows = self.conn.execute(
            "SELECT image_id, content_hash, path, identity, metadata FROM images ORDER BY image_id"
        ).fetchall()
        return [GalleryImage(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def counts(self) -> dict[str, int]:
        return {
            "individuals": self.conn.execute("SELECT COUNT(DISTINCT identity) FROM images").fetchone()[0],
            "images": self.conn.execute("SELECT COUNT(*) FROM images").fetchone()[0],
            "cached_features": self.conn.execute("SELECT COUNT(*) FROM features").fetchone()[0],
            "models": self.conn.execute("SELECT COUNT(*) FROM models").fetchone()[0],
        }

    # -- blobs -----------------------------------------------------------------------------
    def blob_path(self, kind: str, key: str) -> Path:
        return self.blob_dir / kind / key[:2] / f"{key}.npz"

    def _write_blob(self, kind: str, key: str, arrays: dict[str, np.ndarray], compress: bool = False) -> int:
        buffer = io.BytesIO()
        if compress:
            _savez_fast(buffer, arrays)
        else:
            np.savez(buffer, **arrays)
        data = buffer.getvalue()
        write_atomic(self.blob_path(kind, key), data, prefix=".tmp-")
        return len(data)

    def _read_blob(self, kind: str, key: str) -> dict[str, np.ndarray] | None:
        path = self.blob_path(kind, key)
        try:
            with np.load(path, allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError):
            path.unlink(missing_ok=True)  # a damaged blob is recomputed, never trusted
            return None

    # -- feature cache ---------------------------------------------------------------------
    def get_features(self, key: str) -> dict[str, np.ndarray] | None:
        return self._read_blob("features", key)

    def put_features(self, key: str, content_hash: str, plugin: str, version: str, config_hash: str,
                     arrays: dict[str, np.ndarray]) -> None:
        nbytes = self._write_blob("features", key, arrays)
        self._pending_features.append((key, content_hash, plugin, version, config_hash, nbytes, _now()))
        if len(self._pending_features) >= 64:
            self.flush()

    def flush(self) -> None:
        """Write the index rows of blobs stored since the last flush (one transaction)."""
        if not self._pending_features:
            return
        with self.transaction():
            self.conn.executemany("INSERT OR REPLACE INTO features VALUES (?, ?, ?, ?, ?, ?, ?)", self._pending_features)
        self._pending_features = []

    # -- segmentation cache ----------------------------------------------------------------
    def get_segmentation(self, key: str) -> dict[str, np.ndarray] | None:
        """A cached foreground probability map (see reid_engine.inputs.segmentation); no index row: the blob is the truth."""
        return self._read_blob("segmentation", key)

    def put_segmentation(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        self._write_blob("segmentation", key, arrays, compress=True)

    # -- fitted models ---------------------------------------------------------------------
    def get_model(self, key: str) -> dict[str, np.ndarray] | None:
        row = self.conn.execute("SELECT key FROM models WHERE key = ?", (key,)).fetchone()
        return self._read_blob("models", key) if row else None

    def put_model(self, key: str, kind: str, plugin: str, version: str, config_hash: str, fitted_on: dict,
                  arrays: dict[str, np.ndarray]) -> None:
        self._write_blob("models", key, arrays)
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO models VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, kind, plugin, version, config_hash, json.dumps(fitted_on, sort_keys=True), _now()),
            )

    def models(self) -> Iterator[tuple]:
        yield from self.conn.execute("SELECT key, kind, plugin, version, fitted_on, created_at FROM models")


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def content_hash(data: bytes) -> str:
    """sha256 of the file's bytes (hex, 64 chars): the image's identity in every cache key."""
    return hashlib.sha256(data).hexdigest()


def _savez_fast(file: io.BytesIO, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` at zlib level 1 instead of 6: what ``np.load`` reads alike. On IS-Net
    maps of nyala-dev photos (uint8, ~500x768) 5.7 against 15.3 ms a map, 154 against 135 KiB."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
