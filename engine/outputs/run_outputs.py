"""A run's outputs: predictions.csv, ranking.csv, errors.csv, report.html and summary.json, landing as a set."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Callable

from reid_engine.errors import UsageError
from reid_engine.files import write_atomic
from reid_engine.outputs.report import write_report
from reid_engine.outputs.tables import (
    write_errors,
    write_json,
    write_predictions,
    write_ranking,
)
from reid_engine.runs import RunOptions, RunResult


def run_summary(result: RunResult, options: RunOptions) -> dict:
    """summary.json's content (also ``reid-engine run --json``): profile, database, metrics,
    counts, timings, threshold, calibration, notices and the ``[segment]`` settings. It holds
    the result's own notices and timings, so what is added to them later shows in it."""
    summary = {"profile": options.profile.name, "profile_source": options.profile.source, "db": str(options.db),
               "metrics": result.metrics, "counts": result.counts, "timings": result.timings,
               "threshold": result.threshold, "calibration": result.calibration, "notices": result.notices}
    if result.metrics_per_photo:  # sequences identified together: what each photo alone scored
        summary["metrics_per_photo"] = result.metrics_per_photo
    if options.profile.segment is not None:  # which animal of each photo was used, and how
        summary["segment"] = dataclasses.asdict(options.profile.segment)
    return summary


OUTPUT_NAMES = ("predictions.csv", "ranking.csv", "errors.csv", "report.html", "summary.json")
INCOMPLETE = "OUTPUTS-INCOMPLETE.txt"  # present only while (or if a kill stopped) a set being swapped in
STAGING_PREFIX = ".reid-engine-staging-"


def write_run_outputs(result: RunResult, options: RunOptions, make_evidence: Callable[[], object] | None = None) -> None:
    """predictions.csv, ranking.csv, errors.csv, report.html (with ``make_evidence()``'s match
    drawings when it gives them) and summary.json into ``options.out``, as one set; sets
    ``result.outputs`` to their paths.

    All are written into a staging folder inside ``out`` first, then moved into place together
    under an ``OUTPUTS-INCOMPLETE.txt`` marker that is removed last: a run killed while writing
    leaves the earlier run's set untouched (and a staging folder the next run removes); one killed
    while moving them in leaves the marker, which says the folder is not one set.
    """
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    clean_stale_outputs(out)
    staging = out / f"{STAGING_PREFIX}{os.getpid()}"
    staging.mkdir()
    try:
        staged = _write_set(staging, result, options, make_evidence)
        write_atomic(out / INCOMPLETE, (
            "A reid-engine run was moving its outputs into this folder when it stopped: the files here may come\n"
            "from two different runs. Run it again; this file is removed once a complete set is in place.\n").encode())
        for path in staged.values():
            os.replace(path, out / path.name)
        for name in set(OUTPUT_NAMES) - set(staged):  # e.g. an earlier run's report.html: not of this set
            (out / name).unlink(missing_ok=True)
        (out / INCOMPLETE).unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.outputs = {name: out / name for name in staged}


def clean_stale_outputs(out: Path) -> list[Path]:
    """Remove what killed runs left in ``out``: staging folders and the temporary files of the
    output writers (``.predictions.csv.*`` ...). Returns what was removed."""
    removed = []
    for entry in out.iterdir():
        stale_staging = entry.name.startswith(STAGING_PREFIX) and entry.is_dir()
        stale_temp = entry.is_file() and any(entry.name.startswith(f".{name}.") for name in OUTPUT_NAMES)
        if stale_staging:
            shutil.rmtree(entry, ignore_errors=True)
        elif stale_temp:
            entry.unlink(missing_ok=True)
        if stale_staging or stale_temp:
            removed.append(entry)
    return removed


def _write_set(folder: Path, result: RunResult, options: RunOptions,
               make_evidence: Callable[[], object] | None) -> dict[str, Path]:
    paths = {name: folder / name for name in ("predictions.csv", "ranking.csv", "errors.csv")}
    write_predictions(paths["predictions.csv"], result.predictions)
    write_ranking(paths["ranking.csv"], result.predictions)
    write_errors(paths["errors.csv"], result.errors)
    summary = run_summary(result, options)
    if options.write_report:
        paths["report.html"] = write_run_report(folder / "report.html", result, options, make_evidence)
    # last, so that it has the report's notices and timings
    paths["summary.json"] = folder / "summary.json"
    write_json(paths["summary.json"], summary)
    return paths


def _no_drawings(exc: BaseException) -> str:
    return (f"report.html has no match drawings: they could not be prepared ({type(exc).__name__}: {exc}); "
            "`reid-engine explain QUERY GALLERY_IMAGE` draws one pair and shows the full error")


def write_run_report(path: Path, result: RunResult, options: RunOptions,
                  make_evidence: Callable[[], object] | None = None) -> Path:
    """report.html, with the match drawings of ``make_evidence()`` (a ReportEvidence) when they can be made.

    The report never depends on the drawings: if they cannot be prepared (import, gallery
    database that cannot be opened...) or they break the report, it is written without them; a
    single drawing that fails is a note in its row (report.py). Each case adds a notice to
    ``result.notices`` (so to the CLI and summary.json); lost drawings are also said in the
    report's header table.
    """

    def write(evidence, notice: str = "") -> Path:
        segment = options.profile.segment
        flat = {"profile": options.profile.name, "database": str(options.db),
                **({"animal": f"{segment.segmenter.plugin if segment.segmenter else 'manifest masks'}, instance policy "
                              f"{segment.instance}{', cropped' if segment.crop else ''}"} if segment else {}),
                "threshold": round(result.threshold, 4), "calibration": result.calibration, **result.counts,
                **{k: v for k, v in result.metrics.items()}, **{k: round(v, 2) for k, v in result.timings.items()}}
        if notice:
            flat["match drawings"] = notice
        return write_report(path, result.predictions, title=options.title, summary=flat, errors=result.errors,
                            evidence=evidence)

    def without(exc: BaseException) -> Path:
        notice = _no_drawings(exc)
        result.notices.append(notice)
        return write(None, notice)

    if make_evidence is None:
        return write(None)
    try:
        evidence = make_evidence()
        evidence.__enter__()  # opens the gallery database (locked, unreadable... : no drawings)
    except Exception as exc:  # noqa: BLE001 - the drawings must never cost the report
        return without(exc)
    try:
        report = write(evidence)
    except Exception as exc:  # noqa: BLE001
        report = None
        failure = exc
    finally:
        try:
            evidence.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - closing a read-only use of the database
            pass
        result.timings["explain_s"] = evidence.seconds
    if report is None:
        if isinstance(failure, OSError):  # report.html itself cannot be written: not the drawings' fault
            raise failure
        return without(failure)
    if evidence.failed:
        result.notices.append(f"report.html: match drawings failed for {evidence.failed} of "
                              f"{len(result.predictions)} queries; their rows say why (first: {evidence.first_failure})")
    return report


def check_out_folder(out: Path | None) -> None:
    """``--out`` must be a folder (created when missing): a file there is a UsageError, found
    before any work is done."""
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out}: is a file, not a folder; pass a folder for the outputs (it is created if missing)")
