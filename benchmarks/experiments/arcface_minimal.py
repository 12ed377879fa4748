"""The simplest ArcFace fine-tune that peers report works on nyala, outside the engine's trainer.

    python benchmarks/experiments/arcface_minimal.py [--epochs 6] [--size 224] [--margin 0.3] ... \
        [--embeddings FILE.npz]

ImageNet EfficientNet-Lite0 (offline weights), whole photos squashed to SIZE², plain ArcFace
on the backbone's pooled features, AdamW, cosine schedule; trained on nyala-dev closed gallery
photos only; after each epoch the closed queries are ranked against the gallery by cosine
(top-1, top-5). ``--embeddings`` saves every photo's unit embedding before training (ImageNet)
and after the last epoch, for ``global_local_fusion.py``. A yardstick for ``reid-engine train embedder``: if this recipe beats it, the
difference is in the trainer's recipe, not in the data.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from reid_engine.weights import weight_path

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nyala-dev"


def load(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 (N, size, size, 3) photos, identity labels (N,), is-query (N,) for the closed split."""
    split = {r["image_id"]: r["split"] for r in csv.DictReader(open(DATA / "splits" / "closed.csv"))}
    rows = list(csv.DictReader(open(DATA / "metadata.csv")))
    ids = sorted({r["identity"] for r in rows})
    images = np.stack([np.asarray(Image.open(DATA / r["path"]).convert("RGB").resize((size, size), Image.BILINEAR))
                       for r in rows])
    labels = np.array([ids.index(r["identity"]) for r in rows])
    query = np.array([split[r["image_id"]] == "query" for r in rows])
    return images, labels, query


class ArcFace(nn.Module):
    def __init__(self, dim: int, classes: int, margin: float, scale: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.margin, self.scale = margin, scale

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = nn.functional.normalize(emb) @ nn.functional.normalize(self.weight).T
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        target = torch.cos(theta + self.margin)
        onehot = nn.functional.one_hot(labels, cos.shape[1]).bool()
        return nn.functional.cross_entropy(torch.where(onehot, target, cos) * self.scale, labels)


def embed(net: nn.Module, images: np.ndarray, norm: tuple, size: int) -> np.ndarray:
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 64):
            x = torch.as_tensor(images[i:i + 64]).permute(0, 3, 1, 2).float() / 255
            x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            x = v2.functional.normalize(x, *norm)
            out.append(nn.functional.normalize(net(x)).numpy())
    return np.concatenate(out)


def ranks(emb: np.ndarray, labels: np.ndarray, query: np.ndarray) -> dict[str, float]:
    q, g = emb[query], emb[~query]
    sims = q @ g.T
    ql, gl = labels[query], labels[~query]
    top1 = top5 = 0
    for i in range(len(q)):
        order = np.argsort(-sims[i])
        seen: list[int] = []
        for j in order:
            if gl[j] not in seen:
                seen.append(gl[j])
            if len(seen) == 5:
                break
        top1 += seen[0] == ql[i]
        top5 += ql[i] in seen
    return {"top1": top1 / len(q), "top5": top5 / len(q)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--margin", type=float, default=0.3)
    ap.add_argument("--scale", type=float, default=30.0)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--head-lr", type=float, default=2e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--norm", choices=["imagenet", "half"], default="imagenet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--embeddings", type=Path, help="save image ids and unit embeddings (N, D) before/after")
    ap.add_argument("--recipe", choices=["minimal", "wildlife-tools"], default="minimal",
                    help="wildlife-tools: their documented fine-tune (SGD lr 1e-3 momentum 0.9, constant, ArcFace "
                         "m 0.5 s 64, batch 8), overriding the options above")
    a = ap.parse_args()
    if a.recipe == "wildlife-tools":
        a.lr = a.head_lr = 1e-3
        a.margin, a.scale, a.batch = 0.5, 64.0, 8
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    norm = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) if a.norm == "imagenet" else ((0.5,) * 3, (0.5,) * 3)
    t0 = time.time()
    images, labels, query = load(round(a.size * 1.15))
    print(f"loaded {len(images)} photos in {time.time() - t0:.0f} s", flush=True)
    net = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    state = torch.load(weight_path("efficientnet-lite0"), map_location="cpu", weights_only=True)
    target = net.state_dict()
    net.load_state_dict({k: v for k, v in zip(target.keys(), [v for k, v in state.items() if not k.startswith("_fc.")])})
    imagenet = embed(net, images, norm, a.size)
    trained = imagenet
    history = [{"epoch": 0, **ranks(imagenet, labels, query)}]
    print(history[-1], flush=True)
    train = np.flatnonzero(~query)
    head = ArcFace(net.num_features, int(labels.max()) + 1, a.margin, a.scale)
    groups = [{"params": net.parameters(), "lr": a.lr}, {"params": head.parameters(), "lr": a.head_lr}]
    steps = a.epochs * math.ceil(len(train) / a.batch)
    if a.recipe == "wildlife-tools":
        opt = torch.optim.SGD(groups, momentum=0.9)
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0)
    else:
        opt = torch.optim.AdamW(groups, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[a.lr, a.head_lr], total_steps=steps, pct_start=0.15)
    augment = v2.Compose([v2.RandomResizedCrop(a.size, scale=(0.6, 1.0), ratio=(0.8, 1.25), antialias=True),
                          v2.ColorJitter(0.3, 0.3, 0.2, 0.02), v2.Normalize(*norm)])
    for epoch in range(1, a.epochs + 1):
        net.train()
        t = time.time()
        losses = []
        for b in np.array_split(rng.permutation(train), math.ceil(len(train) / a.batch)):
            x = torch.stack([augment(torch.as_tensor(images[i]).permute(2, 0, 1).float() / 255) for i in b])
            loss = head(net(x), torch.as_tensor(labels[b]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        trained = embed(net, images, norm, a.size)
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.time() - t,
                        **ranks(trained, labels, query)})
        print(history[-1], flush=True)
        if a.out:  # after every epoch, so a run stopped early keeps its history
            a.out.write_text(json.dumps({"options": {k: str(v) for k, v in vars(a).items()}, "history": history}, indent=1))
    if a.embeddings:
        ids = [r["image_id"] for r in csv.DictReader(open(DATA / "metadata.csv"))]
        np.savez(a.embeddings, image_ids=np.array(ids), imagenet=imagenet, trained=trained)


if __name__ == "__main__":
    main()
