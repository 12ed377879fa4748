"""Do the ImageNet backbone's *intermediate* features, pooled, rank nyala better than its last ones?
(nyala-dev closed, no training; offline, not a test)

    python benchmarks/experiments/midlayer_features.py [--size 320] [--backbone tf_efficientnet_lite0]

Whole photos, longer side resized to SIZE and padded grey to a square, through timm's backbone
with its offline ImageNet weights (mapped by position, as the engine does); the feature maps of
stages 1-4 (timm ``features_only``, strides 4-32) are GeM-pooled (p 3), centred on the gallery mean
and L2-normalised. Each stage alone, and stages 3+4 side by side, rank the 126 closed queries
against the 1,087 gallery photos (identities by their best photo): top-1, top-5, recall@100.
Runs in ~75 s on 2 cores at 320 px.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

from reid_engine.weights import weight_path

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nyala-dev"


def ranks(f: np.ndarray, labels: np.ndarray, query: np.ndarray) -> tuple[float, float, float]:
    f = f - f[~query].mean(0)
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    sims, gallery = f[query] @ f[~query].T, labels[~query]
    names = np.unique(gallery)
    best = np.stack([sims[:, gallery == n].max(1) for n in names], 1)
    hit = names[np.argsort(-best, 1)] == labels[query][:, None]
    return hit[:, 0].mean(), hit[:, :5].any(1).mean(), hit[:, :100].any(1).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    args = parser.parse_args()
    split = {r["image_id"]: r["split"] for r in csv.DictReader(open(DATA / "splits" / "closed.csv"))}
    rows = list(csv.DictReader(open(DATA / "metadata.csv")))
    full = timm.create_model(args.backbone, pretrained=False)
    state = torch.load(weight_path(args.backbone.replace("tf_efficientnet_", "efficientnet-")), map_location="cpu",
                       weights_only=True)
    full.load_state_dict({k: v for k, v in zip(full.state_dict(), state.values())})
    net = timm.create_model(args.backbone, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
    net.load_state_dict({k: v for k, v in full.state_dict().items() if k in net.state_dict()})
    net.eval()
    pooled: list[list[np.ndarray]] = [[] for _ in range(4)]
    for start in range(0, len(rows), 16):
        squares = []
        for r in rows[start:start + 16]:
            im = Image.open(DATA / r["path"]).convert("RGB")
            scale = args.size / max(im.size)
            im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.BICUBIC)
            canvas = Image.new("RGB", (args.size, args.size), (128, 128, 128))
            canvas.paste(im, ((args.size - im.size[0]) // 2, (args.size - im.size[1]) // 2))
            squares.append(np.asarray(canvas))
        x = torch.from_numpy(np.stack(squares).astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
        with torch.no_grad():
            for i, maps in enumerate(net(x)):
                pooled[i].append(maps.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3).numpy())
    labels = np.array([r["identity"] for r in rows])
    query = np.array([split[r["image_id"]] == "query" for r in rows])
    stages = [np.concatenate(p) for p in pooled]
    for i, f in enumerate(stages):
        figures = ranks(f, labels, query)
        print(f"stage {i + 1} ({f.shape[1]} channels): top-1 %.3f  top-5 %.3f  recall@100 %.3f" % figures)
    both = np.concatenate([f / np.linalg.norm(f, axis=1, keepdims=True) for f in stages[2:]], 1)
    print("stages 3+4: top-1 %.3f  top-5 %.3f  recall@100 %.3f" % ranks(both, labels, query))


if __name__ == "__main__":
    main()
