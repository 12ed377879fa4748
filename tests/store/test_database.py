"""The gallery database: schema versions, enrolment, cache blobs."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from reid_engine.errors import DatabaseError, UsageError
from reid_engine.store.database import SCHEMA_VERSION, GalleryDatabase


def test_new_database_has_current_schema_and_wal(tmp_path):
    with GalleryDatabase(tmp_path / "g.db") as db:
        assert db.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused_with_advice(tmp_path):
    path = tmp_path / "g.db"
    GalleryDatabase(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(DatabaseError, match=r"g.db: written by a newer reid-engine.*upgrade"):
        GalleryDatabase(path)


def test_not_a_database(tmp_path):
    path = tmp_path / "g.db"
    path.write_bytes(b"hello, this is a text file and not sqlite" * 100)
    with pytest.raises(DatabaseError, match="not a reid-engine gallery database"):
        GalleryDatabase(path)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE invoices (id INTEGER)")
    conn.close()
    with pytest.raises(DatabaseError, match="not a reid-engine database"):
        GalleryDatabase(other)


def test_enrol_is_idempotent_and_refuses_relabelling(tmp_path):
    with GalleryDatabase(tmp_path / "g.db") as db:
        assert db.enroll([("a", "h1", "/a.jpg", "x", {}), ("b", "h2", "/b.jpg", "y", {})], "m.csv") == (2, 0)
        assert db.enroll([("a", "h1", "/a.jpg", "x", {})], "m.csv") == (0, 1)
        with pytest.raises(UsageError, match="'a' \\(enrolled as 'x', m2.csv says 'z'\\)"):
            db.enroll([("a", "h1", "/a.jpg", "z", {})], "m2.csv")
        assert [g.identity for g in db.gallery()] == ["x", "y"]


def test_blobs_roundtrip_and_damaged_blob_is_recomputed(tmp_path):
    with GalleryDatabase(tmp_path / "g.db") as db:
        db.put_features("k" * 40, "h", "p", "1", "c", {"desc": np.ones((3, 4), np.float32)})
        db.flush()
        assert db.get_features("k" * 40)["desc"].shape == (3, 4)
        db.blob_path("features", "k" * 40).write_bytes(b"garbage")
        assert db.get_features("k" * 40) is None
        assert not db.blob_path("features", "k" * 40).exists()


def test_segmentation_maps_are_stored_compressed_and_read_back_exactly(tmp_path):
    prob = (np.add.outer(np.arange(120), np.arange(90)) % 251).astype(np.uint8)
    prob[40:80] = 255  # a flat region, as an animal's mask has
    with GalleryDatabase(tmp_path / "g.db") as db:
        db.put_segmentation("s" * 40, {"prob": prob, "size": np.array([384])})
        back = db.get_segmentation("s" * 40)
        assert np.array_equal(back["prob"], prob) and back["prob"].dtype == np.uint8
        assert list(back["size"]) == [384]
        assert db.blob_path("segmentation", "s" * 40).stat().st_size < prob.nbytes / 2  # deflated
