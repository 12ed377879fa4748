"""``reid-engine benchmark``: every (dataset, profile, split) cell, resumably, then results.

Layout of ``--out DIR``::

    DIR/results.json        every cell's metrics, timings, peak memory, per-query rankings,
                            the machine, versions and git commit
    DIR/results.md          the tables a person reads
    DIR/plots/*.png         CMC curves, BAKS/BAUS against the threshold, reliability, time vs accuracy
    DIR/datasets/           built-in datasets generated here
    DIR/splits/             splits made by the harness (seeded)
    DIR/cells/D/P/S/        one cell: gallery.db, out/, calibration/, cell.json when finished
    DIR/store/D/            features and masks of dataset D, shared by its cells
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path

from reid_engine.benchmark.cells import CellSpec, finished, profile_label, profile_path, run_cell, run_cell_isolated
from reid_engine.benchmark.datasets import resolve_dataset
from reid_engine.benchmark.report import safe_name, write_plots, write_results_md
from reid_engine.benchmark.splits import split_files
from reid_engine.errors import ReidError, UsageError
from reid_engine.files import write_atomic

CALIBRATE_CHOICES = ("open", "always", "never")


@dataclass
class BenchmarkOptions:
    datasets: list[str]
    profiles: list[str]
    splits: list[str] = field(default_factory=lambda: ["closed"])
    out: Path = Path("benchmark")
    device: str = "cpu"
    resume: bool = False
    calibrate: str = "open"  # calibrate on open splits only (where the known/new threshold matters)
    seed: int = 0
    isolate: bool = True  # each cell in a child process (own peak memory)
    progress: bool = False
    command: str = ""  # the command line, recorded in results.json


@dataclass
class BenchmarkResult:
    cells: list[dict]
    reused: list[str]
    results_json: Path
    results_md: Path
    plots: list[Path]
    failed: list[dict] = field(default_factory=list)  # cells that stopped with an error (key, error)


def plan_cells(options: BenchmarkOptions) -> list[CellSpec]:
    """Resolve datasets, make or read splits and list the cells (checks every input first)."""
    if options.calibrate not in CALIBRATE_CHOICES:
        raise UsageError(f"--calibrate {options.calibrate}: use one of {', '.join(CALIBRATE_CHOICES)}")
    if not options.datasets or not options.profiles:
        raise UsageError("pass at least one --dataset and one --profile")
    for profile in options.profiles:
        profile_path(profile)  # a wrong profile name stops the benchmark before any work
    out = Path(options.out)
    cells = []
    for name in options.datasets:
        dataset = resolve_dataset(name, out)
        rows = dataset.rows()
        for split in options.splits:
            files = split_files(rows, safe_name(dataset.name), dataset.splits_dir, split, options.seed, out / "splits")
            for profile in options.profiles:
                calibrate = options.calibrate == "always" or (options.calibrate == "open" and files.name == "open")
                cells.append(CellSpec(
                    dataset=dataset.name, profile=profile, split=files.name, metadata=dataset.metadata,
                    split_csv=files.split_csv, train_csv=files.train_csv, split_source=files.source,
                    folder=out / "cells" / safe_name(dataset.name) / safe_name(profile_label(profile)) / safe_name(files.name),
                    shared_store=out / "store" / safe_name(dataset.name), calibrate=calibrate, device=options.device,
                    seed=options.seed, progress=options.progress))
    return cells


def benchmark(options: BenchmarkOptions, log: Callable[[str], None] = print) -> BenchmarkResult:
    """Run every cell not already finished (``--resume``), then write results and plots."""
    out = Path(options.out)
    cells = plan_cells(options)
    records, reused = [], []
    for i, spec in enumerate(cells, 1):
        done = finished(spec) if options.resume else None
        if done is not None:
            reused.append(spec.key)
            log(f"[{i}/{len(cells)}] {spec.key}: finished earlier, reused (--resume)")
            records.append(done)
            continue
        log(f"[{i}/{len(cells)}] {spec.key}: running")
        try:
            record = run_cell_isolated(spec) if options.isolate else run_cell(spec)
        except Exception as exc:  # noqa: BLE001 - a missing weight, a bad profile for this data, a bug: the other cells go on
            records.append(failed_record(spec, exc))
            log(f"[{i}/{len(cells)}] {spec.key}: failed: {records[-1]['error']}")
            continue
        m = record["metrics"]
        log(f"[{i}/{len(cells)}] {spec.key}: top-1 {m.get('top1', float('nan')):.3f}, "
            f"{record['seconds']:.0f} s")
        records.append(record)
    results = {"format": 1, "command": options.command,
               "machine": machine(), "versions": versions(), "git_commit": git_commit(),
               "options": {"datasets": options.datasets, "profiles": options.profiles, "splits": options.splits,
                           "calibrate": options.calibrate, "seed": options.seed, "device": options.device},
               "cells": records}
    failed = [r for r in records if "error" in r]
    records = [r for r in records if "error" not in r]
    results["cells"], results["failed"] = records, failed
    results_json = out / "results.json"
    write_atomic(results_json, (json.dumps(results, indent=1, default=str) + "\n").encode())
    plots = write_plots(records, out / "plots")
    results_md = write_results_md(results, out / "results.md", plots)
    return BenchmarkResult(records, reused, results_json, results_md, plots, failed)


def failed_record(spec: CellSpec, exc: Exception) -> dict:
    """A cell that stopped: a ReidError is the engine's own message; anything else is a bug, said so."""
    what = f"{type(exc).__name__}: {exc}" if isinstance(exc, ReidError) else \
        f"unexpected {type(exc).__name__}: {exc} (a bug in reid-engine or a plugin; REID_ENGINE_DEBUG=1 shows where)"
    return {"key": spec.key, "dataset": spec.dataset, "profile": profile_label(spec.profile), "split": spec.split,
            "error": what}


def render(out: Path) -> BenchmarkResult:
    """Write results.md and the plots again from ``out/results.json`` (nothing is run)."""
    results_json = Path(out) / "results.json"
    try:
        results = json.loads(results_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{results_json}: not found; pass --dataset and --profile to run a benchmark") from None
    plots = write_plots(results["cells"], Path(out) / "plots")
    results_md = write_results_md(results, Path(out) / "results.md", plots)
    return BenchmarkResult(results["cells"], [], results_json, results_md, plots, results.get("failed", []))


def machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else os.cpu_count(), "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def versions() -> dict:
    out = {}
    for name in ("reid-engine", "torch", "kornia", "timm", "numpy", "scikit-learn", "onnxruntime"):
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The commit of the engine's source tree (with ``+dirty`` when it has changes), if it is a checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")
