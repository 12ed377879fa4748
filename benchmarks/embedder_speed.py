"""Inference speed of a re-ID embedder: torch vs onnxruntime, images/s, same model and inputs.

    python benchmarks/embedder_speed.py [--model model.pt] [--backbone tf_efficientnet_lite0] [--n 128]
    python benchmarks/embedder_speed.py --method landmark-id --landmarks 3 [--given]
    python benchmarks/embedder_speed.py --method dve
    python benchmarks/embedder_speed.py --backbone swin_large_patch4_window12_384 --image-size 384 --n 16

Without --model an untrained net of --backbone and --method is timed (speed does not depend on
the weights). A Landmark-Id net is timed with its locator predicting the heatmaps (two backbone
passes, what a photo without keypoints costs), or with ``--given`` heatmaps (one pass).
Prints one JSON record with the machine; run it alone (other work on the cores distorts it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np
import torch

from reid_engine.embedding.model import EmbedderSpec, ReidNet, pooling_for, read_model_file
from reid_engine.embedding.onnx_export import export_onnx
from reid_engine.embedding.views import to_input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--method", choices=["arcface", "landmark-id", "dve"], default="arcface")
    parser.add_argument("--landmarks", type=int, default=3, help="landmark-id: heatmap channels")
    parser.add_argument("--given", action="store_true", help="landmark-id: heatmaps given, no locator pass")
    args = parser.parse_args()
    if args.model:
        net = read_model_file(args.model)[0]
    else:
        extra = {"landmark-id": {"landmarks": tuple(f"l{i}" for i in range(args.landmarks))},
                 "dve": {"dve_dim": 64}}.get(args.method, {})
        pooling = pooling_for(args.backbone, args.image_size)  # a Swin's or ViT's own pooling
        net = ReidNet(EmbedderSpec(args.backbone, image_size=args.image_size, method=args.method, pooling=pooling,
                                   **extra)).eval()
    size = net.spec.image_size
    squares = np.random.default_rng(0).integers(0, 255, (args.n, size, size, 3), dtype=np.uint8)
    x = to_input(squares, net.spec.mean, net.spec.std)
    k = net.landmark_count
    heatmaps = torch.zeros(args.n, k, size, size)
    given = torch.full((args.n,), 1.0 if args.given else 0.0)
    record = {"backbone": net.spec.backbone, "method": net.spec.method, "landmarks": k, "given": bool(args.given),
              "image_size": size, "n": args.n, "batch": args.batch,
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}

    def torch_inputs(start: int, stop: int) -> tuple:
        return (x[start:stop], heatmaps[start:stop], given[start:stop]) if k else (x[start:stop],)

    def onnx_inputs(start: int, stop: int) -> dict:
        feed = {"image": x[start:stop].numpy()}
        if k:
            feed.update(heatmaps=heatmaps[start:stop].numpy(), given=given[start:stop].numpy())
        return feed

    def timed(fn) -> float:
        fn(0, args.batch)  # warm-up
        t = time.perf_counter()
        for start in range(0, args.n, args.batch):
            fn(start, start + args.batch)
        return args.n / (time.perf_counter() - t)

    with torch.inference_mode():
        record["torch_images_per_s"] = timed(lambda a, b: net(*torch_inputs(a, b)))
    import onnxruntime as ort

    session = ort.InferenceSession(export_onnx(net), providers=["CPUExecutionProvider"])
    record["onnxruntime_images_per_s"] = timed(lambda a, b: session.run(None, onnx_inputs(a, b)))
    with torch.inference_mode():
        diff = np.abs(net(*torch_inputs(0, 4)).numpy() - session.run(None, onnx_inputs(0, 4))[0]).max()
    record["max_abs_difference"] = float(diff)
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
