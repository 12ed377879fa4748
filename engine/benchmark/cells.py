"""One benchmark cell: a (dataset, profile, split) measured with the real engine.

The cell has its own folder and gallery database, so a killed benchmark resumes where it
stopped: features already in the database are reused, and a finished cell (``cell.json``)
is not run again. Its steps are the commands a user runs:

1. ``train embedder`` on the split's training rows, when the profile uses a trained embedder;
2. ``calibrate`` on the split's gallery (a seeded open-set split of it), when asked;
3. ``run --split`` with every query, ranking 20 identities per query.

Features and masks are content-addressed (photo hash, plugin, version, config), so cells of
one dataset share them through a per-dataset store (hard links): a profile or split that uses
the same extractors never extracts a photo twice. :func:`run_cell_isolated` runs a cell in a
child process, so its peak memory is its own and a crash stays in its cell.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import platform
import resource
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_engine.calibration.fit import expected_calibration_error
from reid_engine.calibration.fusion import aggregate
from reid_engine.commands.calibrate import calibrate
from reid_engine.commands.run import run
from reid_engine.errors import ReidError, UsageError
from reid_engine.files import write_atomic
from reid_engine.metrics import mean_average_precision, top_k_accuracy
from reid_engine.records import NEW_INDIVIDUAL
from reid_engine.registry.profiles import Profile, builtin_profiles, load_profile_file
from reid_engine.runs import RunOptions
from reid_engine.training.train_embedder import options_from_profile, train_embedder

CELL_FORMAT = 1
RANKED = 20  # identities kept per query: CMC curves up to rank 20
SHARED_KINDS = ("features", "segmentation")  # blob kinds keyed by photo content (never by gallery)


@dataclass(frozen=True)
class CellSpec:
    """What one cell measures and where it keeps its state."""

    dataset: str
    profile: str  # a shipped profile's name or a profile TOML file
    split: str
    metadata: Path
    split_csv: Path
    train_csv: Path
    split_source: str
    folder: Path
    shared_store: Path  # the dataset's feature/mask blobs, shared by its cells
    calibrate: bool
    device: str = "cpu"
    seed: int = 0
    progress: bool = False

    @property
    def key(self) -> str:
        return f"{self.dataset} / {profile_label(self.profile)} / {self.split}"

    def fingerprint(self) -> str:
        """Changes when anything that decides the cell's figures changes (not the code: compare
        commits with ``--compare``)."""
        h = hashlib.sha256()
        for path in (self.metadata, self.split_csv, self.train_csv, profile_path(self.profile)):
            h.update(Path(path).read_bytes())
        h.update(json.dumps([self.calibrate, self.seed, CELL_FORMAT]).encode())
        return h.hexdigest()[:16]


def profile_label(profile: str) -> str:
    return Path(profile).stem if profile.endswith(".toml") else profile


def profile_path(profile: str) -> Path:
    """A shipped profile's name or a TOML file → its file (clear message when neither)."""
    if profile.endswith(".toml") or "/" in profile:
        path = Path(profile).expanduser()
        if not path.is_file():
            raise UsageError(f"--profile {profile}: file not found")
        return path.resolve()
    shipped = builtin_profiles()
    if profile not in shipped:
        raise UsageError(f"--profile {profile}: not a shipped profile ({', '.join(sorted(shipped))}) nor a .toml file")
    return Path(shipped[profile])


def load_cell_profile(profile: str) -> Profile:
    return load_profile_file(profile_path(profile))


def finished(spec: CellSpec) -> dict | None:
    """The stored result of a finished cell with this fingerprint, else None."""
    try:
        record = json.loads((spec.folder / "cell.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if record.get("fingerprint") == spec.fingerprint() else None


def run_cell_isolated(spec: CellSpec) -> dict:
    """:func:`run_cell` in a fresh child process (spawned: no torch state is inherited, the
    peak memory is the cell's own). Ctrl-C or a kill of the benchmark stops the child too; a
    child that dies (killed for memory, say) is a :class:`ReidError` naming the cell."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_cell_process, args=(spec, send, os.getpid()), daemon=True,
                              name=f"cell {spec.key}")
    process.start()
    send.close()
    try:
        try:
            kind, value = receive.recv()
        except EOFError:
            process.join()
            raise ReidError(f"cell {spec.key}: its process ended without a result (exit status {process.exitcode}; "
                            "-9 is a kill, e.g. for memory); what it extracted is kept, --resume runs it again") from None
        process.join()
    except BaseException:
        process.terminate()
        process.join()
        raise
    if kind == "error":
        raise value
    return value


def _cell_process(spec: CellSpec, send, parent: int) -> None:
    _exit_with_parent(parent)
    try:
        send.send(("ok", run_cell(spec)))
    except BaseException as exc:  # noqa: BLE001 - handed to the parent, which decides
        try:
            send.send(("error", exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            send.send(("error", ReidError(f"{type(exc).__name__}: {exc}")))


def _exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """A watchdog thread: the cell's process ends when the benchmark ``parent`` that started it
    is gone (killed with SIGTERM or SIGKILL, which leave it no chance to stop its child), also
    when that happened while this process was still starting."""

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def run_cell(spec: CellSpec) -> dict:
    """Run the cell's steps (module docstring), write ``cell.json`` atomically and return it."""
    t0 = time.perf_counter()
    profile = load_cell_profile(spec.profile)
    spec.folder.mkdir(parents=True, exist_ok=True)
    db = spec.folder / "gallery.db"
    link_blobs(spec.shared_store, db.with_name(db.name + ".d"))
    steps: dict[str, dict] = {}
    if profile.uses_trained_embedder:
        steps["train_embedder"] = _train(profile, db, spec)
    if spec.calibrate:
        steps["calibrate"] = _calibrate(profile, db, spec)
    t = time.perf_counter()
    result = run(RunOptions(profile=profile, db=db, out=spec.folder / "out", gallery=spec.metadata,
                            split=spec.split_csv, top_k=RANKED, device=spec.device, write_report=False,
                            title=f"benchmark {spec.key}"), progress=spec.progress)
    steps["run"] = {"seconds": time.perf_counter() - t, "timings": result.timings, "counts": result.counts,
                    "calibration": result.calibration, "threshold": result.threshold, "notices": result.notices,
                    "errors": len(result.errors)}
    link_blobs(db.with_name(db.name + ".d"), spec.shared_store)
    save_scores(result, spec.folder / "scores.npz")
    queries = per_query(result, spec)
    n_queries = max(1, result.counts.get("queries", 0))
    record = {
        "format": CELL_FORMAT, "fingerprint": spec.fingerprint(), "key": spec.key, "dataset": spec.dataset,
        "profile": profile_label(spec.profile), "profile_source": str(profile_path(spec.profile)), "split": spec.split,
        "split_source": spec.split_source, "calibrated": spec.calibrate,
        "metrics": {k: _plain(v) for k, v in result.metrics.items()},
        "metrics_per_photo": {k: _plain(v) for k, v in result.metrics_per_photo.items()},
        "ece": identity_ece(queries),
        "shortlist_recall": shortlist_recall(result),
        "stages": stage_accuracy(result),
        "seconds": time.perf_counter() - t0,
        # matching time per query with every photo's features cached (shortlist + local matching)
        "s_per_query": (result.timings.get("shortlist_s", 0.0) + result.timings.get("matching_s", 0.0)) / n_queries,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "steps": steps, "queries": queries, "pid": os.getpid(), "host": platform.node(),
    }
    write_atomic(spec.folder / "cell.json", (json.dumps(record, indent=1, default=str) + "\n").encode())
    return record


def _train(profile: Profile, db: Path, spec: CellSpec) -> dict:
    options = options_from_profile(profile, db=db, gallery=spec.metadata, split=spec.train_csv, device=spec.device,
                                   seed=spec.seed, out=spec.folder / "embedder.pt")
    t = time.perf_counter()
    result = train_embedder(options, log=lambda *_: None)
    return {"seconds": time.perf_counter() - t, "best_epoch": result.best_epoch, "history": result.history,
            "train_images": result.train_images, "train_identities": result.train_identities,
            "model_sha256": result.model_sha256}


def _calibrate(profile: Profile, db: Path, spec: CellSpec) -> dict:
    """``calibrate`` on the split's gallery rows only (its queries stay unseen)."""
    gallery_ids = set()
    with spec.split_csv.open(encoding="utf-8-sig", newline="") as handle:
        gallery_ids = {r["image_id"] for r in csv.DictReader(handle) if r["split"].strip().lower() != "query"}
    manifest = spec.folder / "calibration-gallery.csv"
    with spec.metadata.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [r for r in reader if r["image_id"] in gallery_ids]
        columns = list(reader.fieldnames or [])
    base = spec.metadata.parent
    with manifest.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for r in rows:  # paths stay valid from the cell's folder
            writer.writerow({**r, **{c: str((base / r[c]).resolve()) for c in ("path", "mask_path") if r.get(c)}})
    t = time.perf_counter()
    result = calibrate(profile, db, manifest, seed=spec.seed, device=spec.device, plots_dir=spec.folder / "calibration")
    return {"seconds": time.perf_counter() - t, "threshold": result.fitted.threshold,
            "weights": [float(w) for w in result.fitted.weights], "methods": result.methods}


def per_query(result, spec: CellSpec) -> list[dict]:
    """Per query: id, truth, the true individual of an unknown query (BAUS balances per
    individual), the first RANKED identities, the top identity's reported score, the prediction."""
    with spec.metadata.open(encoding="utf-8-sig", newline="") as handle:
        identity = {r["image_id"]: r["identity"] for r in csv.DictReader(handle)}
    out = []
    for p in result.predictions:
        out.append({"image_id": p.image_id, "truth": p.truth,
                    "group": identity.get(p.image_id) if p.truth == NEW_INDIVIDUAL else p.truth,
                    "ranked": [c.identity for c in p.candidates],
                    "score": float(p.candidates[0].score) if p.candidates else 0.0, "prediction": p.prediction})
    return out


def identity_ece(queries: list[dict]) -> float:
    """ECE of the top identity's reported score against "that identity is right" (unknown
    queries are never right): is a score of 0.8 right 80 % of the time?"""
    if not queries:
        return float("nan")
    conf = np.array([q["score"] for q in queries])
    right = np.array([bool(q["ranked"]) and q["truth"] != NEW_INDIVIDUAL and q["ranked"][0] == q["truth"]
                      for q in queries], float)
    return float(expected_calibration_error(conf, right)[0])


def shortlist_recall(result) -> float:
    """Share of known queries whose individual has a photo in the shortlist."""
    ids = result.gallery_identities
    index = result.shortlist_index
    hits = [p.truth in {ids[r] for r in index[q]} for q, p in enumerate(result.predictions)
            if p.truth is not None and p.truth != NEW_INDIVIDUAL]
    return float(np.mean(hits)) if hits and index is not None else float("nan")


def stage_accuracy(result) -> dict[str, dict[str, float]]:
    """Accuracy of each stage alone over the shortlist: recall@B of the shortlist (the right
    individual among the first B gallery photos), top-1/top-5/mAP of the global embedding's
    cosine alone, and of each local pipeline's raw score alone (identities ranked by their best photo)."""
    truth = [p.truth for p in result.predictions]
    known = [t not in (None, NEW_INDIVIDUAL) for t in truth]
    ids = result.gallery_identities
    index = result.shortlist_index
    if index is None or not any(known):
        return {}
    out: dict[str, dict[str, float]] = {"shortlist": {"B": int(index.shape[1])}}
    for b in sorted({1, 5, 10, 20, 50, 100, 200, int(index.shape[1])}):
        if b <= index.shape[1]:
            hits = [truth[q] in {ids[r] for r in index[q, :b]} for q in range(len(truth)) if known[q]]
            out["shortlist"][f"recall@{b}"] = float(np.mean(hits))
    for name, scores in [("global-embedding", result.shortlist_sim), *result.raw_scores.items()]:
        ranked = [[s.identity for s in aggregate(np.nan_to_num(scores[q], nan=-1.0), index[q], ids, "max", scores[q])]
                  for q in range(index.shape[0])]
        out[name] = {"top1": top_k_accuracy(truth, ranked, 1), "top5": top_k_accuracy(truth, ranked, 5),
                     "mAP": mean_average_precision(truth, ranked)}
    return out


def save_scores(result, path: Path) -> None:
    """The cell's shortlist and raw scores, for offline fusion studies (benchmarks/experiments):
    index int (Q, B) gallery rows, sim float (Q, B), identities (G,) and gallery_ids (G,) of the
    gallery rows, truth (Q,) and query_ids (Q,) of the queries, raw_PIPELINE (Q, B)."""
    if result.shortlist_index is None:
        return
    np.savez(path, index=result.shortlist_index, sim=result.shortlist_sim, identities=np.array(result.gallery_identities),
             gallery_ids=np.array(result.gallery_image_ids), query_ids=np.array([p.image_id for p in result.predictions]),
             truth=np.array([p.truth or "" for p in result.predictions]),
             **{f"raw_{name}": raw for name, raw in result.raw_scores.items()})


def link_blobs(source: Path, target: Path) -> int:
    """Hard-link the content-addressed blobs (features, masks) of ``source`` into ``target``
    that it lacks (copy across file systems); returns how many were added."""
    added = 0
    for kind in SHARED_KINDS:
        root = Path(source) / kind
        if not root.is_dir():
            continue
        for path in root.rglob("*.npz"):
            dest = Path(target) / kind / path.relative_to(root)
            if dest.exists():
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, dest)
            except OSError:
                write_atomic(dest, path.read_bytes())
            added += 1
    return added


def _plain(value):
    return float(value) if isinstance(value, (float, np.floating)) else value

