"""Does a re-ID head on *frozen* ImageNet features beat fine-tuning on 2 CPU cores? (nyala-dev, closed)

    python benchmarks/experiments/frozen_head.py [--data ../shared/data/nyala-dev] [--views 4] [--out /tmp/frozen.npz]

Whole photos squashed to 224 px go through timm's tf_efficientnet_lite0 with its offline
ImageNet weights, frozen: features = [avg-pool ‖ GeM(3)] (2,560). The gallery photos are also
embedded in ``--views`` augmented views (random resized crop 0.6–1, colour jitter; no flip,
nyala flanks differ). Then, on the gallery's features only:

* LDA (shrinkage) to 64 dimensions;
* a linear head (2,560 → 512, dropout 0.2) trained with ArcFace (s 30, m 0.3), 10 epochs.

Each is evaluated as the global signal alone: the 126 closed queries against the 1,087
gallery photos by cosine, identities ranked by their best photo (top-1 / top-5). Not a test;
numbers are quoted in the issue-15 note. Runs in ~5 min on 2 idle cores (features), seconds (heads).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import timm
import torch
import torchvision.transforms.v2 as v2
from PIL import Image

from reid_engine.weights import weight_state

MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


def backbone() -> torch.nn.Module:
    src = [x for x in weight_state("efficientnet-lite0").items() if not x[0].startswith("_fc")]
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
    model.load_state_dict({k: v for (k, _), (_, v) in zip(model.state_dict().items(), src)})  # keys map by position
    return model.eval()


@torch.no_grad()
def features(model, batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, 224, 224) → float32 (N, 2560): avg-pool ‖ GeM(3) of the last feature map."""
    f = model.forward_features((batch.float() / 255 - MEAN) / STD)
    return torch.cat([f.mean((2, 3)), f.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3)], 1)


def evaluate(emb: torch.Tensor, queries, gallery, identity) -> tuple[float, float]:
    e = torch.nn.functional.normalize(emb.float(), dim=1)
    sims = (e[queries] @ e[gallery].T).numpy()
    g_ids = np.array([identity[i] for i in gallery])
    top1 = top5 = 0
    for row, q in zip(sims, queries):
        ranked = list(dict.fromkeys(g_ids[np.argsort(-row)]))
        top1 += ranked[0] == identity[q]
        top5 += identity[q] in ranked[:5]
    return top1 / len(queries), top5 / len(queries)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared/data/nyala-dev")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("/tmp/frozen-head-features.npz"))
    args = ap.parse_args()
    torch.manual_seed(0)
    rows = list(csv.DictReader(open(args.data / "metadata.csv")))
    split = {r["image_id"]: r["split"] for r in csv.DictReader(open(args.data / "splits/closed.csv"))}
    identity = [r["identity"] for r in rows]
    gallery = [i for i, r in enumerate(rows) if split[r["image_id"]] == "gallery"]
    queries = [i for i, r in enumerate(rows) if split[r["image_id"]] == "query"]
    if args.out.exists():
        saved = np.load(args.out)
        clean, views = torch.from_numpy(saved["clean"]), torch.from_numpy(saved["views"])
    else:
        model = backbone()
        photos = torch.from_numpy(np.stack([np.asarray(Image.open(args.data / r["path"]).convert("RGB")
                                                       .resize((256, 256), Image.BILINEAR)) for r in rows]))
        photos = photos.permute(0, 3, 1, 2)
        squashed = torch.nn.functional.interpolate(photos.float(), size=(224, 224), mode="bilinear", antialias=True)
        clean = torch.cat([features(model, squashed[i:i + 32].round()) for i in range(0, len(rows), 32)])
        aug = v2.Compose([v2.RandomResizedCrop(224, scale=(0.6, 1), ratio=(0.8, 1.25), antialias=True),
                          v2.ColorJitter(0.3, 0.3, 0.2, 0.02)])
        views = torch.stack([torch.cat([features(model, torch.stack([aug(photos[j]) for j in gallery[i:i + 32]]))
                                        for i in range(0, len(gallery), 32)]) for _ in range(args.views)])
        np.savez(args.out, clean=clean.numpy(), views=views.numpy())
    print("ImageNet avg-pool  top-1 %.3f top-5 %.3f" % evaluate(clean[:, :1280], queries, gallery, identity))
    names = sorted({identity[i] for i in gallery})
    y = torch.tensor([names.index(identity[i]) for i in gallery])
    x = torch.cat([clean[gallery][None], views]).reshape(-1, clean.shape[1])
    labels = y.repeat(views.shape[0] + 1)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xn, cn = (x - mu) / sd, (clean - mu) / sd
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    lda = LinearDiscriminantAnalysis(n_components=64, solver="eigen", shrinkage=0.3).fit(xn.numpy(), labels.numpy())
    print("LDA 64             top-1 %.3f top-5 %.3f" % evaluate(torch.from_numpy(lda.transform(cn.numpy())),
                                                                  queries, gallery, identity))
    head = torch.nn.Linear(x.shape[1], 512)
    centres = torch.nn.Parameter(torch.randn(len(names), 512) * 0.01)
    opt = torch.optim.AdamW(list(head.parameters()) + [centres], lr=1e-3, weight_decay=1e-3)
    for _ in range(10):
        for b in torch.randperm(len(xn)).split(128):
            emb = torch.nn.functional.normalize(head(torch.nn.functional.dropout(xn[b], 0.2)), dim=1)
            cos = emb @ torch.nn.functional.normalize(centres, dim=1).T
            theta = torch.acos(cos.gather(1, labels[b][:, None]).clamp(-1 + 1e-6, 1 - 1e-6))
            loss = torch.nn.functional.cross_entropy(cos.scatter(1, labels[b][:, None], torch.cos(theta + 0.3)) * 30,
                                                     labels[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        print("ArcFace head 512   top-1 %.3f top-5 %.3f" % evaluate(head(cn), queries, gallery, identity))


if __name__ == "__main__":
    main()
