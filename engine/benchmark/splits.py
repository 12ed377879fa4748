"""The splits a cell is measured on: the dataset's own fixed ones, a file, or made here with a seed.

closed      one query per individual, drawn among its photos that have another photo of the same
            flank (``orientation``) in the gallery; every other photo is gallery
open        a share of the individuals (default 0.2) is unknown: all their photos are queries
            with truth ``new_individual``; the known ones are split as closed
disjoint    for trained embedders: half the individuals are for training only; the cell's
            gallery and queries are the other half's (closed split among them)
time-aware  needs ``date``: each individual's query is a photo of its last day, its gallery is
            the photos of earlier days (the rest of the last day is left out)

A split file is ``image_id,split,truth``; photos not in it take no part. The training file
(whose gallery rows a trained embedder may learn from) is the split itself, except for
``disjoint``, where it holds the training individuals.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_engine.benchmark.datasets import write_csv
from reid_engine.errors import UsageError
from reid_engine.records import NEW_INDIVIDUAL

KINDS = ("closed", "open", "disjoint", "time-aware")

Row = tuple[str, str, str]  # (image_id, "gallery" | "query", truth)


@dataclass(frozen=True)
class SplitFiles:
    """name: how results name the split; split_csv: what ``run --split`` reads; train_csv: whose
    gallery rows training and calibration may see; source: where it came from, in words."""

    name: str
    split_csv: Path
    train_csv: Path
    source: str

    def digest(self) -> str:
        h = hashlib.sha256()
        for path in (self.split_csv, self.train_csv):
            h.update(path.read_bytes())
        return h.hexdigest()[:16]


def split_files(rows: list[dict[str, str]], dataset_name: str, splits_dir: Path | None, split: str, seed: int,
                folder: Path, unknown_share: float = 0.2) -> SplitFiles:
    """``split`` (a kind or a CSV file) → its files under ``folder``; the dataset's own fixed
    ``splits/<kind>.csv`` is used when it has one, so figures stay comparable."""
    path = Path(split).expanduser()
    if split not in KINDS:
        if path.suffix.lower() == ".csv" and path.is_file():
            return SplitFiles(path.stem, path.resolve(), path.resolve(), f"file {path}")
        raise UsageError(f"--split {split}: neither a split kind ({', '.join(KINDS)}) nor a CSV file "
                         "(image_id,split[,truth])")
    if splits_dir is not None and (splits_dir / f"{split}.csv").is_file():
        own = (splits_dir / f"{split}.csv").resolve()
        return SplitFiles(split, own, own, f"the dataset's {own.name}")
    made = make_split(rows, split, seed, unknown_share)
    folder.mkdir(parents=True, exist_ok=True)
    split_csv = _write(folder / f"{dataset_name}-{split}-seed{seed}.csv", made.rows)
    train_csv = split_csv if made.train is None else _write(folder / f"{dataset_name}-{split}-seed{seed}-train.csv",
                                                            made.train)
    return SplitFiles(split, split_csv, train_csv, f"made by the harness (seed {seed})")


@dataclass(frozen=True)
class MadeSplit:
    rows: list[Row]
    train: list[Row] | None = None


def make_split(rows: list[dict[str, str]], kind: str, seed: int, unknown_share: float = 0.2) -> MadeSplit:
    """The rows of a ``kind`` split of the labelled ``rows`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    by_identity: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_identity[r["identity"]].append(r)
    names = sorted(by_identity)
    if kind == "closed":
        return MadeSplit(_closed(names, by_identity, rng))
    if kind == "open":
        n_unknown = int(round(unknown_share * len(names)))
        unknown = set(rng.choice(names, size=n_unknown, replace=False).tolist()) if n_unknown else set()
        known = [n for n in names if n not in unknown]
        out = _closed(known, by_identity, rng)
        out += [(r["image_id"], "query", NEW_INDIVIDUAL) for n in sorted(unknown) for r in by_identity[n]]
        return MadeSplit(out)
    if kind == "disjoint":
        order = rng.permutation(len(names))
        train = sorted(names[i] for i in order[: len(names) // 2])
        test = sorted(names[i] for i in order[len(names) // 2:])
        out = _closed(test, by_identity, rng)
        queries = [row for row in out if row[1] == "query"]
        # the training file needs query rows to be a split file; training never reads them
        return MadeSplit(out, [(r["image_id"], "gallery", n) for n in train for r in by_identity[n]] + queries)
    if kind == "time-aware":
        return MadeSplit(_time_aware(names, by_identity))
    raise UsageError(f"split kind {kind!r}: use one of {', '.join(KINDS)}")


def _closed(names: list[str], by_identity: dict[str, list[dict[str, str]]], rng: np.random.Generator) -> list[Row]:
    out: list[Row] = []
    for n in names:
        photos = sorted(by_identity[n], key=lambda r: r["image_id"])
        sides = defaultdict(int)
        for r in photos:
            sides[(r.get("orientation") or "").strip().lower()] += 1
        eligible = [i for i, r in enumerate(photos) if sides[(r.get("orientation") or "").strip().lower()] >= 2]
        query = int(rng.choice(eligible)) if eligible else -1
        out += [(r["image_id"], "query" if i == query else "gallery", n) for i, r in enumerate(photos)]
    return out


def _time_aware(names: list[str], by_identity: dict[str, list[dict[str, str]]]) -> list[Row]:
    if not any((r.get("date") or "").strip() for n in names for r in by_identity[n]):
        raise UsageError("split time-aware needs a date column in the dataset's metadata.csv (ISO dates sort)")
    out: list[Row] = []
    for n in names:
        dated = sorted((r for r in by_identity[n] if (r.get("date") or "").strip()),
                       key=lambda r: (r["date"].strip()[:10], r["image_id"]))
        days = sorted({r["date"].strip()[:10] for r in dated})
        if len(days) < 2:
            out += [(r["image_id"], "gallery", n) for r in dated]
            continue
        last = [r for r in dated if r["date"].strip()[:10] == days[-1]]
        out += [(r["image_id"], "gallery", n) for r in dated if r["date"].strip()[:10] != days[-1]]
        out.append((last[0]["image_id"], "query", n))
    return out


def _write(path: Path, rows: list[Row]) -> Path:
    if not any(s == "query" for _, s, _ in rows) or not any(s == "gallery" for _, s, _ in rows):
        raise UsageError(f"{path.name}: the split has no query or no gallery photo (too few photos per individual)")
    columns = ["image_id", "split", "truth"]
    return write_csv(path, columns, [dict(zip(columns, row)) for row in rows])
