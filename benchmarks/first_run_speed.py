"""First run and warm queries of a profile on a gallery of real photos, timed end to end, per stage.

    python benchmarks/first_run_speed.py --gallery-photos 700 --queries 50 --species nyala
    python benchmarks/first_run_speed.py --gallery-photos 60 --queries 10 --stages   # where the time goes

A gallery of N nyala-dev photos (the closed split's gallery rows, evenly spread) and M queries
(its query rows) go through `reid-engine run` as a new user's first run: a fresh database, a
fresh process, nothing cached. Then ``--warm-queries`` other photos are identified against the
now cached gallery (a later survey: only the new photos are new), one `reid-engine run` for
all of them. Each run is its own subprocess, so its wall time includes start-up and its peak
RSS is its own.

With ``--stages`` the first run runs under cProfile and the seconds spent in each stage are
read off it (cumulative time of the stage's entry function): decoding, segmentation, each
extractor, fitting the shortlist embedder, the distinctiveness model, matching and scoring.
cProfile sees only the main thread: photos and pairs worked on by other threads (``--workers``
above 1, the default on several cores) drop out of the per-photo stages, so add ``--workers 1``
for those (the stage seconds are then those of one photo at a time).

Writes benchmarks/results/first-run-<profile>-<N>-<label>.json (``--label``, default "now").
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nyala-dev"

# stage -> substrings of pstats keys "file:line(function)" whose cumulative time is the stage's
STAGES = {
    "decode": ["inputs/images.py", "(decode_image)"],
    "segment (network)": ["segmenters/isnet.py", "(probability)"],
    "extract hessaff-rootsift": ["extractors/hessaff_rootsift.py", "(extract)"],
    "extract aliked": ["extractors/aliked.py", "(extract)"],
    "extract disk": ["extractors/disk.py", "(extract)"],
    "extract sift": ["extractors/sift.py", "(extract)"],
    "fit shortlist embedder": ["shortlist/global_embedding.py", "(prepare_embedder)"],
    "fit distinctiveness": ["scoring/distinctiveness.py", "(fitted)"],
    "match + score pairs": ["scoring/pairs.py", "(score_pairs)"],
    "features (all, incl. the above)": ["store/features.py", "(ensure_features)"],
    "run (all)": ["commands/run.py", "(run)"],
}


def write_manifests(workdir: Path, n_gallery: int, n_queries: int, n_warm: int) -> tuple[Path, Path, Path | None]:
    meta = {r["image_id"]: r for r in csv.DictReader(open(DATA / "metadata.csv"))}
    split = list(csv.DictReader(open(DATA / "splits" / "closed.csv")))
    gallery = [r["image_id"] for r in split if r["split"] == "gallery"]
    queries = [r["image_id"] for r in split if r["split"] == "query"]
    if n_gallery > len(gallery) or n_queries + n_warm > len(queries):
        sys.exit(f"nyala-dev closed has {len(gallery)} gallery and {len(queries)} query photos")
    chosen = gallery[:: len(gallery) // n_gallery][:n_gallery]
    step = len(queries) // (n_queries + n_warm)
    spread = queries[::step][: n_queries + n_warm]
    first, warm = spread[:n_queries], spread[n_queries:]
    gallery_csv, query_csv, warm_csv = workdir / "gallery.csv", workdir / "queries.csv", workdir / "warm-queries.csv"
    with open(gallery_csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "identity", "path"])
        writer.writerows([i, meta[i]["identity"], str(DATA / meta[i]["path"])] for i in chosen)
    for path, ids in ((query_csv, first), (warm_csv, warm)):
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image_id", "path", "truth"])
            writer.writerows([i, str(DATA / meta[i]["path"]), meta[i]["identity"]] for i in ids)
    return gallery_csv, query_csv, (warm_csv if warm else None)


def run_engine(args: list[str], cwd: Path, profile_to: Path | None = None) -> dict:
    """One `reid-engine` process; wall seconds, its peak RSS (MiB) and the run's summary.json."""
    if profile_to is None:
        command = [sys.executable, "-m", "reid_engine", *args]
    else:
        code = ("import cProfile, sys; from reid_engine.cli import main; "
                f"sys.argv = ['reid-engine', *{args!r}]; cProfile.run('main()', {str(profile_to)!r})")
        command = [sys.executable, "-c", code]
    log = Path(cwd) / "engine.log"
    t = time.perf_counter()
    with open(log, "w") as handle:
        child = subprocess.Popen(command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"reid-engine {' '.join(args)} failed:\n{log.read_text()[-3000:]}")
    out = Path(cwd) / args[args.index("--out") + 1]
    summary = json.loads((out / "summary.json").read_text())
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024,
            "timings": summary.get("timings"), "counts": summary.get("counts"), "metrics": summary.get("metrics")}


def stage_seconds(profile_file: Path) -> dict[str, float]:
    import pstats

    stats = pstats.Stats(str(profile_file)).stats  # {(file, line, function): (cc, nc, tt, ct, callers)}
    out = {}
    for stage, needles in STAGES.items():
        total = 0.0
        for (file, line, function), (_, _, _, cumulative, callers) in stats.items():
            key = f"{file}:{line}({function})".replace("/reid_engine/", "/engine/")  # an installed or linked copy
            if all(n in key for n in needles):
                # the outermost call only: a recursive or nested entry would count twice
                if not any(all(n in f"{cf}:{cl}({cfun})" for n in needles) for (cf, cl, cfun) in callers):
                    total += cumulative
        if total:
            out[stage] = total
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery-photos", type=int, default=700)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--warm-queries", type=int, default=10)
    parser.add_argument("--species", default="nyala")
    parser.add_argument("--profile", type=Path, help="a profile TOML instead of --species")
    parser.add_argument("--stages", action="store_true", help="run the first run under cProfile, per-stage seconds")
    parser.add_argument("--threads", type=int, default=0,
                        help="reid-engine --threads (0 = all CPUs; -1 = leave it out, for engines before the option)")
    parser.add_argument("--workers", type=int, default=-1,
                        help="reid-engine --workers (0 = one per thread; 1 = one photo at a time; -1 = leave it out). "
                             "cProfile sees only the main thread: with --stages, per-photo stages need --workers 1")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/first-run-bench"))
    parser.add_argument("--label", default="now")
    args = parser.parse_args()

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    gallery, queries, warm = write_manifests(args.workdir, args.gallery_photos, args.queries, args.warm_queries)
    chosen = ["--profile", str(args.profile.resolve())] if args.profile else ["--species", args.species]
    common = [*(["--threads", str(args.threads)] if args.threads >= 0 else []),
              *(["--workers", str(args.workers)] if args.workers >= 0 else []), "run", *chosen, "--quiet", "--db", "gallery.db", "--report"]
    prof = args.workdir / "first-run.prof" if args.stages else None
    first = run_engine([*common, "--gallery", str(gallery), "--query", str(queries), "--out", "first"],
                       args.workdir, prof)
    photos = args.gallery_photos + args.queries
    result = {
        "profile": str(args.profile) if args.profile else args.species,
        "gallery_photos": args.gallery_photos, "queries": args.queries,
        "first_run": {**first, "s_per_photo": first["wall_s"] / photos},
        "machine": {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "processor": platform.processor() or platform.machine(), "python": platform.python_version()},
        "command": "python benchmarks/" + " ".join([Path(__file__).name, *sys.argv[1:]]),
    }
    if prof is not None:
        stages = stage_seconds(prof)
        result["first_run"]["stages_s"] = stages
        result["first_run"]["stages_s_per_photo"] = {k: v / photos for k, v in stages.items()}
    print(json.dumps({"first_run_wall_s": first["wall_s"], "stages_s": result["first_run"].get("stages_s")}, indent=1))
    if warm is not None:
        later = run_engine([*common, "--query", str(warm), "--out", "warm"], args.workdir)
        n = args.warm_queries
        result["warm"] = {**later, "queries": n, "s_per_query": later["wall_s"] / n}
        print(json.dumps({"warm_wall_s": later["wall_s"], "s_per_query": later["wall_s"] / n}))
    name = Path(args.profile).stem if args.profile else args.species
    path = REPO / "benchmarks" / "results" / f"first-run-{name}-{args.gallery_photos}-{args.label}.json"
    path.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
