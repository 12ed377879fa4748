"""The public plugin API (``reid_engine.plugin``): its names are pinned (as kornia pins its API
surface), plugins import nothing else of the engine, the engine imports no plugin, every built-in
plugin object is an instance of its kind's base class, the defaults of the optional abilities
behave, and duck-typed plugins that subclass nothing still work through the engine."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import reid_engine.plugin as api
from reid_engine.plugin import Embedder, LocalFeatures, Matcher, Matches, PluginSpec, Scorer, hookimpl
from reid_engine.registry import KINDS, PluginTable
from tests.conftest import REPO

PUBLIC_NAMES = [
    "CheckpointError",
    "DatasetLoader",
    "Embedder",
    "EmbedderSpec",
    "EmptyConfig",
    "Extractor",
    "ImageError",
    "ImageRecord",
    "LoadedImage",
    "LocalFeatures",
    "Manifest",
    "ManifestError",
    "Matcher",
    "Matches",
    "MissingWeights",
    "ONNX_SPEC_KEY",
    "PluginSpec",
    "Preprocessor",
    "Register",
    "ReidError",
    "Scorer",
    "Segmenter",
    "UsageError",
    "animal_square",
    "arrays_sha256",
    "call_threads",
    "configured_threads",
    "crop_to_mask",
    "export_onnx",
    "file_sha256",
    "grey_tensor",
    "hookimpl",
    "landmarks_in_image",
    "load_hardnet",
    "load_weights",
    "mask_tensor",
    "model_from_arrays",
    "onnx_session_options",
    "parse_keypoints",
    "point_features",
    "predict_pattern",
    "read_checkpoint",
    "read_model_file",
    "read_pattern_model",
    "render_heatmaps",
    "resized_size",
    "rgb_tensor",
    "square_frame",
    "to_input",
    "too_small",
    "weight_path",
    "weight_state",
    "worker_share",
]

BASES = {
    "extractor": api.Extractor, "matcher": api.Matcher, "scorer": api.Scorer, "embedder": api.Embedder,
    "preprocessor": api.Preprocessor, "segmenter": api.Segmenter, "dataset": api.DatasetLoader,
}


def test_the_public_names_are_pinned():
    assert sorted(api.__all__) == PUBLIC_NAMES
    assert len(set(api.__all__)) == len(api.__all__)
    for name in PUBLIC_NAMES:
        assert getattr(api, name) is not None, name
    assert set(BASES) == set(KINDS)


def test_importing_the_api_does_not_import_torch():
    code = "import sys, reid_engine.plugin; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# -- who imports what ------------------------------------------------------------------------
def _imports(path: Path, package: str) -> list[str]:
    """Absolute names of the modules ``path`` imports (``package``: the package it lies in)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.append(module)
            names += [f"{module}.{alias.name}" for alias in node.names]  # ``from reid_engine import plugins``
    return names


def _package(path: Path, root: Path, name: str) -> str:
    return ".".join([name, *path.relative_to(root).parent.parts])


PLUGIN_FILES = sorted((REPO / "plugins").rglob("*.py"))
THIRD_PARTY = sorted((REPO / "tests" / "thirdparty_plugin" / "src").rglob("*.py"))


@pytest.mark.parametrize("path", PLUGIN_FILES + THIRD_PARTY, ids=lambda p: str(p.relative_to(REPO)))
def test_plugins_reach_the_engine_only_through_reid_engine_plugin(path):
    package = _package(path, REPO / "plugins", "reid_engine.plugins") if path in PLUGIN_FILES else "thirdparty"
    engine = [n for n in _imports(path, package) if n == "reid_engine" or n.startswith("reid_engine.")]
    # a plugin's own helper modules (relative imports inside plugins/) are its business
    outside = [n for n in engine if not n.startswith("reid_engine.plugins.")]
    assert all(n == "reid_engine.plugin" or n.startswith("reid_engine.plugin.") for n in outside), outside


def test_the_engine_imports_no_plugin_module():
    root = REPO / "engine"
    for path in sorted(root.rglob("*.py")):
        names = _imports(path, _package(path, root, "reid_engine"))
        assert not [n for n in names if n == "reid_engine.plugins" or n.startswith("reid_engine.plugins.")], path


# -- every built plugin is an instance of its kind's base class -------------------------------
TABLE = PluginTable.discover()
WEIGHT_FREE = {"descriptor": "rootsift", "affine": False, "upright": True}
OPTIONS = {"hesaffnet-hardnet": WEIGHT_FREE, "keynet-affnet-hardnet": WEIGHT_FREE}


@pytest.mark.parametrize("kind,name", [(s.kind, s.name) for s in TABLE.all()])
def test_every_built_plugin_is_an_instance_of_its_base_class(kind, name, tmp_path):
    from reid_engine.plugin import MissingWeights

    spec = TABLE.get(kind, name)
    options = OPTIONS.get(name, {})
    if name == "pattern":  # serves a `train pattern` model: give it an untrained one
        from reid_engine.pattern.model import PatternNet, to_payload
        from reid_engine.training.checkpoint import atomic_save

        atomic_save(to_payload(PatternNet(), {}), tmp_path / "p.pt")
        options = {"model": str(tmp_path / "p.pt")}
    try:
        obj = spec.build(spec.make_config(options), "cpu")
    except MissingWeights as exc:  # weights that cannot be had here (e.g. keynet)
        pytest.skip(str(exc).splitlines()[0])
    assert isinstance(obj, BASES[kind]), type(obj)


# -- defaults of the optional abilities -------------------------------------------------------
def _features(n: int, seed: int, dim: int = 16) -> LocalFeatures:
    rng = np.random.default_rng(seed)
    desc = rng.normal(size=(n, dim)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    return LocalFeatures(rng.uniform(0, 100, (n, 2)).astype(np.float32), desc, rng.random(n).astype(np.float32),
                         None, (100, 100))


def _same(a: list[Matches], b: list[Matches]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x.idx, y.idx) and np.array_equal(x.conf, y.conf)
                                    for x, y in zip(a, b))


class SizeMatcher(Matcher):
    def match(self, f1, f2):
        return Matches(np.array([[len(f1), len(f2)]], np.int64), np.array([0.5], np.float32))


class CountScorer(Scorer):
    def score(self, f1, f2, matches):
        return float(len(matches))


def test_the_default_match_many_loops_over_match():
    firsts, seconds = [_features(n, n) for n in (3, 5, 0)], [_features(n, 10 + n) for n in (4, 6, 2)]
    matcher = SizeMatcher()
    assert _same(matcher.match_many(firsts, seconds), [matcher.match(a, b) for a, b in zip(firsts, seconds)])
    mnn = TABLE.get("matcher", "mnn")
    mnn = mnn.build(mnn.make_config({}), "cpu")
    assert type(mnn).match_many is Matcher.match_many  # it relies on the default
    firsts, seconds = [_features(30, s) for s in range(3)], [_features(30, 5 - s) for s in range(3)]
    firsts[1] = seconds[1]  # one pair with matches for sure
    assert _same(mnn.match_many(firsts, seconds), [mnn.match(a, b) for a, b in zip(firsts, seconds)])


def test_the_default_inliers_is_none_and_the_engine_counts_every_match():
    from reid_engine.components import build_plugin
    from reid_engine.registry.profiles import PluginRef
    from reid_engine.scoring.pairs import match_pair

    f = _features(12, 1)
    matches = Matches(np.stack([np.arange(5), np.arange(5)], 1).astype(np.int64), np.ones(5, np.float32))
    assert CountScorer().inliers(f, f, matches) is None
    table = _legacy_table()
    pipeline = types.SimpleNamespace(
        name="p", distinctiveness=None,
        matcher=build_plugin(table, "matcher", PluginRef("legacy-matcher"), "cpu", "test"),
        scorer=types.SimpleNamespace(obj=CountScorer(), spec=types.SimpleNamespace(name="count")))
    evidence = match_pair(pipeline, f, f)
    assert not evidence.inliers_known and evidence.inliers.all() and evidence.score == len(evidence.matches)


def test_the_embedder_defaults_say_what_it_needs():
    class Plain(Embedder):
        def embed(self, items):
            return np.ones((len(items), 1), np.float32)

    class Fitted(Plain):
        input = "local"

        def fit(self, items):
            self.n = len(items)

    plain, fitted = Plain(), Fitted()
    assert plain.input == "image" and plain.extractor == "" and not plain.needs_fit and not plain.loads_state
    assert plain.state() == {} and plain.load_state({}) is None and plain.fit([1]) is None
    with pytest.raises(NotImplementedError):
        plain.load_state({"w": np.zeros(1)})
    assert fitted.input == "local" and fitted.needs_fit and not fitted.loads_state


def test_a_plugin_missing_a_required_method_cannot_be_built():
    class NoMatch(Matcher):
        pass

    with pytest.raises(TypeError):
        NoMatch()


# -- duck-typed (legacy) plugins keep working --------------------------------------------------
class DuckMatcher:
    """Subclasses nothing; no ``match_many``."""

    def __init__(self, config):
        self.config = config

    def match(self, f1, f2):
        n = min(len(f1), len(f2))
        return Matches(np.stack([np.arange(n), np.arange(n)], 1).astype(np.int64), np.full(n, 0.9, np.float32))


class DuckBatchMatcher(DuckMatcher):
    def __init__(self, config):
        super().__init__(config)
        self.batches = []

    def match_many(self, firsts, seconds):
        self.batches.append(len(firsts))
        return [self.match(a, b) for a, b in zip(firsts, seconds)]


class DuckScorer:
    def score(self, f1, f2, matches):
        return float(len(matches))


class DuckInlierScorer(DuckScorer):
    def inliers(self, f1, f2, matches):
        return np.arange(len(matches)) % 2 == 0


class DuckEmbedder:
    input = "local"
    extractor = "sift"

    def __init__(self):
        self.fitted = None

    def fit(self, items):
        self.fitted = len(items)

    def state(self):
        return {"n": np.array([self.fitted])}

    def load_state(self, state):
        self.fitted = int(state["n"][0])

    def embed(self, items):
        return np.ones((len(items), 2), np.float32) / np.sqrt(2)


def _legacy_module() -> types.ModuleType:
    module = types.ModuleType("legacy_plugins")

    @hookimpl
    def register_matchers(register):
        register(PluginSpec(name="legacy-matcher", kind="matcher", version="1", build=lambda c, d: DuckMatcher(c)))
        register(PluginSpec(name="legacy-batch", kind="matcher", version="1", build=lambda c, d: DuckBatchMatcher(c)))

    @hookimpl
    def register_scorers(register):
        register(PluginSpec(name="legacy-scorer", kind="scorer", version="1", build=lambda c, d: DuckScorer()))
        register(PluginSpec(name="legacy-inliers", kind="scorer", version="1", build=lambda c, d: DuckInlierScorer()))

    @hookimpl
    def register_embedders(register):
        register(PluginSpec(name="legacy-embedder", kind="embedder", version="1", build=lambda c, d: DuckEmbedder()))

    module.register_matchers, module.register_scorers = register_matchers, register_scorers
    module.register_embedders = register_embedders
    return module


def _legacy_table() -> PluginTable:
    table = PluginTable()
    table.add_module(_legacy_module(), source="legacy-test 1", name="legacy")
    assert not table.broken, table.broken
    return table


def test_duck_typed_matchers_and_scorers_work_through_the_engine():
    from reid_engine.components import Pipeline, build_plugin
    from reid_engine.registry.profiles import PluginRef
    from reid_engine.scoring.distinctiveness import DistinctivenessModel, weighted_score
    from reid_engine.scoring.pairs import match_pair, match_pairs

    table = _legacy_table()
    built = {name: build_plugin(table, kind, PluginRef(name), "cpu", "test") for kind, name in (
        ("matcher", "legacy-matcher"), ("matcher", "legacy-batch"),
        ("scorer", "legacy-scorer"), ("scorer", "legacy-inliers"))}
    for name, b in built.items():
        assert isinstance(b.obj, BASES[b.spec.kind]), name
    assert isinstance(built["legacy-matcher"].obj.wrapped, DuckMatcher)
    assert built["legacy-matcher"].obj.config is not None  # other attributes reach the plugin object
    firsts, seconds = [_features(n, n) for n in (4, 6, 3)], [_features(n, 9 + n) for n in (5, 2, 3)]
    expected = [DuckMatcher(None).match(a, b) for a, b in zip(firsts, seconds)]
    # without match_many: pair by pair; with it: one call for the batch, none for a single pair
    assert _same(match_pairs(built["legacy-matcher"].obj, firsts, seconds), expected)
    batch = built["legacy-batch"].obj
    assert _same(match_pairs(batch, firsts, seconds), expected) and batch.batches == [3]
    assert _same(match_pairs(batch, firsts[:1], seconds[:1]), expected[:1]) and batch.batches == [3]
    # a bare duck-typed object handed straight to the engine works too
    assert _same(match_pairs(DuckMatcher(None), firsts, seconds), expected)

    f = _features(8, 3)
    plain = match_pair(Pipeline("p", None, built["legacy-matcher"], built["legacy-scorer"], 1.0, 1.0, 1.0), f, f)
    assert plain.score == 8.0 and not plain.inliers_known and plain.inliers.all()
    counted = match_pair(Pipeline("q", None, built["legacy-matcher"], built["legacy-inliers"], 1.0, 1.0, 1.0), f, f)
    assert counted.score == 8.0 and counted.inliers_known and counted.n_inliers == 4

    e = np.eye(4, dtype=np.float32)
    model = DistinctivenessModel(e[2:], np.array([1, 1]), ["A", "B"], 2)
    q = LocalFeatures(np.zeros((2, 2), np.float32), e[:2], np.ones(2, np.float32), None, (10, 10))
    matches = Matches(np.array([[0, 0], [1, 1]]), np.ones(2, np.float32))
    neighbours = model.neighbours(q.desc)
    total = model.weights(q, q, matches, neighbours, "A")
    assert weighted_score(built["legacy-scorer"].obj, model, q, q, matches, neighbours, "A") == pytest.approx(total.sum())
    assert weighted_score(DuckScorer(), model, q, q, matches, neighbours, "A") == pytest.approx(total.sum())
    assert weighted_score(built["legacy-inliers"].obj, model, q, q, matches, neighbours, "A") == pytest.approx(total[0])


def test_a_duck_typed_embedder_keeps_its_input_extractor_and_fitting():
    from reid_engine.components import build_components, build_plugin
    from reid_engine.registry.profiles import PluginRef, parse_profile

    table = _legacy_table()
    embedder = build_plugin(table, "embedder", PluginRef("legacy-embedder"), "cpu", "test").obj
    assert isinstance(embedder, Embedder) and isinstance(embedder.wrapped, DuckEmbedder)
    assert embedder.input == "local" and embedder.extractor == "sift" and embedder.needs_fit and embedder.loads_state
    embedder.fit([1, 2, 3])
    assert embedder.fitted == 3 and int(embedder.state()["n"][0]) == 3
    embedder.load_state({"n": np.array([7])})
    assert embedder.fitted == 7 and embedder.embed([1, 2]).shape == (2, 2)

    full = PluginTable.discover(modules=[(_legacy_module(), "legacy-test 1")])
    profile = parse_profile({
        "profile": {"name": "legacy"},
        "shortlist": {"embedder": "legacy-embedder"},
        "pipelines": [{"name": "a", "extractor": {"plugin": "hessaff-rootsift", "max_keypoints": 64},
                       "matcher": "legacy-matcher", "scorer": "legacy-scorer"},
                      {"name": "b", "extractor": "sift", "matcher": "legacy-batch", "scorer": "legacy-inliers"}],
    }, "legacy.toml")
    components = build_components(profile, full, "cpu")
    assert components.embedder_extractor is components.pipelines[1].extractor  # the one named "sift"
