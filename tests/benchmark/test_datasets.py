"""What --dataset accepts, and one clear message for what it does not."""

from __future__ import annotations

import csv
import importlib.machinery
import sys
import types

import pytest

from reid_engine.benchmark.datasets import resolve_dataset
from reid_engine.errors import UsageError


def test_folder_without_metadata_names_the_file(tmp_path):
    with pytest.raises(UsageError, match="no metadata.csv"):
        resolve_dataset(str(tmp_path), tmp_path / "work")


def test_csv_without_identity_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("image_id,path\na,a.jpg\n")
    with pytest.raises(UsageError, match="missing column.*identity"):
        resolve_dataset(str(path), tmp_path / "work")


def test_unknown_name_lists_the_builtins(tmp_path):
    with pytest.raises(UsageError, match="synthetic-seal-hard"):
        resolve_dataset("no-such-dataset", tmp_path)


def test_wildlife_dataset_is_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wildlife_datasets", None)
    with pytest.raises(UsageError, match="never downloads"):
        resolve_dataset(f"wildlife:SealID={tmp_path}", tmp_path)


def test_wildlife_dataset_through_the_package(tmp_path, monkeypatch):
    """A stand-in for wildlife_datasets.datasets.NAME(root).df (pandas-like columns)."""

    class Column:
        def __init__(self, values):
            self.iloc = values

    class Frame:
        def __init__(self, data):
            self.data, self.columns = data, list(data)

        def __getitem__(self, key):
            return Column(self.data[key])

        def __len__(self):
            return len(self.data["image_id"])

    class SealID:
        def __init__(self, root):
            self.df = Frame({"image_id": ["1", "2", "3"], "identity": ["a", "a", "unknown"],
                             "path": ["x/1.jpg", "x/2.jpg", "x/3.jpg"], "date": ["2020-01-01", "2020-02-01", ""]})

    package = types.ModuleType("wildlife_datasets")
    package.__spec__ = importlib.machinery.ModuleSpec("wildlife_datasets", None)
    module = types.ModuleType("wildlife_datasets.datasets")
    module.SealID = SealID
    monkeypatch.setitem(sys.modules, "wildlife_datasets", package)
    monkeypatch.setitem(sys.modules, "wildlife_datasets.datasets", module)
    root = tmp_path / "SealID"
    root.mkdir()
    dataset = resolve_dataset(f"wildlife:SealID={root}", tmp_path / "work")
    assert [r["identity"] for r in dataset.rows()] == ["a", "a"]  # the unlabelled photo is left out
    with dataset.metadata.open() as handle:
        first = next(csv.DictReader(handle))
    assert first["path"] == str((root / "x/1.jpg").resolve()) and first["date"] == "2020-01-01"
    with pytest.raises(UsageError, match="has no dataset 'Nope'"):
        resolve_dataset(f"wildlife:Nope={root}", tmp_path / "work")


def test_builtin_synthetic_seals_are_labelled_photos_with_the_generators_splits(tmp_path):
    dataset = resolve_dataset("synthetic-seal-tiny", tmp_path)
    rows = dataset.rows()
    assert len(rows) == 18 and len({r["identity"] for r in rows}) == 5  # 4 known x (2 + 2), 1 unknown x 2
    assert all((dataset.metadata.parent / r["path"]).is_file() and r["mask_path"] for r in rows)
    assert all(r["keypoints"].startswith('{"head"') for r in rows)  # landmarks for Landmark-Id
    open_ = list(csv.DictReader((dataset.splits_dir / "open.csv").open()))
    closed = list(csv.DictReader((dataset.splits_dir / "closed.csv").open()))
    assert sum(r["truth"] == "new_individual" for r in open_) == 2 and len(closed) == 16
    # a known individual's two queries are one sequence
    sequence = {r["image_id"]: r["sequence"] for r in rows}
    queries = [r for r in closed if r["split"] == "query"]
    assert len({sequence[r["image_id"]] for r in queries}) == 4
