"""Inference speed of a re-ID embedder: torch vs onnxruntime, images/s, same model and inputs.

    python benchmarks/embedder_speed.py [--model model.pt] [--backbone tf_efficientnet_lite0] [--n 128]

Without --model an untrained net of --backbone is timed (speed does not depend on the weights).
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

from reid_engine.embedding.model import EmbedderSpec, ReidNet, read_model_file
from reid_engine.embedding.onnx_export import export_onnx
from reid_engine.embedding.views import to_input


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--n", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    net = read_model_file(args.model)[0] if args.model else ReidNet(EmbedderSpec(args.backbone, image_size=args.image_size)).eval()
    size = net.spec.image_size
    squares = np.random.default_rng(0).integers(0, 255, (args.n, size, size, 3), dtype=np.uint8)
    x = to_input(squares, net.spec.mean, net.spec.std)
    record = {"backbone": net.spec.backbone, "image_size": size, "n": args.n, "batch": args.batch,
              "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}

    def timed(fn) -> float:
        fn(x[: args.batch])  # warm-up
        t = time.perf_counter()
        for start in range(0, args.n, args.batch):
            fn(x[start:start + args.batch])
        return args.n / (time.perf_counter() - t)

    with torch.inference_mode():
        record["torch_images_per_s"] = timed(lambda b: net(b))
    import onnxruntime as ort

    session = ort.InferenceSession(export_onnx(net), providers=["CPUExecutionProvider"])
    record["onnxruntime_images_per_s"] = timed(lambda b: session.run(None, {"image": b.numpy()}))
    with torch.inference_mode():
        diff = np.abs(net(x[:4]).numpy() - session.run(None, {"image": x[:4].numpy()})[0]).max()
    record["max_abs_difference"] = float(diff)
    record["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
