"""Which training recipe makes the re-ID embedder help on nyala-dev (closed split).

    python benchmarks/experiments/embedder_recipe.py --squares /tmp/emb/squares.npz --view masked \
        --epochs 10 --image-size 224 --lr 1e-3 [--flip] [--no-arcface-margin-dynamic]

Trains on the closed split's gallery photos only (every gallery identity: the closed queries'
individuals are all in it), evaluates the 126 closed queries against the gallery after every
epoch (identities ranked by their best photo): top-1/top-5/recall@100. Epoch-wise figures are
for choosing a recipe (epochs, LR), not for reporting a model picked on the queries.
Squares come from ``dump_squares.py``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from reid_engine.embedding.model import EmbedderSpec, ReidNet, imagenet_start
from reid_engine.training.arcface import SubCenterArcFace, dynamic_margins, pk_batches
from reid_engine.training.train_embedder import embed_squares, make_augment, warmup_cosine
from reid_engine.embedding.views import to_input

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nyala-dev"


def evaluate(net, squares, ids, roles, idents) -> dict:
    emb = embed_squares(net, squares, "cpu", batch=64)
    q = np.flatnonzero(roles == "query")
    g = np.flatnonzero(roles == "gallery")
    known = set(idents[g].tolist())
    q = np.array([i for i in q if idents[i] in known])
    sim = emb[q] @ emb[g].T
    names = np.array(sorted(known))
    best = np.stack([sim[:, idents[g] == n].max(1) for n in names], 1)
    order = np.argsort(-best, 1)
    truth = idents[q]
    rank = np.array([np.flatnonzero(names[o] == t)[0] for o, t in zip(order, truth)])
    return {"top1": float(np.mean(rank < 1)), "top5": float(np.mean(rank < 5)), "top20": float(np.mean(rank < 20)),
            "emb": emb}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--squares", type=Path, default=Path("/tmp/emb/squares.npz"))
    p.add_argument("--view", default="masked")
    p.add_argument("--split", default="closed")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--backbone-lr-factor", type=float, default=0.3)
    p.add_argument("--scale", type=float, default=30.0)
    p.add_argument("--m-min", type=float, default=0.2)
    p.add_argument("--m-max", type=float, default=0.5)
    p.add_argument("--subcenters", type=int, default=3)
    p.add_argument("--p", type=int, default=8)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--flip", action="store_true")
    p.add_argument("--half-norm", action="store_true", help="mean/std 0.5 (the TF-Lite models' own)")
    p.add_argument("--backbone", default="tf_efficientnet_lite0")
    p.add_argument("--save-emb", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--proto-init", action="store_true", help="ArcFace centres start at each identity's mean embedding")
    p.add_argument("--eval-every", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(2)
    z = np.load(a.squares)
    squares, ids, idents = z[a.view], z["image_ids"], z["identities"]
    split = {r["image_id"]: r["split"] for r in csv.DictReader(open(DATA / "splits" / f"{a.split}.csv"))}
    roles = np.array([split[i] for i in ids])
    train = np.flatnonzero(roles == "gallery")
    names = sorted(set(idents[train].tolist()))
    pos = {n: i for i, n in enumerate(names)}
    labels = np.array([pos[idents[r]] for r in train])
    torch.manual_seed(a.seed)
    kw = {"mean": (0.5,) * 3, "std": (0.5,) * 3} if a.half_norm else {}
    net = ReidNet(EmbedderSpec(backbone=a.backbone, image_size=a.image_size, **kw))
    print("init", imagenet_start(net))
    head = SubCenterArcFace(512, dynamic_margins(np.bincount(labels), a.m_min, a.m_max), k=a.subcenters, scale=a.scale)
    opt = torch.optim.AdamW([{"params": net.backbone.parameters(), "lr": a.lr * a.backbone_lr_factor},
                             {"params": [*net.pool.parameters(), *net.neck.parameters(), *head.parameters()],
                              "lr": a.lr}], weight_decay=1e-4)
    steps = int(np.ceil(len(train) / (a.p * a.k)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(steps, steps * a.epochs))
    augment = make_augment(a.image_size, a.flip)
    if a.proto_init:
        emb0 = torch.as_tensor(embed_squares(net, squares[train], "cpu", batch=64))
        protos = torch.nn.functional.normalize(torch.stack([emb0[labels == c].mean(0) for c in range(len(names))]), dim=1)
        with torch.no_grad():
            head.weight.copy_(protos.repeat_interleave(head.k, dim=0) + 0.01 * torch.randn_like(head.weight))
    history = []
    r0 = evaluate(net, squares, ids, roles, idents)
    print("epoch 0", {k: v for k, v in r0.items() if k != "emb"}, flush=True)
    for epoch in range(1, a.epochs + 1):
        t = time.perf_counter()
        net.train(); head.train()
        rng = np.random.default_rng([a.seed, epoch])
        losses = []
        for batch in pk_batches(labels, a.p, a.k, rng):
            views = torch.stack([augment(torch.as_tensor(squares[r]).permute(2, 0, 1)) for r in train[batch]])
            x = to_input(views, net.spec.mean, net.spec.std)
            loss = head(net(x), torch.as_tensor(labels[batch]))
            opt.zero_grad(); loss.backward(); opt.step(); sched.step()
            losses.append(float(loss.detach()))
        if epoch % a.eval_every and epoch != a.epochs:
            print(json.dumps({"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - t}), flush=True)
            continue
        r = evaluate(net, squares, ids, roles, idents)
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "seconds": time.perf_counter() - t,
               **{k: v for k, v in r.items() if k != "emb"}}
        history.append(row)
        print(json.dumps(row), flush=True)
        if a.save_emb:
            np.save(a.save_emb, r["emb"])
    print(json.dumps({"args": {k: str(v) for k, v in vars(a).items()}, "history": history}))


if __name__ == "__main__":
    main()
