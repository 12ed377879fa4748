"""Cosine shortlist (batched) and the Fisher-vector embedder."""

import numpy as np

from reid_engine.plugins.embedders.fisher_vector import (
    FisherVectorConfig,
    FisherVectorEmbedder,
)
from reid_engine.records import LocalFeatures
from reid_engine.shortlist.global_embedding import shortlist


def test_shortlist_returns_top_b_by_cosine_best_first():
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(30, 8)).astype(np.float32)
    queries = gallery[[4, 17]] + 0.01 * rng.normal(size=(2, 8)).astype(np.float32)
    s = shortlist(queries, gallery, top_b=5)
    assert s.index.shape == (2, 5) and list(s.index[:, 0]) == [4, 17]
    assert (np.diff(s.sim, axis=1) <= 1e-6).all()
    assert shortlist(queries, gallery, top_b=100).index.shape == (2, 30)


def test_identity_pooling_lifts_images_of_a_matching_identity():
    gallery = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32)
    pooled = np.array([[1, 0], [0, 1]], np.float32)  # identity 0 pooled looks like the query
    identity_of = np.array([0, 1, 0])
    s = shortlist(np.array([[1, 0]], np.float32), gallery, 3, pooled, identity_of)
    assert list(s.index[0]) == [0, 2, 1] and np.isclose(s.sim[0, 1], 1.0)


def _view(rng, pattern):
    """Another photo of the same pattern: the same descriptors re-observed with noise."""
    desc = (pattern + 0.05 * rng.normal(size=pattern.shape)).astype(np.float32)
    return LocalFeatures(np.zeros((len(desc), 2), np.float32), desc, np.ones(len(desc), np.float32))


def test_fisher_vectors_separate_descriptor_distributions():
    rng = np.random.default_rng(0)
    patterns = [rng.normal(size=(150, 32)) for _ in range(3)]
    gallery = [_view(rng, p) for p in patterns for _ in range(2)]
    fv = FisherVectorEmbedder(FisherVectorConfig(pca_dim=8, n_components=4, fit_descriptors=2000))
    fv.fit(gallery)
    emb = fv.embed(gallery)
    assert emb.shape == (6, 2 * 4 * 8) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    sims = emb @ emb.T
    for i in range(0, 6, 2):  # the two sets drawn around one centre are nearest to each other
        others = [j for j in range(6) if j not in (i, i + 1)]
        assert sims[i, i + 1] > sims[i, others].max()
    state = fv.state()
    other = FisherVectorEmbedder(FisherVectorConfig(pca_dim=8, n_components=4))
    other.load_state(state)
    assert np.allclose(other.embed(gallery), emb)
    assert np.all(fv.embed([LocalFeatures.empty(32)]) == 0)


def test_gallery_embeddings_are_stored_with_the_fit_and_read_back_in_any_order(tmp_path, monkeypatch):
    from reid_engine.components import build_plugin
    from reid_engine.registry import PluginTable
    from reid_engine.registry.profiles import PluginRef
    from reid_engine.shortlist.global_embedding import gallery_embeddings, prepare_embedder
    from reid_engine.store.database import GalleryDatabase
    from reid_engine.store.features import FeatureCache

    table = PluginTable.discover()
    embedder = build_plugin(table, "embedder", PluginRef("fisher-vector", (("n_components", 4), ("pca_dim", 8))),
                            "cpu", "test")
    extractor = build_plugin(table, "extractor", PluginRef("sift"), "cpu", "test")
    rng = np.random.default_rng(0)
    with GalleryDatabase(tmp_path / "g.db") as db:
        cache = FeatureCache(db)
        hashes = [f"{i:064x}" for i in range(6)]
        patterns = [rng.normal(size=(40, 16)).astype(np.float32) for _ in range(2)]
        for i, h in enumerate(hashes):
            cache.put(h, extractor, _view(rng, patterns[i % 2]))
        key = prepare_embedder(embedder, extractor, db, cache, hashes)
        first = gallery_embeddings(embedder, extractor, db, cache, hashes, key)
        calls = []
        monkeypatch.setattr(embedder.obj, "embed", lambda items: calls.append(len(items)) or None)
        again = gallery_embeddings(embedder, extractor, db, cache, hashes[::-1], key)
        assert calls == []  # read back, not embedded again
        np.testing.assert_array_equal(again, first[::-1])
        assert first.shape == (6, 2 * 4 * 8) and np.allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)
