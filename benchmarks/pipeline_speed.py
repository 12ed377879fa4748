"""Speed and memory of each local pipeline alone: extraction images/s, matching pairs/s, peak memory.

    python benchmarks/pipeline_speed.py                 # every pipeline below, CPU
    python benchmarks/pipeline_speed.py --device cuda   # on a GPU
    python benchmarks/pipeline_speed.py --only aliked-lightglue --images 12

Each pipeline runs in a fresh subprocess so its peak resident memory (and, on CUDA, its peak
allocated GPU memory) is its own. The images are real nyala-dev photos (every k-th gallery
image of the closed split, as loaded by the engine: longer side at most 1600 px); the pairs
are all pairs among them up to ``--pairs``. The first image and the first pair are warm-up
and not timed. Writes benchmarks/results/pipeline-speed-<device>.json.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nyala-dev"

# name -> (extractor, matcher, scorer), each (plugin, options); the options are the profiles'
PIPELINES: dict[str, tuple[tuple[str, dict], tuple[str, dict], tuple[str, dict]]] = {
    "hessaff-rootsift-snn": (("hessaff-rootsift", {"resize": 640, "max_keypoints": 1024}),
                             ("mnn", {"ratio": 0.95}), ("ransac-inliers", {})),
    "aliked-mnn": (("aliked", {"resize": 768, "max_keypoints": 2048}), ("mnn", {"ratio": 1.0}),
                   ("match-count", {"min_confidence": 0.7})),
    "aliked-lightglue": (("aliked", {"resize": 768, "max_keypoints": 2048}), ("lightglue", {"features": "aliked"}),
                         ("match-count", {})),
    "aliked-lightglue-1024": (("aliked", {"resize": 768, "max_keypoints": 2048}),
                              ("lightglue", {"features": "aliked", "max_keypoints": 1024}), ("match-count", {})),
    "aliked-lightglue-512": (("aliked", {"resize": 768, "max_keypoints": 2048}),
                             ("lightglue", {"features": "aliked", "max_keypoints": 512}), ("match-count", {})),
    "sift-snn": (("sift", {"resize": 640, "max_keypoints": 1024}), ("mnn", {"ratio": 0.95}), ("ransac-inliers", {})),
    "aliked-ratio": (("aliked", {"resize": 512, "max_keypoints": 1024}), ("mnn", {"ratio": 0.8}), ("match-count", {})),
    "sift-smnn": (("sift", {"resize": 1024, "max_keypoints": 2048}), ("smnn", {}), ("ransac-inliers", {})),
    "aliked-t16-mnn": (("aliked", {"model": "aliked-t16", "resize": 768, "max_keypoints": 2048}),
                       ("mnn", {"ratio": 1.0}), ("match-count", {})),
    "disk-lightglue": (("disk", {"resize": 768, "max_keypoints": 2048}), ("lightglue", {"features": "disk"}),
                       ("match-count", {})),
    "aliked-adalam": (("aliked", {"resize": 768, "max_keypoints": 2048}), ("adalam", {}), ("match-count", {})),
}


def images(n: int) -> list[Path]:
    rows = {r["image_id"]: r for r in csv.DictReader(open(DATA / "metadata.csv"))}
    gallery = sorted(r["image_id"] for r in csv.DictReader(open(DATA / "splits" / "closed.csv")) if r["split"] != "query")
    step = max(1, len(gallery) // n)
    return [DATA / rows[i]["path"] for i in gallery[::step][:n]]


def measure_one(name: str, n_images: int, n_pairs: int, device: str) -> dict:
    """Time one pipeline in this process; returns its figures."""
    import torch

    from reid_engine.inputs.images import read_image
    from reid_engine.records import ImageRecord
    from reid_engine.registry import PluginTable

    table = PluginTable.discover()

    def build(kind, ref):
        spec = table.get(kind, ref[0])
        return spec.build(spec.make_config(ref[1]), device)

    ex_ref, m_ref, s_ref = PIPELINES[name]
    extractor, matcher, scorer = build("extractor", ex_ref), build("matcher", m_ref), build("scorer", s_ref)
    loaded = [read_image(ImageRecord(p.stem, p)) for p in images(n_images)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    feats = [extractor.extract(loaded[0])]
    sync()
    t = time.perf_counter()
    feats += [extractor.extract(im) for im in loaded[1:]]
    sync()
    extract_s = (time.perf_counter() - t) / (len(loaded) - 1)
    pairs = list(itertools.combinations(range(len(feats)), 2))[: n_pairs + 1]
    scorer.score(feats[0], feats[1], matcher.match(feats[pairs[0][0]], feats[pairs[0][1]]))
    sync()
    t = time.perf_counter()
    match_t = score_t = 0.0
    n_matches = []
    for i, j in pairs[1:]:
        t0 = time.perf_counter()
        m = matcher.match(feats[i], feats[j])
        sync()
        t1 = time.perf_counter()
        scorer.score(feats[i], feats[j], m)
        score_t += time.perf_counter() - t1
        match_t += t1 - t0
        n_matches.append(len(m))
    n = len(pairs) - 1
    out = {
        "pipeline": name, "extractor": ex_ref, "matcher": m_ref, "scorer": s_ref, "device": device,
        "images": len(loaded), "pairs": n,
        "extract_images_per_s": 1.0 / extract_s, "extract_s_per_image": extract_s,
        "keypoints_mean": sum(len(f) for f in feats) / len(feats),
        "match_pairs_per_s": n / match_t, "match_ms_per_pair": 1000 * match_t / n,
        "score_ms_per_pair": 1000 * score_t / n, "matches_mean": sum(n_matches) / n,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--only", action="append", choices=sorted(PIPELINES), help="pipelines to run (repeatable)")
    parser.add_argument("--one", choices=sorted(PIPELINES), help=argparse.SUPPRESS)  # subprocess mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.images, args.pairs, args.device)))
        return
    import torch

    results = []
    for name in args.only or list(PIPELINES):
        cmd = [sys.executable, __file__, "--one", name, "--images", str(args.images), "--pairs", str(args.pairs),
               "--device", args.device]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{name:24s} extract {r['extract_images_per_s']:6.2f} img/s  match {r['match_pairs_per_s']:7.1f} pairs/s "
              f"(+score {r['score_ms_per_pair']:.1f} ms)  kpts {r['keypoints_mean']:.0f}  matches {r['matches_mean']:.0f}  "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
    record = {"results": results, "machine": {
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None},
        "command": "python benchmarks/pipeline_speed.py " + " ".join(sys.argv[1:])}
    out = REPO / "benchmarks" / "results" / f"pipeline-speed-{args.device.split(':')[0]}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
