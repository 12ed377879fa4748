"""Contract tests over every registered plugin of a kind (as timm tests every model):
shapes, dtypes, empty input, no NaNs."""

from __future__ import annotations

import numpy as np
import pytest

from reid_engine.records import ImageRecord, LoadedImage, LocalFeatures, Matches
from reid_engine.registry import PluginTable

TABLE = PluginTable.discover()


def _image(kind: str = "texture", size=(160, 200), mask=None) -> LoadedImage:
    rng = np.random.default_rng(1)
    if kind == "blank":
        rgb = np.full((*size, 3), 127, np.uint8)
    else:
        yy, xx = np.mgrid[: size[0], : size[1]]
        base = (np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 0.3, size)) * 60 + 128
        rgb = np.repeat(np.clip(base, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return LoadedImage(ImageRecord("x", "x.png"), rgb, mask, "0" * 64, size)


# extractors whose defaults need weights that cannot be had here get weight-free options;
# test_hesaffnet.py covers them with the weights
WEIGHT_FREE = {"descriptor": "rootsift", "affine": False, "upright": True}
CONTRACT_OPTIONS = {"hesaffnet-hardnet": WEIGHT_FREE, "keynet-affnet-hardnet": WEIGHT_FREE}


def _build(kind, name, options=None):
    spec = TABLE.get(kind, name)
    return spec.build(spec.make_config(options or {}), "cpu")


@pytest.mark.parametrize("name", TABLE.names("extractor"))
def test_extractor_contract(name):
    from reid_engine.weights import MissingWeights

    try:
        extractor = _build("extractor", name, CONTRACT_OPTIONS.get(name))
    except MissingWeights as exc:  # e.g. Key.Net, which ships in no package: import it to run this
        pytest.skip(str(exc).splitlines()[0])
    f = extractor.extract(_image())
    n = len(f)
    assert n > 0
    assert f.kpts.shape == (n, 2) and f.desc.shape[0] == n and f.scores.shape == (n,)
    assert f.kpts.dtype == np.float32 and f.desc.dtype == np.float32
    assert np.isfinite(f.desc).all() and np.isfinite(f.kpts).all()
    assert (f.kpts >= -1).all() and (f.kpts[:, 0] <= 201).all() and (f.kpts[:, 1] <= 161).all()
    if f.lafs is not None:
        assert f.lafs.shape == (n, 2, 3)
    # blank, tiny and all-masked images give empty features, never an exception
    for image in (_image("blank"), _image(size=(24, 24)), _image(mask=np.zeros((160, 200), bool))):
        empty = extractor.extract(image)
        assert empty.desc.ndim == 2 and empty.kpts.shape[1] == 2
    assert len(extractor.extract(_image(mask=np.zeros((160, 200), bool)))) == 0
    # keypoints stay inside a partial mask
    mask = np.zeros((160, 200), bool)
    mask[:, :100] = True
    inside = extractor.extract(_image(mask=mask))
    assert len(inside) > 0 and (inside.kpts[:, 0] < 104).all()


# matchers trained for one descriptor type get that type; the rest get RootSIFT
MATCHER_FEATURES = {"lightglue": "aliked"}


@pytest.fixture(scope="module")
def features():
    f = _build("extractor", "hessaff-rootsift").extract(_image())
    return f


@pytest.mark.parametrize("name", TABLE.names("matcher"))
def test_matcher_contract(name, features):
    matcher = _build("matcher", name)
    if name in MATCHER_FEATURES:
        features = _build("extractor", MATCHER_FEATURES[name]).extract(_image())
    m = matcher.match(features, features)
    assert m.idx.dtype == np.int64 and m.idx.shape == (len(m), 2) and m.conf.shape == (len(m),)
    assert len(m) > 0.3 * len(features)  # an image against itself
    assert np.isfinite(m.conf).all()
    assert (m.idx[:, 0] < len(features)).all() and (m.idx[:, 1] < len(features)).all()
    empty = LocalFeatures.empty(features.desc.shape[1], features.image_hw)
    assert len(matcher.match(empty, features)) == 0 and len(matcher.match(features, empty)) == 0


@pytest.mark.parametrize("name", TABLE.names("scorer"))
def test_scorer_contract(name, features):
    scorer = _build("scorer", name)
    same = scorer.score(features, features, _build("matcher", "mnn").match(features, features))
    none = scorer.score(features, features, Matches.empty())
    assert np.isfinite(same) and same > 0 and none == 0.0


@pytest.mark.parametrize("name", TABLE.names("preprocessor"))
def test_preprocessor_contract(name, tmp_path):
    options = None
    if name == "pattern":  # serves a model trained by `train pattern`: give it an untrained one
        from reid_engine.pattern.model import PatternNet, to_payload
        from reid_engine.training.checkpoint import atomic_save

        atomic_save(to_payload(PatternNet(), {}), tmp_path / "p.pt")
        options = {"model": str(tmp_path / "p.pt")}
    image = _image()
    before = image.rgb.copy()
    out = _build("preprocessor", name, options)(image)
    assert out.rgb.shape == image.rgb.shape and out.rgb.dtype == np.uint8
    assert np.array_equal(image.rgb, before)  # the input is not changed


@pytest.mark.parametrize("name", TABLE.names("embedder"))
def test_embedder_contract(name, features, tmp_path):
    options = None
    if name == "trained-embedder":  # serves a model trained by `train embedder`: give it an untrained one
        from reid_engine.embedding.model import EmbedderSpec, ReidNet, to_payload
        from reid_engine.training.checkpoint import atomic_save

        atomic_save(to_payload(ReidNet(EmbedderSpec(image_size=32, dim=16)), {}), tmp_path / "m.pt")
        options = {"model": str(tmp_path / "m.pt")}
    embedder = _build("embedder", name, options)
    if getattr(embedder, "input", "image") == "local":
        items = [features, LocalFeatures.empty(features.desc.shape[1])]
        embedder.fit([features, features])
    else:
        items = [_image(), _image("blank")]
    emb = embedder.embed(items)
    assert emb.shape[0] == 2 and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert abs(np.linalg.norm(emb[0]) - 1) < 1e-4


def test_ransac_one_to_one_counts_each_keypoint_once(features):
    from reid_engine.plugins.scorers.ransac import one_to_one

    m = _build("matcher", "mnn").match(features, features)
    # many-to-one: every match repeated with its gallery keypoint fixed to the first one's
    crowd = Matches(np.concatenate([m.idx, np.stack([m.idx[:, 0], np.full(len(m), m.idx[0, 1])], 1)]),
                    np.concatenate([m.conf, m.conf * 0.5]))
    keep = one_to_one(crowd, np.ones(len(crowd), bool))
    assert keep.sum() == len(m) and keep[: len(m)].all()
    plain = _build("scorer", "ransac-inliers").score(features, features, m)
    strict = TABLE.get("scorer", "ransac-inliers")
    strict = strict.build(strict.make_config({"one_to_one": True}), "cpu")
    assert strict.score(features, features, m) == plain  # mutual matches are one-to-one already
    assert strict.score(features, features, crowd) <= plain


@pytest.mark.parametrize("name", TABLE.names("segmenter"))
def test_segmenter_contract(name):
    """probability() is a map in [0, 1] of the photo's size; clean() gives bool instance masks
    of the map's size, largest first, and [] for an empty map."""
    from reid_engine.weights import MissingWeights

    try:
        segmenter = _build("segmenter", name)
    except MissingWeights as exc:  # isnet-small: `reid-engine weights import` it to run this
        pytest.skip(str(exc).splitlines()[0])
    assert isinstance(getattr(segmenter, "model_id", ""), str)
    prob = np.asarray(segmenter.probability(_image()))
    assert prob.shape == (160, 200) and np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1
    fake = np.zeros((90, 120), np.float32)
    fake[10:60, 10:80] = 1.0
    fake[70:85, 100:115] = 1.0
    masks = segmenter.clean(fake)
    assert masks and all(m.dtype == bool and m.shape == fake.shape for m in masks)
    assert [m.sum() for m in masks] == sorted((m.sum() for m in masks), reverse=True)
    assert segmenter.clean(np.zeros((90, 120), np.float32)) == []
