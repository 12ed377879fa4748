"""Experiment on cached nyala-dev features (closed split), run from the repository root after
`reid-engine benchmark --dataset ../shared/data/nyala-dev --profile benchmarks/profiles/nyala-aliked-plain.toml
--split closed --out /tmp/nyala-bench` has cached the HesAff and ALIKED features in
/tmp/nyala-bench/cells/nyala-dev/nyala-aliked-plain/closed/gallery.db (pass it where this reads the database). Not a test; numbers are quoted in the issue-3 closing note.
"""
exec(open('benchmarks/experiments/aliked_budget.py').read().split("for k in (256")[0])
ex_h2 = comp.embedder_extractor
snn = b('matcher', 'mnn', ratio=0.95); ranH = b('scorer', 'ransac-inliers')
raw_h = np.full(sl.index.shape, np.nan); raw_a = np.full(sl.index.shape, np.nan)
F = {i: top(A[i], 1024) for i in A}
for i, q in enumerate(Q):
    for j, gi in enumerate(sl.index[i]):
        g = G[gi]
        raw_h[i, j] = ranH.score(H[q], H[g], snn.match(H[q], H[g]))
        raw_a[i, j] = (mnn_sims(F[q], F[g]) >= 0.7).sum()
evaluate(raw_h, 'hessaff snn ransacH', 0); evaluate(raw_a, 'aliked top1024 cos>=0.7', 0)
np.save('/tmp/raw_h.npy', raw_h); np.save('/tmp/raw_a.npy', raw_a)
def logistic(x, mid, width): return 1 / (1 + np.exp(-(x - mid) / width))
for mh, wh in ((40, 10), (20, 8)):
    for ma, wa in ((40, 10), (60, 15), (80, 20)):
        for w in (0.3, 0.5, 0.7):
            f = w * logistic(raw_h, mh, wh) + (1 - w) * logistic(raw_a, ma, wa)
            evaluate(f, f'fuse h({mh},{wh}) a({ma},{wa}) w_h={w}', 0)
print('percentiles h', np.nanpercentile(raw_h, [50, 90, 99]), 'a', np.nanpercentile(raw_a, [50, 90, 99]))
