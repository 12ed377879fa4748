"""The ``reid-engine`` command line (typer). Usage errors exit 2, runtime failures exit 1.

A command parses its options, calls one engine function and prints what it returns. Errors
become exit codes in one place, :class:`_Commands`: a :class:`~reid_engine.errors.ReidError`
(or an OSError) raised anywhere in a command is printed as one ``error: ...`` line and exits
with its ``exit_code``. Heavy modules (torch...) are imported inside the commands, so that
``reid-engine profiles`` and ``--help`` stay fast.
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from reid_engine.errors import ReidError, UsageError, exit_code, resource_fault


def _console(stderr: bool = False) -> Console:
    """A terminal gets rich's width; a pipe or a file gets whole lines (no 80-column cut, so
    ``reid-engine plugins | grep`` sees full names), unless COLUMNS says otherwise. The console
    writes to whatever sys.stdout / sys.stderr is at the time (rich's default)."""
    stream = sys.stderr if stderr else sys.stdout
    wide = not stream.isatty() and not os.environ.get("COLUMNS")
    return Console(stderr=stderr, width=PIPE_WIDTH if wide else None, soft_wrap=wide)


PIPE_WIDTH = 10_000
DEBUG_ENV = "REID_ENGINE_DEBUG"  # set: an unexpected exception shows its traceback
INTERRUPTED = "interrupted; the gallery database is consistent and the next run resumes from its cache"
out_console = _console()
err_console = _console(stderr=True)


def _print_json(data: object) -> None:
    """``--json``: one JSON document on stdout (no markup, no wrapping; NaN as null, as in summary.json)."""
    from reid_engine.outputs.tables import json_text

    sys.stdout.write(json_text(data))


JSON_OPTION = typer.Option(False, "--json", help="print JSON instead of a table (for scripts)")


def _say(console: Console, label: str, style: str, message: object) -> None:
    """Print ``label: message``; the message is plain text (its brackets are not markup)."""
    from rich.text import Text

    console.print(Text.assemble((f"{label}: ", style), str(message)), highlight=False, soft_wrap=True)


def _notice(message: str) -> None:
    _say(err_console, "notice", "yellow", message)


def _click_own() -> tuple[type[BaseException], ...]:
    """The exceptions click itself raises and handles (usage errors, --help, Exit, Abort).

    typer >= 0.22 parses with its own copy of click (``typer._click``), whose classes are not
    click's: a mistyped option raised that copy's ``NoSuchOption``, which the catch-all below
    then called a bug. Both sets are listed, so either typer works.
    """
    classes: list[type[BaseException]] = [click.exceptions.Exit, click.exceptions.Abort, click.ClickException,
                                          typer.Exit]
    try:
        from typer._click import exceptions as vendored  # private, hence guarded
    except ImportError:
        return tuple(classes)
    return (*classes, *(getattr(vendored, n) for n in ("Exit", "Abort", "ClickException") if hasattr(vendored, n)))


CLICK_OWN = _click_own()


class _Commands(TyperGroup):
    """The command group: the one place where an error becomes an exit code.

    A ReidError raised by any command (or subcommand) is printed as one line, ``error: MESSAGE``,
    without a traceback, and exits with its ``exit_code`` (UsageError 2, others 1); so is an
    OSError (exit 1), but a broken pipe is left to typer (exit 1, nothing printed). Ctrl-C is
    one line and exit 130 (as :func:`main` does for one that comes outside a command).
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ReidError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                raise
            _say(err_console, "error", "bold red", resource_fault(exc) or exc)
            raise typer.Exit(exit_code(exc)) from None
        except CLICK_OWN:
            raise  # click's own: usage errors, --help, Exit, Abort
        except KeyboardInterrupt:  # else click prints "Aborted!" and exits 1
            if os.environ.get(DEBUG_ENV):
                raise
            _say(err_console, "error", "bold red", INTERRUPTED)
            raise typer.Exit(130) from None
        except sqlite3.Error as exc:  # one the gallery database did not translate itself
            _say(err_console, "error", "bold red", f"gallery database: {exc}; if another reid-engine run uses the "
                 "same --db, wait for it to finish (or pass another --db), else run again")
            raise typer.Exit(1) from None
        except Exception as exc:  # noqa: BLE001 - no traceback, whatever the exception class
            if os.environ.get(DEBUG_ENV):
                raise
            fault = resource_fault(exc)  # MemoryError: the machine's fault, not a bug
            if fault is not None:
                _say(err_console, "error", "bold red", fault)
                raise typer.Exit(1) from None
            reason = " ".join(str(exc).split())[:500] or "(no message)"
            _say(err_console, "error", "bold red", f"unexpected {type(exc).__name__}: {reason}. This is a bug in "
                 f"reid-engine or in a plugin: run again with {DEBUG_ENV}=1 to see where, and report it")
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    help="Open-set animal re-identification: which known individual is in each photo, or is it a new one?",
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

DEFAULT_OUT = Path("reid-engine-out")
DEMO_SPECIES = "seal"


@app.callback()
def _engine_options(
    threads: int = typer.Option(0, "--threads", min=0, envvar="REID_ENGINE_THREADS",
                                help="CPU threads for torch, onnxruntime and OpenCV, set once for the whole "
                                     "command (0 = every CPU this process may use)"),
    workers: int = typer.Option(0, "--workers", min=0, envvar="REID_ENGINE_WORKERS",
                                help="photos (and pairs) worked on side by side, each with its share of the "
                                     "threads, where every plugin involved is thread-safe (0 = one per thread; "
                                     "1 = one at a time, every thread on it)"),
) -> None:
    from reid_engine.threads import configure, set_workers

    set_workers(workers)
    configure(threads, load=False)  # torch and OpenCV are sized when a command loads the plugins (_table)


def _profile(species: Optional[str], profile_file: Optional[Path]):
    from reid_engine.registry.profiles import resolve_profile

    profile, notice = resolve_profile(species, profile_file)
    if notice:
        _notice(notice)
    return profile


def _table():
    from reid_engine.registry import PluginTable
    from reid_engine.threads import configure, configured

    configure(configured())  # the plugins load torch: size it (and OpenCV) to --threads now

    table = PluginTable.discover()
    for broken in table.broken:
        _say(err_console, "warning", "yellow", f"plugin {broken.entry_point!r} ({broken.source}) failed to load: "
             f"{broken.error}; the others work. See `reid-engine plugins`.")
    return table


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.3f}"
    return str(value)


@app.command()
def run(
    species: Optional[str] = typer.Option(None, "--species", help="species profile (registry/profiles/NAME.toml); `seal` with nothing else runs the demo"),
    gallery: Optional[Path] = typer.Option(None, "--gallery", help="labelled photos: CSV (image_id,identity,path,...) or a folder with one subfolder per identity; enrolled into --db"),
    query: Optional[Path] = typer.Option(None, "--query", help="photos to identify: CSV (image_id,path,...) or a folder"),
    split: Optional[Path] = typer.Option(None, "--split", help="CSV image_id,split[,truth] that splits --gallery into gallery and queries"),
    db: Optional[Path] = typer.Option(None, "--db", help="gallery database file [default: OUT/gallery.db]"),
    out: Path = typer.Option(DEFAULT_OUT, "--out", help="output folder"),
    top_k: int = typer.Option(5, "--top-k", min=1, help="identities listed per query in ranking.csv"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    profile_file: Optional[Path] = typer.Option(None, "--profile", help="a custom profile TOML instead of --species"),
    report: bool = typer.Option(True, "--report/--no-report", help="write report.html"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bars"),
    explain_top: int = typer.Option(1, "--explain-top", min=0, help="report.html: match drawings of each query's top K candidates (first pipeline; 0 = none)"),
    as_json: bool = typer.Option(False, "--json", help="print summary.json, the output paths and every prediction as JSON instead of the table"),
) -> None:
    """Identify each query photo as a known individual or a new one."""
    _run(species, gallery, query, split, db, out, top_k, device, profile_file, report, quiet, explain_top, as_json)


def _run(species, gallery, query, split, db, out, top_k, device, profile_file, report, quiet, explain_top=1,
         as_json=False) -> None:
    from reid_engine.commands.run import run as run_pipeline
    from reid_engine.runs import RunOptions

    title = "reid-engine run"
    demo = gallery is None and query is None and split is None and db is None
    if demo:
        if (species or "").lower() != DEMO_SPECIES or profile_file is not None:
            raise UsageError("nothing to identify: pass --query (and --gallery or --db); "
                             f"`reid-engine run --species {DEMO_SPECIES}` alone runs the demo on synthetic seals")
        from reid_engine.synthetic.seals import SealDatasetConfig, generate_seal_dataset

        err_console.print("demo: building the synthetic ringed-seal data set (deterministic, offline)…")
        data = generate_seal_dataset(out / "demo-data", SealDatasetConfig())
        gallery, query = data.gallery_csv, data.query_csv
        title = "reid-engine demo: synthetic Saimaa ringed seals"
    profile = _profile(species, profile_file)
    table = _table()
    options = RunOptions(profile=profile, db=db or out / "gallery.db", out=out, gallery=gallery, query=query,
                         split=split, top_k=top_k, device=device, write_report=report, title=title,
                         explain_top=explain_top)
    result = run_pipeline(options, table, progress=not quiet and sys.stderr.isatty())
    for notice in result.notices:
        _notice(notice)
    if as_json:
        from reid_engine.outputs.run_outputs import run_summary

        _print_json({**run_summary(result, options), "outputs": {k: str(v) for k, v in result.outputs.items()},
                     "predictions": [{"image_id": p.image_id, "path": p.path, "prediction": p.prediction,
                                      "score": p.score, "decision": p.decision, "truth": p.truth}
                                     for p in result.predictions]})
        return
    _print_result(result, profile, options)


def _print_result(result, profile, options) -> None:
    table = Table(title=f"{len(result.predictions)} queries · profile {profile.name}", show_lines=False)
    for col in ("query", "prediction", "score", "decision", "truth"):
        table.add_column(col)
    shown = result.predictions[:15]
    for p in shown:
        mark = ""
        if p.truth is not None:
            mark = ("[green]✓[/] " if p.prediction == p.truth else "[red]✗[/] ") + escape(p.truth)
        table.add_row(p.image_id, p.prediction, f"{p.score:.3f}", p.decision, mark)
    if len(result.predictions) > len(shown):
        table.add_row(f"… {len(result.predictions) - len(shown)} more", "", "", "", "")
    out_console.print(table)
    if result.metrics:
        m = result.metrics
        keys = [k for k in ("top1", "top5", "mAP", "BAKS", "BAUS", "geo_mean") if k in m]
        out_console.print("accuracy  " + "  ".join(f"{k}={_fmt(m[k])}" for k in keys)
                          + f"  ({m.get('n_known_queries', 0)} known, {m.get('n_unknown_queries', 0)} unknown queries)")
        if result.metrics_per_photo:
            a = result.metrics_per_photo
            out_console.print("each photo alone  " + "  ".join(f"{k}={_fmt(a[k])}" for k in keys if k in a)
                              + f"  (sequences identified together: {result.counts.get('sequences_pooled', 0)})")
    c, t = result.counts, result.timings
    out_console.print(f"gallery {c['gallery_images']} images of {c['gallery_individuals']} individuals; features "
                      f"computed {c['features_computed']}, reused {c['features_reused']}; {len(result.errors)} unusable images; "
                      f"{t['total_s']:.1f} s")
    out_console.print(escape(f"outputs in {options.out}/: " + ", ".join(p.name for p in result.outputs.values())))
    out_console.print(escape(f"gallery database: {options.db}"))


@app.command()
def enroll(
    gallery: Path = typer.Option(..., "--gallery", help="labelled photos: CSV or identity folders"),
    db: Path = typer.Option(DEFAULT_OUT / "gallery.db", "--db", help="gallery database file"),
    species: Optional[str] = typer.Option(None, "--species", help="profile whose features are extracted now"),
    profile_file: Optional[Path] = typer.Option(None, "--profile"),
    extract: bool = typer.Option(True, "--extract/--no-extract", help="compute and cache the profile's features now"),
    device: str = typer.Option("auto", "--device"),
) -> None:
    """Add labelled images to a gallery database without querying."""
    from reid_engine.commands.enroll import enroll as enroll_gallery

    done = enroll_gallery(gallery, db, _table(), extract=extract, species=species, profile_file=profile_file,
                          device=device, notify=_notice)
    out_console.print(escape(f"enrolled {done.added} new image(s) ({done.unchanged} already there) into {db}: "
                             f"{done.counts['images']} images of {done.counts['individuals']} individuals"))
    if done.errors:
        _say(err_console, "warning", "yellow", f"{len(done.errors)} image(s) could not be used; see {done.errors_csv}")


@app.command()
def calibrate(
    species: Optional[str] = typer.Option(None, "--species", help="species profile to calibrate"),
    gallery: Optional[Path] = typer.Option(None, "--gallery", help="labelled photos (CSV or identity folders), enrolled into --db first"),
    db: Path = typer.Option(DEFAULT_OUT / "gallery.db", "--db", help="gallery database; the calibration is stored in it"),
    profile_file: Optional[Path] = typer.Option(None, "--profile"),
    unknown_share: float = typer.Option(0.2, "--unknown-share", min=0.01, max=0.9, help="share of identities held out as unknown"),
    seed: int = typer.Option(0, "--seed", help="seed of the open-set split"),
    plots: Optional[Path] = typer.Option(None, "--plots", help="folder for threshold-sweep.png and reliability.png [default: next to --db]"),
    device: str = typer.Option("auto", "--device"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Fit isotonic calibration, Powell fusion weights and the known/new threshold on labelled photos."""
    from reid_engine.commands.calibrate import calibrate as run_calibration
    from reid_engine.device import resolve_device

    profile = _profile(species, profile_file)
    result = run_calibration(profile, db, gallery, unknown_share=unknown_share, seed=seed,
                             device=resolve_device(device), plots_dir=plots or db.parent / "calibration",
                             table=_table(), progress=not quiet and sys.stderr.isatty())
    for notice in result.notices:
        _notice(notice)
    s = result.split
    out_console.print(f"open-set split (seed {s['seed']}): {s['gallery_images']} gallery images; {s['known_queries']} known "
                      f"queries; {s['unknown_queries']} queries of {s['unknown_identities']} held-out identities")
    t = Table(title=f"calibration of profile {profile.name}")
    for col in ("method", "BAKS", "BAUS", "geo-mean", "top-1", "τ", "weights"):
        t.add_column(col)
    for m in result.methods:
        t.add_row(escape(m["method"]), _fmt(m["BAKS"]), _fmt(m["BAUS"]), _fmt(m["geo_mean"]), _fmt(m["top1"]), _fmt(m["tau"]),
                  ", ".join(f"{w:.2f}" for w in m["weights"]))
    out_console.print(t)
    for name in result.ece_before:
        out_console.print(escape(f"ECE {name} on the calibration pairs: before {result.ece_before[name]:.3f} "
                                 f"→ isotonic {result.ece_after[name]:.3f} (fitted on these pairs)"))
    out_console.print(escape(f"chosen τ = {result.fitted.threshold:.3f}; stored in {db} (later `run --db {db}` uses it)"))
    for path in result.plots.values():
        out_console.print(escape(f"plot: {path}"))


@app.command()
def benchmark(
    dataset: list[str] = typer.Option([], "--dataset", metavar="DATASET", help="a folder with metadata.csv (image_id,identity,path; splits/ optional), a CSV, a built-in (synthetic-seal-tiny, -easy, synthetic-seal, -hard) or wildlife:NAME=ROOT; repeat for several"),
    profile: list[str] = typer.Option([], "--profile", metavar="PROFILE", help="a shipped profile's name or a profile TOML; repeat for several"),
    split: list[str] = typer.Option([], "--split", metavar="SPLIT", help="closed | open | disjoint | time-aware | a split CSV; repeat for several [default: closed]"),
    out: Path = typer.Option(Path("benchmark"), "--out", help="folder for results.json, results.md, plots/ and each cell's database"),
    resume: bool = typer.Option(False, "--resume", help="reuse the cells finished by an earlier (killed) benchmark in --out"),
    calibrate: str = typer.Option("open", "--calibrate", help="run `calibrate` on the split's gallery first: open (open splits only) | always | never"),
    seed: int = typer.Option(0, "--seed", help="seed of the splits the harness makes (and of calibration and training)"),
    compare: Optional[Path] = typer.Option(None, "--compare", help="an earlier results.json: print what got better or worse beyond noise"),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="with --compare: exit 1 when a metric got worse beyond noise"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Measure profiles on datasets (closed/open/disjoint/time-aware splits): results.md, results.json, plots.

    Without --dataset and --profile: with --compare, compare the results in --out; else write
    results.md and the plots again from --out/results.json."""
    from reid_engine.benchmark.compare import compare as compare_results
    from reid_engine.benchmark.compare import describe, load_results
    from reid_engine.benchmark.harness import BenchmarkOptions
    from reid_engine.benchmark.harness import benchmark as run_benchmark
    from reid_engine.benchmark.harness import render as render_benchmark
    from reid_engine.device import resolve_device

    old = load_results(compare) if compare is not None else None  # a wrong path stops before any work
    if fail_on_regression and old is None:
        raise UsageError("--fail-on-regression needs --compare OLD/results.json")
    if not dataset and not profile and old is not None:
        new = load_results(out)  # compare the results already in --out, run nothing
    elif not dataset and not profile:
        result = render_benchmark(out)  # results.md and plots again from --out/results.json
        out_console.print(escape(f"rewrote {result.results_md} and {len(result.plots)} plot(s) from {result.results_json}"))
        new = load_results(out)
    else:
        log = (lambda line: None) if quiet else (lambda line: err_console.print(escape(line), highlight=False))
        result = run_benchmark(BenchmarkOptions(datasets=dataset, profiles=profile, splits=split or ["closed"], out=out,
                                                device=resolve_device(device), resume=resume, calibrate=calibrate,
                                                seed=seed, progress=not quiet and sys.stderr.isatty(),
                                                command=" ".join(["reid-engine", *sys.argv[1:]])), log=log)
        out_console.print(escape(result.results_md.read_text(encoding="utf-8")), highlight=False)
        out_console.print(escape(f"results: {result.results_json} · {result.results_md} · {len(result.plots)} plot(s) in "
                                 f"{result.results_md.parent / 'plots'}"))
        new = load_results(result.results_json)
        for f in result.failed:
            _say(err_console, "error", "bold red", f"cell {f['key']} failed: {f['error']}")
    if old is not None:
        changes = compare_results(old, new)
        for line in describe(changes, old, new):
            out_console.print(escape(line), highlight=False)
        if fail_on_regression and any(c.verdict == "worse" for c in changes):
            raise typer.Exit(1)
    if new.get("failed"):
        raise typer.Exit(1)


@app.command()
def explain(
    query: str = typer.Argument(..., metavar="QUERY", help="query photo (an image file)"),
    gallery_image: str = typer.Argument(..., metavar="GALLERY_IMAGE", help="gallery photo: an image file, or with --db an enrolled image_id"),
    out: Path = typer.Option(Path("match.png"), "--out", help="drawing to write, .png or .jpg/.jpeg (the format follows the suffix); without --pipeline, a profile with several pipelines writes OUT-PIPELINE.png (or .jpg) for each"),
    species: Optional[str] = typer.Option(None, "--species", help="species profile whose pipelines are drawn"),
    profile_file: Optional[Path] = typer.Option(None, "--profile", help="a custom profile TOML instead of --species"),
    pipeline: Optional[str] = typer.Option(None, "--pipeline", help="draw only this pipeline of the profile (only it is built: the others' plugins and weights are not needed)"),
    db: Optional[Path] = typer.Option(None, "--db", help="gallery database: its feature cache is used (and filled), and GALLERY_IMAGE may be an image_id"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    max_width: int = typer.Option(1600, "--max-width", min=200, help="width of the drawing, at most (px)"),
) -> None:
    """Draw the matches between two photos: inlier lines coloured by confidence, matched regions as ellipses."""
    from reid_engine.commands.explain import explain_files
    from reid_engine.device import resolve_device

    profile = _profile(species, profile_file)
    written = explain_files(query, gallery_image, profile, _table(), out, pipeline=pipeline, db=db,
                            device=resolve_device(device), max_width=max_width)
    for item in written:
        ev = item.evidence
        inliers = f"{ev.n_inliers} inliers" if ev.inliers_known else f"inliers not known ({ev.scorer} gives none)"
        weighted = ", before distinctiveness weighting" if ev.weighted else ""
        out_console.print(escape(f"{ev.pipeline}: score {ev.score:g} ({ev.scorer}{weighted}), {len(ev.matches)} matches, "
                                 f"{inliers} → {item.path}"), soft_wrap=True)


@app.command()
def segment(
    manifest: Path = typer.Argument(..., metavar="PHOTOS", help="a manifest CSV or a folder of photos"),
    species: Optional[str] = typer.Option(None, "--species", help="species profile whose [segment] step is used"),
    profile_file: Optional[Path] = typer.Option(None, "--profile", help="a custom profile TOML instead of --species"),
    db: Path = typer.Option(Path("gallery.db"), "--db", help="gallery database whose mask cache is filled (the one `run` will use)"),
    grid: Optional[Path] = typer.Option(None, "--grid", help="also draw SAMPLE random photos with their masks into this PNG"),
    sample: int = typer.Option(20, "--sample", min=1, help="photos in the --grid"),
    seed: int = typer.Option(0, "--seed", help="which random photos go into the --grid"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
) -> None:
    """Mask every photo ahead of a run (cached in --db), report coverage and fallbacks, draw a mask grid."""
    from rich.progress import Progress

    from reid_engine.commands.segment import require_segmenter, segment_manifest
    from reid_engine.device import resolve_device
    from reid_engine.inputs.manifests import load_manifest

    if not manifest.exists():
        raise UsageError(f"PHOTOS {manifest}: no such file or folder; pass a manifest CSV or a folder of photos")
    profile = _profile(species, profile_file)
    require_segmenter(profile)
    table = _table()
    records = list(load_manifest(manifest, "query", table).records)
    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("segmenting", total=len(records))
        summary = segment_manifest(profile, records, db, table, resolve_device(device), grid, sample, seed,
                                   progress=lambda: bar.advance(task))
    n = len(summary.views)
    mean, lo, hi = summary.coverage()
    per = f", {summary.seconds / n:.2f} s a photo" if n else ""
    out_console.print(f"{n} photos: {summary.computed} segmented now, {n - summary.computed} from the cache{per}")
    several = sum(1 for v in summary.views.values() if v.instances > 1)
    out_console.print(f"mask coverage of the photo: mean {mean:.0%} (5th-95th percentile {lo:.0%}-{hi:.0%}); "
                      f"{several} photos show several animals (instance policy: {profile.segment.instance})")
    fallbacks = summary.fallbacks
    out_console.print(f"fallbacks: {len(fallbacks)} of {n} ({len(fallbacks) / max(n, 1):.1%})")
    for image_id, view in list(fallbacks.items())[:10]:
        out_console.print(escape(f"  {image_id}: {view.fallback}"), soft_wrap=True)
    for e in summary.errors[:10]:
        _say(err_console, "error", "red", f"{e.image_id}: {e.reason}")
    if summary.grid is not None:
        out_console.print(escape(f"mask grid → {summary.grid}"))
    if summary.errors:
        raise typer.Exit(1)


@app.command()
def plugins(as_json: bool = JSON_OPTION) -> None:
    """List every plugin: name, kind, version, and where it came from."""
    from reid_engine.registry import PluginTable

    table = PluginTable.discover()
    if as_json:
        _print_json({"plugins": [{"name": s.name, "kind": s.kind, "version": s.version, "from": s.source,
                                  "entry_point": s.entry_point.split(" = ")[0], "description": s.description}
                                 for s in table.all()],
                     "failed": [{"entry_point": b.entry_point, "target": b.target, "from": b.source, "error": b.error}
                                for b in table.broken]})
        return
    t = Table(title="reid-engine plugins")
    t.add_column("name", no_wrap=True)
    t.add_column("kind", no_wrap=True)
    t.add_column("version", no_wrap=True)
    t.add_column("from", no_wrap=True)
    t.add_column("entry point", no_wrap=True)
    for spec in table.all():
        t.add_row(*(escape(x) for x in (spec.name, spec.kind, spec.version, spec.source, spec.entry_point.split(" = ")[0])))
    out_console.print(t)
    for broken in table.broken:
        _say(out_console, "failed to load", "red", f"{broken.entry_point} ({broken.target}, {broken.source}): {broken.error}")


@app.command()
def profiles(as_json: bool = JSON_OPTION) -> None:
    """List the shipped species profiles."""
    from reid_engine.registry.profiles import builtin_profiles, load_profile_file

    if as_json:
        found = [(name, path, load_profile_file(path)) for name, path in sorted(builtin_profiles().items())]
        _print_json([{"name": name, "description": p.description, "pipelines": [x.name for x in p.pipelines],
                      "file": str(path)} for name, path, p in found])
        return
    t = Table(title="species profiles (--species NAME)")
    for col in ("name", "description", "pipelines", "file"):
        t.add_column(col, overflow="fold")
    for name, path in sorted(builtin_profiles().items()):
        p = load_profile_file(path)
        t.add_row(escape(name), escape(p.description), escape(", ".join(x.name for x in p.pipelines)), escape(str(path)))
    out_console.print(t)


weights_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Pretrained model weights: list them, import files you have (offline), fetch them (internet).",
)
app.add_typer(weights_app, name="weights")

_STATE_STYLE = {"present": "green", "missing": "yellow", "corrupt": "bold red"}


@weights_app.command("list")
def weights_list(as_json: bool = JSON_OPTION) -> None:
    """Every known weight: whether it is installed, where, and its licence."""
    from reid_engine.weights import status, weights_dir

    rows = status()
    if as_json:
        _print_json([{"name": spec.name, "state": state.partition(" (")[0], "detail": state, "path": str(path),
                      "licence": spec.licence, "note": spec.note} for spec, state, path in rows])
        return
    t = Table(title=escape(f"model weights (cache/ = {weights_dir()})"), expand=out_console.is_terminal)
    t.add_column("name", no_wrap=True)
    t.add_column("state", no_wrap=True)
    t.add_column("where", overflow="fold", ratio=3)
    t.add_column("licence", overflow="fold", ratio=2)
    for spec, state, path in rows:
        word, _, detail = state.partition(" (")
        detail = detail.rstrip(")")
        if detail.startswith("package "):
            where = f"{detail.removeprefix('package ')}: {path.name}"
        elif path.parent == weights_dir():
            where = f"cache/{path.name}" + (" (expected)" if word == "missing" else "")
        else:
            where = str(path)
        shown = word + (" (unverified)" if "unverified" in detail else "")
        t.add_row(escape(spec.name), f"[{_STATE_STYLE[word]}]{escape(shown)}[/]", escape(where), escape(spec.licence))
    out_console.print(t)
    for spec, state, _ in rows:
        if spec.note:
            _say(out_console, f"note ({spec.name})", "yellow", spec.note)
    if any(state in ("missing", "corrupt") for _, state, _ in rows):
        out_console.print(escape("install: `reid-engine weights import FILE...` (files or folders, any file names; "
                                 "offline) or `reid-engine weights fetch NAME` (internet)"))


@weights_app.command("import")
def weights_import(
    files: list[Path] = typer.Argument(..., help="weight files, or folders of them (not their subfolders); any file names: files are recognised by sha256"),
) -> None:
    """Install weight files you have into the torch-hub cache kornia reads, after checking their sha256."""
    from reid_engine.weights import import_files

    results = import_files(files)
    for r in results:
        if r.status == "refused":
            _say(err_console, "refused", "bold red", f"{r.source}: {r.message}")
        elif r.status == "unknown":
            _say(out_console, "skipped", "yellow", f"{r.source}: {r.message}")
        else:
            out_console.print(escape(f"{r.source}: {r.message}"), highlight=False, soft_wrap=True)
    counts = {s: sum(r.status == s for r in results) for s in ("installed", "present", "unknown", "refused")}
    out_console.print(f"{counts['installed']} installed, {counts['present']} already present, "
                      f"{counts['unknown']} not known weights, {counts['refused']} refused")
    if counts["refused"]:
        raise typer.Exit(1)


@weights_app.command("fetch")
def weights_fetch(
    names: list[str] = typer.Argument(..., help="weight names (`reid-engine weights list`)"),
    timeout: float = typer.Option(60.0, "--timeout", min=1, help="seconds before a silent connection is given up"),
    no_verify: bool = typer.Option(False, "--no-verify", help="accept a download of a weight with no reference sha256 (hardnet-liberty); weights with one are always checked"),
) -> None:
    """Download weights (each upstream URL in turn), check their sha256 and install them; needs internet."""
    from reid_engine.commands.weights import fetch_weights

    code = 0
    for done in fetch_weights(names, timeout=timeout, verify=not no_verify):
        if done.error is not None:  # the others are still fetched; the exit code is the worst
            _say(err_console, "error", "bold red", done.error)
            code = max(code, exit_code(done.error))
            continue
        out_console.print(escape(f"{done.name}: {done.path}"), highlight=False, soft_wrap=True)
    if code:
        raise typer.Exit(code)


train_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Train models on your own photos (no labels needed).",
)
app.add_typer(train_app, name="train")


@train_app.command("descriptor")
def train_descriptor_command(
    photos: Path = typer.Argument(..., metavar="PHOTOS", help="folder of photos, or a manifest CSV (image_id,path,...; its masks/bboxes limit the regions)"),
    out: Path = typer.Option(..., "--out", help="checkpoint to write, e.g. hardnet.pth (rewritten atomically after every epoch; detections kept in OUT.regions); use it as checkpoint = \"PATH\" of hesaffnet-hardnet"),
    split: Optional[Path] = typer.Option(None, "--split", help="CSV image_id,split: train only on its gallery rows (never on queries)"),
    epochs: int = typer.Option(5, "--epochs", min=1, help="passes, each over freshly drawn pairs"),
    pairs: int = typer.Option(20000, "--pairs", min=8, help="training patch pairs drawn per epoch (each region at most once)"),
    batch_size: int = typer.Option(512, "--batch-size", min=8, help="pairs per batch; the hardest negative is mined within it (HardNet: 1024)"),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam | sgd (the HardNet reference: momentum 0.9, weight decay 1e-4; needs many more pairs)"),
    lr: Optional[float] = typer.Option(None, "--lr", min=0.0, help="initial learning rate, decayed linearly to 0 [default: sgd 0.1, adam 0.001]"),
    val_share: float = typer.Option(0.2, "--val-share", help="share of PHOTOS held out (whole photos) to measure FPR95 / top-1 on"),
    val_pairs: int = typer.Option(2000, "--val-pairs", min=16, help="held-out pairs measured"),
    resume: bool = typer.Option(False, "--resume", help="continue the run saved in --out from its last finished epoch"),
    init: Optional[Path] = typer.Option(None, "--init", help="fine-tune this HardNet checkpoint [default: hardnet-liberty when installed, else random]"),
    from_scratch: bool = typer.Option(False, "--from-scratch", help="start from random weights even when hardnet-liberty is installed"),
    max_photos: int = typer.Option(0, "--max-photos", min=0, help="use a seeded random subset of this many photos (0 = all)"),
    resize: int = typer.Option(640, "--resize", min=0, help="longer side the detector sees; keep it equal to the extractor's resize"),
    max_keypoints: int = typer.Option(480, "--max-keypoints", min=1, help="regions detected per photo"),
    upright: bool = typer.Option(False, "--upright", help="upright regions (for extractors with upright = true)"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    seed: int = typer.Option(0, "--seed", help="seed of the photo split, the warps and the network's initialisation"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress lines"),
) -> None:
    """Self-supervised HardNet: each region of a photo against the same region in a randomly warped copy."""
    from reid_engine.device import resolve_device
    from reid_engine.training.train_descriptor import (
        TrainDescriptorOptions,
        train_descriptor,
    )

    options = TrainDescriptorOptions(
        photos=photos, out=out, split=split, epochs=epochs, pairs=pairs, batch_size=batch_size,
        optimizer=optimizer.lower(), lr=lr, val_share=val_share, val_pairs=val_pairs, resume=resume,
        device=resolve_device(device), seed=seed, init=init, from_scratch=from_scratch, max_photos=max_photos,
        resize=resize, max_keypoints=max_keypoints, upright=upright,
    )
    log = (lambda line: None) if quiet else (lambda line: err_console.print(escape(line), highlight=False))
    result = train_descriptor(options, _table(), log=log)
    for notice in result.notices:
        _notice(notice)
    if result.skipped:
        _say(err_console, "warning", "yellow", f"{len(result.skipped)} photo(s) could not be read and were skipped "
             f"(first: {result.skipped[0]})")
    t = Table(title=escape(f"held-out patch matching: {result.val_pairs} pairs from {result.val_photos} photos "
                           f"(trained on {result.train_photos})"))
    for col in ("descriptor", "FPR95 ↓", "top-1 ↑", "loss"):
        t.add_column(col)
    names = {"rootsift": "RootSIFT", "untrained": "HardNet, random init", "init": "HardNet, initial weights"}
    for key, metrics in result.baselines.items():
        t.add_row(escape(names.get(key, key)), _fmt(metrics["fpr95"]), _fmt(metrics["top1"]), "")
    for row in result.history:
        t.add_row(f"HardNet, epoch {row['epoch']}", _fmt(row["val_fpr95"]), _fmt(row["val_top1"]), _fmt(row["loss"]))
    out_console.print(t)
    out_console.print(escape(f"regions: {result.detector}; initial weights: {result.init}"))
    out_console.print(escape(f"checkpoint: {result.out}  (extractor = {{ plugin = \"hesaffnet-hardnet\", "
                             f"checkpoint = \"{result.out}\" }})"))


@train_app.command("embedder")
def train_embedder_command(
    species: Optional[str] = typer.Option(None, "--species", help="species profile: its [segment] view and [trained_embedder] defaults"),
    profile_file: Optional[Path] = typer.Option(None, "--profile"),
    gallery: Optional[Path] = typer.Option(None, "--gallery", help="labelled photos (CSV or identity folders), enrolled into --db [default: everything enrolled in --db]"),
    split: Optional[Path] = typer.Option(None, "--split", help="CSV image_id,split: train only on its gallery rows (never on queries)"),
    db: Path = typer.Option(DEFAULT_OUT / "gallery.db", "--db", help="gallery database; the trained model is stored in it"),
    method: Optional[str] = typer.Option(None, "--method", help="arcface (sub-center ArcFace, dynamic margins) landmark-id (also landmark heatmaps from the keypoints column, seed paper 002) or dve (also part-aware dense descriptors and an orientation head, seed paper 003) [default: the profile's, arcface]"),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="any timm model [default: the profile's, tf_efficientnet_lite0]"),
    init: Optional[Path] = typer.Option(None, "--init", help="start from this checkpoint instead of ImageNet: a timm state dict of the backbone (torch or .safetensors), an embedder file, or a Hugging Face timm model folder (its config.json sets --backbone, --image-size and the normalisation you do not give)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=0, help="at most this many epochs (early stopping on held-out mAP) [default: the profile's]"),
    image_size: Optional[int] = typer.Option(None, "--image-size", min=32, help="square input side in px [default: the profile's]"),
    dim: int = typer.Option(512, "--dim", min=0, help="embedding width (a linear + BN neck on the pooled features); 0: no neck, the backbone's pooled features as they are (e.g. a pretrained re-ID backbone with --epochs 0)"),
    batch_p: int = typer.Option(8, "--batch-p", min=2, help="identities per batch"),
    batch_k: int = typer.Option(4, "--batch-k", min=1, help="photos per identity in a batch"),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="learning rate of the head (the backbone gets 0.3x)"),
    val_share: float = typer.Option(0.1, "--val-share", min=0.0, max=0.5, help="share of identities held out to validate on (0: none, train on all, no early stopping)"),
    patience: int = typer.Option(3, "--patience", min=1, help="stop after this many epochs without a better held-out mAP"),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="horizontal flips in augmentation [default: the profile's; off where left and right flanks differ]"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the model to this file (model = \"PATH\" of trained-embedder)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="per-epoch checkpoint [default: DB.embedder-PROFILE.ckpt]"),
    resume: bool = typer.Option(False, "--resume", help="continue the run saved in the checkpoint"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Train a re-ID embedder on your labelled gallery; the shortlist and fusion then use it."""
    from reid_engine.device import resolve_device
    from reid_engine.training.train_embedder import (
        options_from_profile,
        train_embedder,
    )

    profile = _profile(species, profile_file)
    options = options_from_profile(
        profile, db=db, gallery=gallery, split=split, method=method, backbone=backbone, init=init, epochs=epochs,
        image_size=image_size, dim=dim, batch_p=batch_p, batch_k=batch_k, lr=lr, val_share=val_share, patience=patience,
        flip=flip, out=out, checkpoint=checkpoint, resume=resume, device=resolve_device(device), seed=seed)
    log = (lambda line: None) if quiet else (lambda line: err_console.print(escape(line), highlight=False))
    result = train_embedder(options, _table(), log=log, progress=not quiet and sys.stderr.isatty())
    if result.skipped:
        _say(err_console, "warning", "yellow", f"{len(result.skipped)} photo(s) could not be used and were skipped "
             f"(first: {result.skipped[0].reason})")
    t = Table(title=escape(f"held out: {result.val_images} photos of {result.val_identities} new individuals, "
                           f"{result.probe_images} photos of known ones (trained on {result.train_images} photos of "
                           f"{result.train_identities})"))
    for col in ("model", "new: mAP", "new: top-1", "known: top-1", "known: MRR", "loss", "s"):
        t.add_column(col)
    nan = float("nan")
    if result.start:
        t.add_row(escape(f"start: {result.init}" + (" (kept)" if result.best_epoch == 0 else "")),
                  *(_fmt(result.start.get(k, nan)) for k in ("map", "top1", "known_top1", "known_mrr")), "", "")
    for row in result.history:
        mark = " (kept)" if row["epoch"] == result.best_epoch else ""
        t.add_row(f"epoch {row['epoch']}{mark}",
                  *(_fmt(row.get(f"val_{k}", nan)) for k in ("map", "top1", "known_top1", "known_mrr")),
                  _fmt(row["loss"]), f"{row['seconds']:.0f}")
    out_console.print(t)
    out_console.print(escape(f"training {result.seconds_training:.0f} s, loading {result.seconds_loading:.0f} s, "
                             f"peak memory {result.peak_rss_mb:.0f} MB"))
    if options.profile.uses_trained_embedder:
        uses = f"`reid-engine run --db {db}` with this profile uses it"
    elif options.profile.trained_embedder is None:  # the run would not: say how to make it
        uses = (f"runs with this profile do not use it: it has no [trained_embedder] table ({options.profile.source}); "
                "add one with use = \"when-trained\" to a copy and pass it with --profile FILE")
    else:
        uses = (f"runs with this profile do not use it (use = \"never\" in its [trained_embedder] table, "
                f"{options.profile.source}): in a copy, set use = \"when-trained\" and pass it with --profile FILE")
    out_console.print(escape(f"stored in {db} for profile {options.profile.name!r} (model {result.model_sha256[:12]}); "
                             + uses))
    if result.out is not None:
        out_console.print(escape(f"model file: {result.out}"))


@train_app.command("pattern")
def train_pattern_command(
    data: Path = typer.Option(..., "--data", help="a CSV with path and pattern_path (or pattern_mask_path) columns, optional mask_path and identity; or a folder of such CSVs (a synthetic seal set)"),
    out: Path = typer.Option(..., "--out", help="the model file to write; a profile uses it as [[preprocess]] plugin = \"pattern\", model = \"OUT\""),
    epochs: int = typer.Option(8, "--epochs", min=1),
    crop: int = typer.Option(256, "--crop", min=64, help="training crop side in px (a multiple of 32)"),
    max_side: int = typer.Option(512, "--max-side", min=64, help="photos are scaled to at most this side first"),
    batch: int = typer.Option(8, "--batch", min=1),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="decoder learning rate (the encoder gets 0.3x)"),
    val_share: float = typer.Option(0.2, "--val-share", min=0.0, max=0.5, help="share of individuals held out to measure pattern IoU/F1 on"),
    encoder: str = typer.Option("tf_efficientnet_lite0", "--encoder", help="timm encoder (ImageNet start offline for tf_efficientnet_lite0/1/2)"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT.ckpt"),
    device: str = typer.Option("auto", "--device"),
    seed: int = typer.Option(0, "--seed"),
    quiet: bool = typer.Option(False, "--quiet"),
) -> None:
    """Train the pelage-pattern network (U-Net) on photos with pattern masks; the `pattern` preprocessor uses it."""
    from reid_engine.device import resolve_device
    from reid_engine.training.train_pattern import TrainPatternOptions, train_pattern

    if crop % 32:
        raise UsageError(f"--crop {crop}: must be a multiple of 32")
    log = (lambda line: None) if quiet else (lambda line: err_console.print(escape(line), highlight=False))
    result = train_pattern(TrainPatternOptions(data=data, out=out, epochs=epochs, crop=crop, max_side=max_side,
                                               batch=batch, lr=lr, val_share=val_share, seed=seed, encoder=encoder,
                                               device=resolve_device(device), resume=resume), log=log)
    t = Table(title=escape(f"held out: {result.val_images} photos of {result.val_individuals} individuals "
                           f"(trained on {result.train_images} photos; start: {result.init})"))
    for col in ("epoch", "loss", "pattern IoU", "pattern F1", "s"):
        t.add_column(col)
    for row in result.history:
        mark = " (kept)" if row["epoch"] == result.best_epoch else ""
        t.add_row(f"{row['epoch']}{mark}", _fmt(row["loss"]), _fmt(row["val_iou"]), _fmt(row["val_f1"]),
                  f"{row['seconds']:.0f}")
    out_console.print(t)
    out_console.print(escape(f"model: {result.out} (sha256 {result.model_sha256[:12]}); {result.seconds:.0f} s, peak "
                             f"memory {result.peak_rss_mb:.0f} MB. Use it in a profile: [[preprocess]] plugin = "
                             f"\"pattern\", model = \"{result.out}\""))


export_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Write trained models in other formats.")
app.add_typer(export_app, name="export")


@export_app.command("onnx")
def export_onnx_command(
    out: Path = typer.Argument(..., metavar="OUT", help="ONNX file to write (model = \"OUT\", runtime = \"onnx\" of trained-embedder)"),
    species: Optional[str] = typer.Option(None, "--species"),
    profile_file: Optional[Path] = typer.Option(None, "--profile"),
    db: Optional[Path] = typer.Option(None, "--db", help="the gallery database holding the trained embedder"),
    model: Optional[Path] = typer.Option(None, "--model", help="or a model file from `train embedder --out`"),
) -> None:
    """Export a trained embedder to ONNX (input 'image' N x 3 x S x S, output 'embedding' N x D)."""
    from reid_engine.commands.export import export_onnx_model

    export_onnx_model(out, model=model, db=db, species=species, profile_file=profile_file, notify=_notice)
    out_console.print(escape(f"ONNX model: {out} (trained-embedder: model = \"{out}\", runtime = \"onnx\")"))


def main() -> None:
    if os.environ.get("REID_ENGINE_DEBUG"):
        app()
        return
    try:
        app()
    except KeyboardInterrupt:
        err_console.print(INTERRUPTED)
        sys.exit(130)
