"""Experiment on cached nyala-dev features (closed split), run from the repository root after
`reid-engine benchmark --dataset ../shared/data/nyala-dev --profile benchmarks/profiles/nyala-aliked-plain.toml
--split closed --out /tmp/nyala-bench` has cached the HesAff and ALIKED features in
/tmp/nyala-bench/cells/nyala-dev/nyala-aliked-plain/closed/gallery.db (pass it where this reads the database). Not a test; numbers are quoted in the issue-3 closing note.
"""
# Keypoint budget and similarity threshold for ALIKED MNN counts (cached 2048-kpt features), plus fusion with hessaff.
exec(open('benchmarks/experiments/aliked_matchers.py').read().split("mnn = b('matcher'")[0])
from reid_engine.records import LocalFeatures


def top(f, k):
    if len(f) <= k: return f
    i = np.sort(np.argsort(-f.scores)[:k])
    return LocalFeatures(f.kpts[i], f.desc[i], f.scores[i], None if f.lafs is None else f.lafs[i], f.image_hw)
def thresh(f, th):
    i = np.flatnonzero(f.scores > th)
    return LocalFeatures(f.kpts[i], f.desc[i], f.scores[i], None, f.image_hw)
def mnn_sims(a, b):
    """cosine similarities of mutual nearest neighbours (M,)"""
    if len(a) < 2 or len(b) < 2: return np.zeros(0)
    s = a.desc @ b.desc.T
    j = s.argmax(1); i = s.argmax(0)
    mutual = i[j] == np.arange(len(a))
    return s[np.arange(len(a)), j][mutual]
def run(label, conv, ths=(0.6, 0.7, 0.75, 0.8, 0.85)):
    F = {i: conv(A[i]) for i in A}
    sims = {}
    t0 = time.time()
    for i, q in enumerate(Q):
        for j, gi in enumerate(sl.index[i]):
            sims[i, j] = mnn_sims(F[q], F[G[gi]])
    dt = 1000 * (time.time() - t0) / len(sims)
    out = {}
    for th in ths:
        raw = np.full(sl.index.shape, np.nan)
        for (i, j), s in sims.items(): raw[i, j] = (s >= th).sum()
        out[th] = evaluate(raw, f'{label} cos>={th}', dt)
    return out
for k in (256, 512, 1024):
    run(f'top{k}', lambda f, k=k: top(f, k))
run('score>0.2', lambda f: thresh(f, 0.2))
run('score>0.5', lambda f: thresh(f, 0.5))
