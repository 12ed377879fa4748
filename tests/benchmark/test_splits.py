"""Splits the harness makes: who is a query, who is gallery, and what never mixes."""

from __future__ import annotations

import csv

import pytest

from reid_engine.benchmark.splits import make_split, split_files
from reid_engine.errors import UsageError
from reid_engine.records import NEW_INDIVIDUAL


def _rows(n_ids: int = 10, per: int = 4, sides: bool = True, dates: bool = False) -> list[dict[str, str]]:
    rows = []
    for i in range(n_ids):
        for j in range(per if i else 1):  # individual 0 has a single photo
            rows.append({"image_id": f"im{i:02d}{j}", "identity": f"id{i:02d}",
                         "orientation": ("left" if j % 2 else "right") if sides else "",
                         "date": f"2024-01-{1 + j // 2:02d}" if dates else ""})
    return rows


def _by_role(made):
    return {s: [r for r in made if r[1] == s] for s in ("gallery", "query")}


def test_closed_one_query_per_individual_with_a_same_side_gallery_photo():
    rows = _rows()
    made = make_split(rows, "closed", seed=0).rows
    side = {r["image_id"]: r["orientation"] for r in rows}
    who = {r["image_id"]: r["identity"] for r in rows}
    roles = _by_role(made)
    assert sorted(who[q[0]] for q in roles["query"]) == [f"id{i:02d}" for i in range(1, 10)]  # id00: one photo
    for image_id, _, truth in roles["query"]:
        assert any(who[g] == truth and side[g] == side[image_id] for g, _, _ in roles["gallery"])
    assert make_split(rows, "closed", seed=0).rows == made
    assert make_split(rows, "closed", seed=1).rows != made


def test_open_unknown_individuals_are_never_in_the_gallery():
    rows = _rows(n_ids=20)
    made = make_split(rows, "open", seed=0, unknown_share=0.25).rows
    roles = _by_role(made)
    who = {r["image_id"]: r["identity"] for r in rows}
    unknown = {who[q[0]] for q in roles["query"] if q[2] == NEW_INDIVIDUAL}
    assert len(unknown) == 5
    assert not unknown & {who[g[0]] for g in roles["gallery"]}
    assert all(q[2] == NEW_INDIVIDUAL for q in roles["query"] if who[q[0]] in unknown)
    assert len(made) == len(rows)  # every photo takes part


def test_disjoint_trains_on_other_individuals_than_it_tests():
    rows = _rows(n_ids=12)
    made = make_split(rows, "disjoint", seed=0)
    who = {r["image_id"]: r["identity"] for r in rows}
    train = {who[i] for i, s, _ in made.train if s == "gallery"}
    tested = {who[i] for i, _, _ in made.rows}
    assert train and tested and not train & tested


def test_time_aware_queries_come_after_their_gallery():
    rows = _rows(dates=True)
    made = make_split(rows, "time-aware", seed=0).rows
    date = {r["image_id"]: r["date"] for r in rows}
    who = {r["image_id"]: r["identity"] for r in rows}
    roles = _by_role(made)
    assert roles["query"]
    for q, _, truth in roles["query"]:
        assert all(date[g] < date[q] for g, _, t in roles["gallery"] if t == truth)
        assert not any(date[g] == date[q] and who[g] == truth for g, _, _ in roles["gallery"])
    with pytest.raises(UsageError, match="date column"):
        make_split(_rows(), "time-aware", seed=0)


def test_split_files_prefer_the_datasets_own_and_accept_a_file(tmp_path):
    rows = _rows()
    own = tmp_path / "splits"
    own.mkdir()
    (own / "closed.csv").write_text("image_id,split\nim011,query\nim010,gallery\n")
    files = split_files(rows, "d", own, "closed", 0, tmp_path / "made")
    assert files.split_csv == (own / "closed.csv").resolve() and "dataset's" in files.source
    made = split_files(rows, "d", own, "open", 0, tmp_path / "made")
    assert made.split_csv.parent == (tmp_path / "made").resolve()
    with made.split_csv.open() as handle:
        assert {"image_id", "split", "truth"} <= set(csv.DictReader(handle).fieldnames)
    assert split_files(rows, "d", None, str(own / "closed.csv"), 0, tmp_path).name == "closed"
    with pytest.raises(UsageError, match="neither a split kind"):
        split_files(rows, "d", None, "sideways", 0, tmp_path)
