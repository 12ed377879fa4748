"""Manifests (CSV and folders) and split files: bad input gets one clear message."""

from __future__ import annotations

import numpy as np
import pytest

from reid_engine.errors import ManifestError
from reid_engine.inputs.manifests import apply_split, load_manifest
from reid_engine.registry import PluginTable
from tests.conftest import write_image


@pytest.fixture(scope="module")
def table():
    return PluginTable.discover()


def _csv(path, text):
    path.write_text(text)
    return path


def test_wildlife_datasets_csv(tmp_path, table):
    m = load_manifest(_csv(tmp_path / "g.csv", "image_id,identity,path,bbox,sequence,extra\n"
                                             "a,seal_1,img/a.jpg,\"[1, 2, 30, 40]\",s1,x\n"), "gallery", table)
    (r,) = m.records
    assert r.identity == "seal_1" and r.bbox == (1.0, 2.0, 30.0, 40.0) and r.sequence == "s1"
    assert r.path == tmp_path / "img" / "a.jpg" and r.extra == {"extra": "x"}


def test_missing_column_names_the_file_and_column(tmp_path, table):
    with pytest.raises(ManifestError, match=r"g.csv: missing column 'identity' \(columns found: image_id, path\)"):
        load_manifest(_csv(tmp_path / "g.csv", "image_id,path\na,a.jpg\n"), "gallery", table)


def test_duplicate_image_id_names_the_lines(tmp_path, table):
    with pytest.raises(ManifestError, match=r"duplicate image_id 'a' \(lines 2 and 4\)"):
        load_manifest(_csv(tmp_path / "g.csv", "image_id,identity,path\na,x,a.jpg\nb,x,b.jpg\na,y,c.jpg\n"),
                      "gallery", table)


def test_identity_in_query_csv_is_a_notice_and_becomes_truth(tmp_path, table):
    m = load_manifest(_csv(tmp_path / "q.csv", "image_id,identity,path\na,x,a.jpg\n"), "query", table)
    assert m.records[0].identity is None and m.records[0].truth == "x"
    assert "q.csv" in m.notices[0] and "NOT used to predict" in m.notices[0]


def test_empty_csv_and_missing_file(tmp_path, table):
    with pytest.raises(ManifestError, match="lists no images"):
        load_manifest(_csv(tmp_path / "g.csv", "image_id,identity,path\n"), "gallery", table)
    with pytest.raises(ManifestError, match="nope.csv: no such file or folder"):
        load_manifest(tmp_path / "nope.csv", "query", table)


def test_folders(tmp_path, table):
    pixels = np.zeros((40, 40, 3), np.uint8)
    write_image(tmp_path / "gal" / "seal_1" / "a.png", pixels)
    write_image(tmp_path / "gal" / "seal_2" / "b.jpg", pixels)
    write_image(tmp_path / "gal" / "loose.png", pixels)
    m = load_manifest(tmp_path / "gal", "gallery", table)
    assert sorted((r.image_id, r.identity) for r in m.records) == [("seal_1/a", "seal_1"), ("seal_2/b", "seal_2")]
    assert "loose.png" in m.notices[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="empty: folder holds no images"):
        load_manifest(tmp_path / "empty", "query", table)


def test_split_file(tmp_path, table):
    m = load_manifest(_csv(tmp_path / "m.csv", "image_id,identity,path\na,x,a.jpg\nb,x,b.jpg\nc,y,c.jpg\n"),
                      "gallery", table)
    gallery, query = apply_split(m, _csv(tmp_path / "s.csv", "image_id,split\na,gallery\nb,query\nc,query\n"))
    assert [r.image_id for r in gallery.records] == ["a"]
    assert [(r.image_id, r.identity, r.truth) for r in query.records] == [("b", None, "x"), ("c", None, "new_individual")]
    with pytest.raises(ManifestError, match="split 'valid'"):
        apply_split(m, _csv(tmp_path / "s2.csv", "image_id,split\na,valid\n"))
