"""Experiment on cached nyala-dev features (closed split), run from the repository root after
`reid-engine benchmark --dataset ../shared/data/nyala-dev --profile benchmarks/profiles/nyala-aliked-plain.toml
--split closed --out /tmp/nyala-bench` has cached the HesAff and ALIKED features in
/tmp/nyala-bench/cells/nyala-dev/nyala-aliked-plain/closed/gallery.db (pass it where this reads the database). Not a test; numbers are quoted in the issue-3 closing note.
"""
# Matcher/scorer variants on cached ALIKED features of nyala-dev (closed split), FV(hessaff) top-100 shortlist.
import csv
import sys
import time
from pathlib import Path

import numpy as np

from reid_engine.components import build_components
from reid_engine.plugins.embedders.fisher_vector import (
    FisherVectorConfig,
    FisherVectorEmbedder,
)
from reid_engine.registry import PluginTable
from reid_engine.registry.profiles import load_profile_file
from reid_engine.shortlist.global_embedding import shortlist
from reid_engine.store.database import GalleryDatabase, content_hash
from reid_engine.store.features import FeatureCache

D = Path('/work/shared/data/nyala-dev')
meta = {r['image_id']: r for r in csv.DictReader(open(D / 'metadata.csv'))}
split = {r['image_id']: r['split'] for r in csv.DictReader(open(D / 'splits/closed.csv'))}
prof = load_profile_file(Path('benchmarks/profiles/nyala-aliked-plain.toml')); t = PluginTable.discover(); comp = build_components(prof, t, 'cpu')
db = GalleryDatabase(Path('/tmp/nyala-bench/nyala-aliked.db')); cache = FeatureCache(db)
ex_a = comp.pipelines[0].extractor; ex_h = comp.embedder_extractor
h = {i: content_hash((D / meta[i]['path']).read_bytes()) for i in split}
Q = [i for i, s in split.items() if s == 'query']; G = [i for i, s in split.items() if s != 'query']
gid = np.array([meta[g]['identity'] for g in G]); qid = np.array([meta[q]['identity'] for q in Q])
H = {i: cache.get(h[i], ex_h) for i in split}
A = {i: cache.get(h[i], ex_a) for i in split}
fv = FisherVectorEmbedder(FisherVectorConfig()); fv.fit([H[g] for g in G])
TOP = int(sys.argv[1]) if len(sys.argv) > 1 else 100
sl = shortlist(fv.embed([H[q] for q in Q]), fv.embed([H[g] for g in G]), TOP)
def b(kind, name, **o):
    s = t.get(kind, name); return s.build(s.make_config(o), 'cpu')
import time


def evaluate(raw, label, dt):
    top1 = top5 = 0
    for i in range(len(Q)):
        best = {}
        for j, gi in enumerate(sl.index[i]):
            if np.isnan(raw[i, j]): continue
            best[gid[gi]] = max(best.get(gid[gi], -1), raw[i, j] + 1e-6 * sl.sim[i, j])
        r = sorted(best, key=lambda k: -best[k])
        top1 += bool(r) and r[0] == qid[i]; top5 += qid[i] in r[:5]
    print(f'{label:34s} top1 {top1/len(Q):.3f} top5 {top5/len(Q):.3f} {dt:.1f} ms/pair', flush=True)
    return raw
mnn = b('matcher', 'mnn', ratio=1.0); cnt = b('scorer', 'match-count')
ranH = b('scorer', 'ransac-inliers'); ranF = b('scorer', 'ransac-inliers', model='fundamental')
variants = {}
t0 = time.time(); M = {}
for i, q in enumerate(Q):
    for j, gi in enumerate(sl.index[i]):
        M[i, j] = mnn.match(A[q], A[G[gi]])
dt_m = 1000 * (time.time() - t0) / len(M)
def score(sc, min_conf=None):
    raw = np.full(sl.index.shape, np.nan)
    for (i, j), m in M.items():
        if min_conf is not None:
            from reid_engine.records import Matches
            k = m.conf >= min_conf; m = Matches(m.idx[k], m.conf[k])
        raw[i, j] = sc.score(A[Q[i]], A[G[sl.index[i, j]]], m)
    return raw
raw_cnt = evaluate(score(cnt), 'aliked mnn count', dt_m)
for c in (0.5, 0.7, 0.8):
    evaluate(score(cnt, c), f'aliked mnn count conf>={c}', dt_m)
t0 = time.time(); raw_h = evaluate(score(ranH), 'aliked mnn ransacH', dt_m + 1000 * (time.time() - t0) / len(M))
t0 = time.time(); evaluate(score(ranF), 'aliked mnn ransacF', dt_m + 1000 * (time.time() - t0) / len(M))
np.save('/tmp/exp_raw_cnt.npy', raw_cnt); np.save('/tmp/exp_raw_h.npy', raw_h)
# LightGlue re-ranking of the count's top-K gallery images per query
lg = b('matcher', 'lightglue', max_keypoints=1024)
for K in (10,):
    raw = np.full(sl.index.shape, np.nan); n = 0; t0 = time.time()
    for i, q in enumerate(Q):
        order = np.argsort(-np.nan_to_num(raw_cnt[i], nan=-1))[:K]
        for j in order:
            raw[i, j] = len(lg.match(A[q], A[G[sl.index[i, j]]])) + 1000; n += 1
        rest = [j for j in range(sl.index.shape[1]) if j not in set(order)]
        raw[i, rest] = raw_cnt[i, rest] * 0  # below every re-ranked pair
    evaluate(raw, f'lightglue(1024) rerank top{K} of count', 1000 * (time.time() - t0) / n)
