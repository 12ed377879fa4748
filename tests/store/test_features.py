"""Feature caching: empty features, cache identity of an image under a manifest mask."""

from __future__ import annotations

import numpy as np

from reid_engine.components import Built
from reid_engine.inputs.views import load_and_prepare
from reid_engine.records import ImageRecord, LocalFeatures
from reid_engine.registry import PluginTable, config_hash
from reid_engine.store.database import GalleryDatabase
from reid_engine.store.features import FeatureCache, ensure_features, image_key
from tests.conftest import write_image


def _extractor(name="hessaff-rootsift"):
    spec = PluginTable.discover().get("extractor", name)
    config = spec.make_config({"max_keypoints": 100})
    return Built(spec, config, config_hash(config), spec.build(config, "cpu"))


def test_blank_image_caches_empty_features_without_error(tmp_path):
    path = write_image(tmp_path / "blank.png", np.full((120, 160, 3), 127, np.uint8))
    record = ImageRecord("blank", path)
    ex = _extractor()
    errors = []
    with GalleryDatabase(tmp_path / "g.db") as db:
        cache = FeatureCache(db)
        keys = ensure_features([(record, None)], [ex], cache, lambda r: load_and_prepare(r, [], 1600, 32), errors)
        assert errors == [] and "blank" in keys
        f = cache.get(keys["blank"], ex)
        assert len(f) == 0 and f.desc.shape == (0, 128)
        # a second pass reads the cache and decodes nothing
        again = ensure_features([(record, None)], [ex], cache, lambda r: 1 / 0, errors)
        assert again == keys and errors == [] and cache.computed == 1


def test_manifest_mask_changes_the_cache_identity(tmp_path):
    path = write_image(tmp_path / "a.png", np.zeros((50, 50, 3), np.uint8))
    plain = ImageRecord("a", path)
    boxed = ImageRecord("a", path, bbox=(0, 0, 20, 20))
    other_box = ImageRecord("a", path, bbox=(10, 10, 20, 20))
    keys = {image_key(r, "h") for r in (plain, boxed, other_box)}
    assert len(keys) == 3 and image_key(plain, "h") == "h"


def test_preprocessing_changes_extractor_cache_ids():
    from reid_engine.components import build_components
    from reid_engine.registry.profiles import resolve_profile

    table = PluginTable.discover()
    seal = build_components(resolve_profile("seal", None)[0], table, "cpu")  # CLAHE first
    generic = build_components(resolve_profile("generic", None)[0], table, "cpu")
    assert seal.pipelines[0].extractor.cache_id != generic.pipelines[0].extractor.cache_id


def test_clean_keeps_shapes_of_empty_features():
    from reid_engine.store.features import clean_features

    f = clean_features(LocalFeatures.empty(64))
    assert f.desc.shape == (0, 64) and f.kpts.shape == (0, 2)


def test_photos_extracted_side_by_side_give_what_one_at_a_time_gives(tmp_path):
    rng = np.random.default_rng(0)
    records = [ImageRecord(f"p{i}", write_image(tmp_path / f"p{i}.png", rng.integers(0, 255, (90, 120, 3), np.uint8)))
               for i in range(5)]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a photo")
    records.insert(2, ImageRecord("broken", bad))
    ex = _extractor()
    found = {}
    for workers in (1, 2):
        errors = []
        with GalleryDatabase(tmp_path / f"w{workers}.db") as db:
            cache = FeatureCache(db)
            keys = ensure_features([(r, None) for r in records], [ex], cache,
                                   lambda r: load_and_prepare(r, [], 1600, 32), errors, workers=workers)
            assert [e.image_id for e in errors] == ["broken"] and list(keys) == ["p0", "p1", "p2", "p3", "p4"]
            assert cache.computed == 5
            found[workers] = [cache.get(keys[r.image_id], ex) for r in records if r.image_id in keys]
    for one, two in zip(found[1], found[2]):
        assert len(one) > 0 and np.array_equal(one.kpts, two.kpts) and np.allclose(one.desc, two.desc, atol=1e-5)


def test_photos_go_one_at_a_time_unless_every_plugin_on_their_way_is_thread_safe():
    from reid_engine import threads
    from reid_engine.components import build_components
    from reid_engine.plugin_adapters import adapt
    from reid_engine.registry.profiles import resolve_profile

    threads.configure(2)
    try:
        components = build_components(resolve_profile("generic", None)[0], PluginTable.discover(), "cpu")
        assert components.feature_workers() == 2
        pipeline = components.pipelines[0]
        assert components.matching_workers(pipeline) == 2

        class OwnExtractor:  # a third party's duck-typed extractor that says nothing
            def extract(self, image):
                return LocalFeatures.empty(8)

        original = pipeline.extractor
        pipeline.extractor = Built(original.spec, original.config, "other", adapt("extractor", OwnExtractor()))
        assert components.feature_workers() == 1
        OwnExtractor.thread_safe = True  # ... until it says it may be called from two threads
        assert components.feature_workers() == 2
    finally:
        threads.configure(0)
