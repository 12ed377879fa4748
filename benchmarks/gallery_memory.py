"""Peak memory (RSS) and time of `reid-engine run` as the gallery grows, without extracting its features.

    .venv/bin/python benchmarks/gallery_memory.py                  # galleries of 700 and 5,000 photos, 10 queries
    .venv/bin/python benchmarks/gallery_memory.py --sizes 40 80 --sources 12 --queries 2 \\
        --result /tmp/gallery-memory.json                          # a quick check that it works

Extracting the features of 5,000 photos would take hours, so the large galleries are
fabricated from a few real ones:

1. ``--sources`` real nyala-dev photos (the closed split's gallery rows, evenly spread) go
   through `reid-engine run` once, into WORKDIR/source/source.db, so their features (every
   extractor of the profile) and animal masks are cached there. Reused by later runs.
2. For each size N of ``--sizes``: N photo files, each a byte copy of a source photo (cycling
   over them) with a few distinct bytes appended after the image data, so each has its own
   content hash (the key of every cache entry) yet decodes to the source's pixels. They get
   synthetic identities, ``PHOTOS_PER_INDIVIDUAL`` photos each. A fresh database enrols them
   and its caches are filled by copying each source's cached features and mask under the
   copy's content hash, with the engine's own cache classes (in a child process, see below).
3. `reid-engine run --species nyala` (a fresh process) identifies ``--queries`` real query
   photos (the closed split's query rows) against that gallery: only the queries' features
   are computed - asserted from summary.json's counts - while the shortlist embedder, the
   distinctiveness model, matching and the report work on the full gallery. Its wall time and
   peak RSS (``os.wait4``) are measured.

Caveats: identities and scores are meaningless (every source appears under many identities),
so accuracy is not reported. The fabricated gallery's cache blobs were just written, so the
run reads them from the page cache, as a warm archive would; on a cold disk it is slower.
Linux counts the RSS of the process that spawns a child in that child's peak RSS, so this
script never imports the engine itself: the cache copying runs in a child of its own.

Writes benchmarks/results/gallery-memory.json (``--result``); WORKDIR keeps the logs and each
run's outputs (the fabricated photos and databases are deleted unless ``--keep``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nyala-dev"
SPECIES = "nyala"
PHOTOS_PER_INDIVIDUAL = 6  # fabricated galleries have ceil(N / 6) individuals
SOURCE_QUERIES = 2  # queries of the one real run that caches the sources' features
MISSING_SOURCES = 3  # exit status of the prefill child when the source database lacks entries


# -- the real photos -----------------------------------------------------------------------
def nyala_closed() -> tuple[dict[str, dict], list[str], list[str]]:
    """nyala-dev metadata by image id, and the closed split's gallery and query image ids."""
    with open(DATA / "metadata.csv", newline="") as handle:
        meta = {r["image_id"]: r for r in csv.DictReader(handle)}
    with open(DATA / "splits" / "closed.csv", newline="") as handle:
        split = list(csv.DictReader(handle))
    return (meta, [r["image_id"] for r in split if r["split"] == "gallery"],
            [r["image_id"] for r in split if r["split"] == "query"])


def spread(ids: list[str], n: int) -> list[str]:
    """``n`` of ``ids`` evenly spread over the list."""
    if not 0 < n <= len(ids):
        sys.exit(f"asked for {n} photos of a list of {len(ids)}")
    return [ids[i * len(ids) // n] for i in range(n)]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def photo_path(meta: dict[str, dict], image_id: str) -> Path:
    return DATA / meta[image_id]["path"]


def query_manifest(path: Path, meta: dict[str, dict], ids: list[str]) -> Path:
    return write_csv(path, ["image_id", "path", "truth"],
                     [[i, str(photo_path(meta, i)), meta[i]["identity"]] for i in ids])


# -- the engine, in a child process --------------------------------------------------------
def run_engine(args: list[str], log: Path) -> dict:
    """One `reid-engine` process: its wall seconds, peak RSS (MiB) and summary.json."""
    t = time.perf_counter()
    with open(log, "w") as handle:
        child = subprocess.Popen([sys.executable, "-m", "reid_engine", *args], cwd=REPO,
                                 stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage: its peak RSS
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"reid-engine {' '.join(args)} failed (log {log}):\n{log.read_text()[-3000:]}")
    summary = json.loads((Path(args[args.index("--out") + 1]) / "summary.json").read_text())
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "counts": summary["counts"], "timings": {k: round(v, 2) for k, v in summary["timings"].items()}}


def engine_run_args(threads: int, gallery: Path, queries: Path, db: Path, out: Path, *extra: str) -> list[str]:
    return ["--threads", str(threads), "run", "--species", SPECIES, "--gallery", str(gallery),
            "--query", str(queries), "--db", str(db), "--out", str(out), "--quiet", *extra]


# -- 1. the sources ------------------------------------------------------------------------
def ensure_sources(folder: Path, meta: dict[str, dict], sources: list[str], queries: list[str], threads: int,
                   force: bool = False) -> Path:
    """WORKDIR/source/source.db with the features and masks of ``sources`` cached (one real run,
    skipped when an earlier one cached these very sources)."""
    folder.mkdir(parents=True, exist_ok=True)
    db, done = folder / "source.db", folder / "done.json"
    if not force and done.exists() and json.loads(done.read_text()).get("sources") == sources:
        print(f"sources: reusing {db} ({len(sources)} photos)")
        return db
    gallery = write_csv(folder / "gallery.csv", ["image_id", "identity", "path"],
                        [[i, meta[i]["identity"], str(photo_path(meta, i))] for i in sources])
    query = query_manifest(folder / "queries.csv", meta, queries)
    print(f"sources: extracting the features of {len(sources)} real photos once (about 1-2 s each)...", flush=True)
    result = run_engine(engine_run_args(threads, gallery, query, db, folder / "out", "--no-report"),
                        folder / "engine.log")
    print(f"sources: done in {result['wall_s']:.0f} s")
    done.write_text(json.dumps({"sources": sources, "run": result}, indent=2) + "\n")
    return db


# -- 2. a fabricated gallery ---------------------------------------------------------------
def fabricate(folder: Path, n: int, meta: dict[str, dict], sources: list[str]) -> tuple[Path, Path]:
    """N photo files (byte-unique copies of the sources, cycling), their gallery CSV and the
    JSON fake image id → source image id. Returns (gallery CSV, source map)."""
    photos = folder / "photos"
    photos.mkdir(parents=True)
    source_bytes = {s: photo_path(meta, s).read_bytes() for s in sources}
    rows, source_of, hashes = [], {}, set()
    for i in range(n):
        source = sources[i % len(sources)]
        image_id = f"fake_{i + 1:05d}"
        path = photos / f"{image_id}{photo_path(meta, source).suffix}"
        # after the JPEG end-of-image marker: decoders ignore it, the content hash does not
        data = source_bytes[source] + f"\0gallery-memory copy {i + 1}\0".encode()
        path.write_bytes(data)
        hashes.add(hashlib.sha256(data).hexdigest())
        rows.append([image_id, f"ind_{i // PHOTOS_PER_INDIVIDUAL + 1:05d}", str(path)])
        source_of[image_id] = source
    if len(hashes) != n or hashes & {hashlib.sha256(b).hexdigest() for b in source_bytes.values()}:
        sys.exit("fabricated photos are not byte-unique")
    source_map = folder / "sources.json"
    source_map.write_text(json.dumps(source_of))
    return write_csv(folder / "gallery.csv", ["image_id", "identity", "path"], rows), source_map


def prefill(db: Path, gallery: Path, source_map: Path, source_db: Path, threads: int) -> dict:
    """Enrol ``gallery`` into a fresh ``db`` and copy the sources' cache entries to it, in a child
    process (see the module docstring). Returns what it did (``prefill_database``)."""
    result = db.with_name("prefill.json")
    spec = {"db": str(db), "gallery": str(gallery), "sources": str(source_map), "source_db": str(source_db),
            "threads": threads, "result": str(result)}
    child = subprocess.run([sys.executable, __file__, "--prefill", json.dumps(spec)], cwd=REPO)
    if child.returncode == MISSING_SOURCES:
        raise MissingSources()
    if child.returncode != 0:
        sys.exit(f"prefilling {db} failed (exit status {child.returncode})")
    return json.loads(result.read_text())


class MissingSources(Exception):
    """The source database lacks some cache entries of the current profile (it changed since)."""


def prefill_database(spec: dict) -> None:
    """The prefill child: enrol the fabricated gallery and copy, for each photo, its source's
    cached features (every extractor of the profile) and segmentation under its own content
    hash - through FeatureCache and GalleryDatabase, the classes the engine reads them with."""
    import numpy as np

    from reid_engine.components import build_components
    from reid_engine.inputs.enrolment import enroll_manifest
    from reid_engine.inputs.images import read_image
    from reid_engine.inputs.manifests import load_manifest
    from reid_engine.inputs.views import gallery_record, segmentation_of
    from reid_engine.registry import PluginTable
    from reid_engine.registry.profiles import resolve_profile
    from reid_engine.store.database import GalleryDatabase
    from reid_engine.store.features import FeatureCache, image_key
    from reid_engine.threads import configure

    t = time.perf_counter()
    configure(spec["threads"])
    profile, _ = resolve_profile(SPECIES, None)
    table = PluginTable.discover()
    components = build_components(profile, table, "cpu")  # the cache ids of the run's extractors and segmenter
    extractors = components.extractors()
    source_of = json.loads(Path(spec["sources"]).read_text())
    with GalleryDatabase(Path(spec["source_db"])) as src, GalleryDatabase(Path(spec["db"])) as dst:
        src_cache, dst_cache = FeatureCache(src), FeatureCache(dst)
        src_seg, dst_seg = segmentation_of(components, profile, src), segmentation_of(components, profile, dst)
        masks = src_seg is not None and src_seg.segmenter is not None
        sources = {g.image_id: g for g in src.gallery()}

        # every source's entries, read once (S photos, a few MB each at most)
        entries, missing = {}, []
        for image_id in sorted(set(source_of.values())):
            g = sources.get(image_id)
            key = None if g is None else image_key(gallery_record(g), g.content_hash)
            features = {ex.cache_id: src_cache.get(key, ex) for ex in extractors} if g is not None else {}
            # Segmentation has no public "store this map" call: the key is its own
            prob = src.get_segmentation(src_seg._key(g.content_hash)) if masks and g is not None else None
            if g is None or any(f is None for f in features.values()) or (masks and prob is None):
                missing.append(image_id)
            entries[image_id] = (features, prob)
        if missing:
            print(f"{spec['source_db']} lacks cache entries of {len(missing)} sources (first {missing[0]}) "
                  "for the current profile", file=sys.stderr)
            sys.exit(MISSING_SOURCES)

        errors: list = []
        added, _ = enroll_manifest(dst, load_manifest(Path(spec["gallery"]), "gallery", table), errors)
        fakes = dst.gallery()
        if errors or added != len(source_of) or len(fakes) != len(source_of):
            sys.exit(f"enrolling {spec['gallery']}: {added} of {len(source_of)} photos enrolled, errors {errors[:3]}")
        for fake in fakes:
            features, prob = entries[source_of[fake.image_id]]
            key = image_key(gallery_record(fake), fake.content_hash)
            for ex in extractors:
                dst_cache.put(key, ex, features[ex.cache_id])
            if masks:
                dst.put_segmentation(dst_seg._key(fake.content_hash), prob)

        # the engine decodes a fabricated photo to its source's pixels, under its own hash
        fake = fakes[0]
        source = sources[source_of[fake.image_id]]
        seen, real = (read_image(gallery_record(g), profile.image.max_side, profile.image.min_side)
                      for g in (fake, source))
        if seen.content_hash != fake.content_hash or seen.content_hash == real.content_hash \
                or not np.array_equal(seen.rgb, real.rgb):
            sys.exit(f"{fake.path}: does not decode as a byte-unique copy of {source.path}")

    Path(spec["result"]).write_text(json.dumps({
        "photos": len(fakes), "extractors": [ex.spec.name for ex in extractors], "masks": masks,
        "seconds": round(time.perf_counter() - t, 1)}))


# -- 3. the measured run -------------------------------------------------------------------
def check_cached(result: dict, n: int, prefilled: dict) -> None:
    """Fail loudly unless the gallery was served from the cache: only the queries' features computed."""
    counts = result["counts"]
    per_photo = len(prefilled["extractors"])
    expected = {"gallery_images": n, "errors": 0, "features_reused": n * per_photo,
                "features_computed": counts["queries"] * per_photo}
    if prefilled["masks"]:
        expected["gallery masks from the cache"] = n
        counts = {**counts, "gallery masks from the cache": counts.get("gallery_masked", 0)
                  + counts.get("gallery_mask_fallbacks", 0)}
    wrong = {k: (counts.get(k), v) for k, v in expected.items() if counts.get(k) != v}
    if wrong:
        raise AssertionError(f"gallery of {n}: not served from the cache as expected; (got, expected): {wrong}; "
                             f"all counts: {result['counts']}")


def measure(size: int, workdir: Path, meta: dict[str, dict], sources: list[str], queries: Path,
            source_db: Path, threads: int, keep: bool) -> dict:
    """Fabricate a gallery of ``size`` photos, prefill its database and time one run against it."""
    folder = workdir / f"gallery-{size}"
    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    gallery, source_map = fabricate(folder, size, meta, sources)
    fabricate_s = time.perf_counter() - t
    print(f"gallery {size}: {size} photos written in {fabricate_s:.0f} s; prefilling the database...", flush=True)
    db = folder / "gallery.db"
    prefilled = prefill(db, gallery, source_map, source_db, threads)
    disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"gallery {size}: prefilled in {prefilled['seconds']:.0f} s ({disk / 2**20:.0f} MiB on disk); "
          "running reid-engine...", flush=True)
    result = run_engine(engine_run_args(threads, gallery, queries, db, folder / "out"), folder / "engine.log")
    check_cached(result, size, prefilled)
    if not keep:
        shutil.rmtree(folder / "photos")
        for p in folder.glob("gallery.db*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    n_q = result["counts"]["queries"]
    return {"gallery_photos": size, "gallery_individuals": result["counts"]["gallery_individuals"],
            **result, "s_per_query": round(result["wall_s"] / n_q, 2),
            "fabricate_s": round(fabricate_s, 1), "prefill_s": prefilled["seconds"],
            "fabricated_mib_on_disk": round(disk / 2**20)}


def machine() -> dict:
    mem = next((line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")), "0")
    return {"cpus": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)), "memory_gib": round(int(mem) / 2**20, 1),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "python": platform.python_version()}


def print_table(rows: list[dict]) -> None:
    print(f"{'gallery':>8} {'indiv.':>7} {'queries':>7} {'peak RSS MiB':>12} {'wall s':>8} {'s/query':>8} "
          f"{'features s':>10} {'shortlist s':>11} {'matching s':>10}")
    for r in rows:
        t = r["timings"]
        print(f"{r['gallery_photos']:>8} {r['gallery_individuals']:>7} {r['counts']['queries']:>7} "
              f"{r['peak_rss_mib']:>12.0f} {r['wall_s']:>8.1f} {r['s_per_query']:>8.2f} "
              f"{t.get('features_s', 0):>10.1f} {t.get('shortlist_s', 0):>11.1f} {t.get('matching_s', 0):>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[700, 5000], help="gallery sizes to fabricate")
    parser.add_argument("--sources", type=int, default=60, help="real photos whose features are computed once")
    parser.add_argument("--queries", type=int, default=10, help="real query photos (their features are computed)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/gallery-memory"))
    parser.add_argument("--threads", type=int, default=0, help="reid-engine --threads (0 = all CPUs)")
    parser.add_argument("--keep", action="store_true", help="keep the fabricated photos and databases")
    parser.add_argument("--result", type=Path, default=REPO / "benchmarks" / "results" / "gallery-memory.json")
    parser.add_argument("--prefill", help=argparse.SUPPRESS)  # internal: the prefill child (JSON spec)
    args = parser.parse_args()
    if args.prefill:
        prefill_database(json.loads(args.prefill))
        return

    at_start = machine()
    meta, gallery_ids, query_ids = nyala_closed()
    sources = spread(gallery_ids, args.sources)
    measured = spread(query_ids, args.queries)
    spare = [q for q in query_ids if q not in measured]
    source_queries = spare[-SOURCE_QUERIES:] if len(spare) >= SOURCE_QUERIES else measured[:SOURCE_QUERIES]
    args.workdir.mkdir(parents=True, exist_ok=True)
    queries = query_manifest(args.workdir / "queries.csv", meta, measured)
    source_db = ensure_sources(args.workdir / "source", meta, sources, source_queries, args.threads)

    rows = []
    for size in args.sizes:
        try:
            rows.append(measure(size, args.workdir, meta, sources, queries, source_db, args.threads, args.keep))
        except MissingSources:  # the profile changed since the sources were cached: cache them again, once
            source_db = ensure_sources(args.workdir / "source", meta, sources, source_queries, args.threads, force=True)
            rows.append(measure(size, args.workdir, meta, sources, queries, source_db, args.threads, args.keep))
        print_table(rows[-1:])

    # a child's peak RSS includes this process's RSS when it was spawned: it must stay small
    own_rss_mib = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result = {"profile": SPECIES, "sources": args.sources, "queries": args.queries,
              "photos_per_individual": PHOTOS_PER_INDIVIDUAL, "galleries": rows,
              "machine": at_start, "benchmark_process_peak_rss_mib": own_rss_mib,
              "command": " ".join([".venv/bin/python", "benchmarks/" + Path(__file__).name, *sys.argv[1:]])}
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print_table(rows)
    print(f"wrote {args.result}")


if __name__ == "__main__":
    main()
