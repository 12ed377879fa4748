"""Do torch and onnxruntime stages slow each other down? Side by side against one after the other.

    python benchmarks/threads_side_by_side.py [--photos 12]

Two stages of the nyala profile on the same nyala-dev photos: the IS-Net mask (onnxruntime)
and ALIKED extraction (torch).

1. In one process, interleaved photo by photo as the engine runs them, with onnxruntime's
   workers spin-waiting after each call (onnxruntime's default) and without (the engine's
   ``reid_engine.threads.onnx_session_options``).
2. As two processes: one after the other, each with every thread; then side by side, first
   each with every thread (oversubscribed: 2 × the cores), then each with ``--threads``
   = cores / 2.

Writes benchmarks/results/threads-side-by-side.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "nyala-dev"


def photos(n: int) -> list[Path]:
    rows = list(csv.DictReader(open(DATA / "metadata.csv")))
    return [DATA / r["path"] for r in rows[7:: len(rows) // n][:n]]


def stage(kind: str, n: int, threads: int, spinning: bool = False) -> float:
    """Seconds for ``kind`` (isnet | aliked | both) over n photos, after a warm-up photo."""
    from reid_engine import threads as engine_threads
    from reid_engine.inputs.images import read_image
    from reid_engine.records import ImageRecord
    from reid_engine.registry import PluginTable

    engine_threads.configure(threads)
    table = PluginTable.discover()
    images = [read_image(ImageRecord(p.stem, p)) for p in photos(n + 1)]
    work = []
    if kind in ("isnet", "both"):
        spec = table.get("segmenter", "isnet")
        segmenter = spec.build(spec.make_config({}), "cpu")
        if spinning:  # onnxruntime's default: workers spin after each call
            import onnxruntime as ort

            from reid_engine.plugins.segmenters.isnet import resizable_graph
            from reid_engine.weights import weight_path

            options = engine_threads.onnx_session_options()
            options.add_session_config_entry("session.intra_op.allow_spinning", "1")
            session = ort.InferenceSession(resizable_graph(weight_path("isnet-small")), options,
                                           providers=["CPUExecutionProvider"])
            segmenter._sessions[(segmenter.config.input_size, engine_threads.call_threads())] = session
        work.append(segmenter.probability)
    if kind in ("aliked", "both"):
        spec = table.get("extractor", "aliked")
        work.append(spec.build(spec.make_config({"resize": 640, "max_keypoints": 1024}), "cpu").extract)
    for step in work:
        step(images[0])
    t = time.perf_counter()
    for image in images[1:]:
        for step in work:
            step(image)
    return time.perf_counter() - t


def in_child(kind: str, n: int, threads: int) -> subprocess.Popen:
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import threads_side_by_side as t; " \
           f"print(t.stage({kind!r}, {n}, {threads}))"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def wall(children: list[subprocess.Popen]) -> tuple[float, list[float]]:
    t = time.perf_counter()
    inner = [float(c.communicate()[0].strip().splitlines()[-1]) for c in children]
    return time.perf_counter() - t, inner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=12)
    args = parser.parse_args()
    from reid_engine.threads import available_cpus

    cores, n = available_cpus(), args.photos
    half = max(1, cores // 2)
    out: dict = {"photos": n, "cores": cores}
    # 1. one process, interleaved
    for label, spinning in (("one process, onnxruntime spinning (its default)", True),
                            ("one process, no spinning (the engine's setting)", False)):
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import threads_side_by_side as t; "
                f"print(t.stage('both', {n}, 0, spinning={spinning}))")
        seconds = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout.strip().splitlines()[-1])
        out[label] = {"s": seconds, "s_per_photo": seconds / n}
        print(label, f"{seconds:.1f} s", flush=True)
    # 2. two processes: isnet and aliked, each n photos (timed inside each process, after start-up)
    sequential = [wall([in_child("isnet", n, 0)])[1][0], wall([in_child("aliked", n, 0)])[1][0]]
    out["two processes one after the other, all threads each"] = {"s": sum(sequential), "per_stage_s": sequential}
    for label, threads in ((f"two processes side by side, all {cores} threads each (oversubscribed)", 0),
                           (f"two processes side by side, --threads {half} each", half)):
        _, inner = wall([in_child("isnet", n, threads), in_child("aliked", n, threads)])
        out[label] = {"s": max(inner), "per_stage_s": inner}
    for label, row in out.items():
        if isinstance(row, dict):
            print(f"{label:70s} {row['s']:6.1f} s", flush=True)
    out["machine"] = {"platform": platform.platform(), "processor": platform.processor() or platform.machine()}
    out["command"] = "python benchmarks/threads_side_by_side.py" + (f" --photos {n}" if n != 12 else "")
    path = REPO / "benchmarks" / "results" / "threads-side-by-side.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
