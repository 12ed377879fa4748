"""``isnet`` segmenter: mask cleaning (fast) and one real inference against a known body mask (slow)."""

from __future__ import annotations

import csv

import threading

import numpy as np
import pytest
from PIL import Image

from reid_engine.plugins.segmenters.isnet import clean_mask
from reid_engine.records import ImageRecord, LoadedImage
from reid_engine.registry import PluginTable


def test_clean_mask_drops_specks_fills_gaps_and_orders_instances():
    prob = np.zeros((200, 300), np.float32)
    prob[20:120, 20:180] = 0.9          # a large animal ...
    prob[60:64, 20:180] = 0.2           # ... with a thin dark stripe across it
    prob[150:190, 220:280] = 0.8        # a smaller second one
    prob[5, 295] = 1.0                  # a speck
    masks = clean_mask(prob, threshold=0.5, min_blob=0.005, close_px=3)
    assert len(masks) == 2
    assert masks[0].sum() > masks[1].sum()
    assert masks[0][62, 100]            # the stripe is filled
    assert not any(m[5, 295] for m in masks)
    assert clean_mask(np.zeros((50, 50), np.float32), 0.5, 0.005, 3) == []


@pytest.mark.slow
def test_isnet_finds_the_synthetic_seal(seal_data):
    from reid_engine.weights import MissingWeights

    spec = PluginTable.discover().get("segmenter", "isnet")
    try:
        segmenter = spec.build(spec.make_config({}), "cpu")
    except MissingWeights as exc:
        pytest.skip(str(exc).splitlines()[0])
    row = next(csv.DictReader(open(seal_data.gallery_csv)))
    root = seal_data.gallery_csv.parent
    rgb = np.asarray(Image.open(root / row["path"]).convert("RGB"))
    truth = np.asarray(Image.open(root / row["mask_path"]).convert("L")) > 127
    masks = segmenter.masks(LoadedImage(ImageRecord("x", root / row["path"]), rgb, None, "0" * 64, rgb.shape[:2]))
    assert masks and masks[0].shape == truth.shape
    iou = (masks[0] & truth).sum() / (masks[0] | truth).sum()
    assert iou > 0.5, iou


@pytest.mark.parametrize("options, key", [({"input_size": 1000}, "input_size"), ({"input_size": 128}, "input_size"),
                                          ({"input_size": 1088}, "input_size"), ({"threshold": 1.0}, "threshold"),
                                          ({"threads": -1}, "threads"), ({"retry_sizes": [384, 100]}, "retry_sizes"),
                                          ({"retry_sizes": [384.0]}, "retry_sizes"), ({"retry_below": 1.0}, "retry_below")])
def test_isnet_options_are_checked_when_the_profile_loads(options, key):
    spec = PluginTable.discover().get("segmenter", "isnet")
    with pytest.raises(Exception, match=f"isnet.{key}"):
        spec.make_config(options)


class _Session:
    """Stands in for an onnxruntime session at one input size: a fixed map, and a count of calls."""

    def __init__(self, prob: np.ndarray) -> None:
        self.prob, self.calls = prob, 0

    def run(self, names, feeds):
        self.calls += 1
        (x,) = feeds.values()
        assert x.shape[-2:] == self.prob.shape  # the photo was resized to this session's size
        return [self.prob[None, None]]

    def get_inputs(self):
        return [type("Input", (), {"name": "input"})()]


def _retrying_isnet(maps: dict[int, np.ndarray], **options):
    """An ``isnet`` segmenter whose network is replaced by fixed maps, one per input size."""
    from reid_engine.plugins.segmenters.isnet import IsNet, IsNetConfig

    net = IsNet.__new__(IsNet)
    net.config = IsNetConfig(input_size=min(maps), retry_sizes=tuple(sorted(maps))[1:], threads=1, **options)
    net.fakes = {side: _Session(prob) for side, prob in maps.items()}
    net._sessions = {(side, 1): fake for side, fake in net.fakes.items()}
    net._lock = threading.Lock()
    net.input = "input"
    return net


def _animal(side: int, share: float) -> np.ndarray:
    """A square map of ``side`` px with one bright square covering ``share`` of it."""
    prob = np.zeros((side, side), np.float32)
    edge = round(side * share ** 0.5)
    prob[:edge, :edge] = 0.9
    return prob


def _photo(side: int = 512) -> LoadedImage:
    rgb = np.zeros((side, side, 3), np.uint8)
    return LoadedImage(ImageRecord("x", "x.jpg"), rgb, None, "0" * 64, rgb.shape[:2])


def test_isnet_retries_at_a_larger_size_only_where_the_first_map_shows_no_animal():
    nothing, animal = np.zeros((192, 192), np.float32), _animal(256, 0.3)
    net = _retrying_isnet({192: nothing, 256: animal})
    prob = net.probability(_photo())
    assert [s.calls for s in net.fakes.values()] == [1, 1]
    assert 0.25 < (prob > 0.5).mean() < 0.35  # the 256-px map, at the photo's size

    net = _retrying_isnet({192: _animal(192, 0.3), 256: animal})
    net.probability(_photo())
    assert [s.calls for s in net.fakes.values()] == [1, 0]  # the first map showed one: no retry


def test_isnet_retry_treats_a_mask_below_retry_below_as_none_and_keeps_the_first_map_when_all_fail():
    speck, small = _animal(192, 0.01), _animal(256, 0.01)
    net = _retrying_isnet({192: speck, 256: small}, retry_below=0.02, min_blob=0.001)
    prob = net.probability(_photo())
    assert [s.calls for s in net.fakes.values()] == [1, 1]
    assert 0.005 < (prob > 0.5).mean() < 0.015  # neither showed an animal: the input_size map is kept
    assert _retrying_isnet({192: speck, 256: small}, retry_below=0.005, min_blob=0.001).probability(_photo()) is not None


def test_isnet_retry_sizes_are_part_of_the_cache_key(monkeypatch):
    from reid_engine.plugins.segmenters import isnet

    rewrites = []
    monkeypatch.setattr(isnet, "resizable_graph", lambda path: rewrites.append(path) or b"graph")
    monkeypatch.setattr("reid_engine.plugin.weight_path", lambda name: "isnet.onnx")
    import onnxruntime as ort

    monkeypatch.setattr(ort, "InferenceSession", lambda model, options, providers: _Session(np.zeros((1, 1))))
    plain = isnet.IsNet(isnet.IsNetConfig(input_size=256), "cpu")
    retrying = isnet.IsNet(isnet.IsNetConfig(input_size=256, retry_sizes=(384, 512), threads=2), "cpu")
    assert plain.model_id == "isnet-small@256"
    assert retrying.model_id == "isnet-small@256+retry@384,512<0.02"
    assert sorted(retrying._sessions) == [(256, 2), (384, 2), (512, 2)]  # built with the plugin: a bad graph fails then
    assert len(rewrites) == 2  # the graph is rewritten once per plugin, not once per size


def test_isnet_sessions_take_the_threads_of_the_worker_that_calls_them(monkeypatch):
    """Photos segmented side by side share a session of their worker's share of the threads; a photo
    segmented alone gets a session of every thread (onnxruntime sizes its pool per session)."""
    from reid_engine import threads
    from reid_engine.plugins.segmenters import isnet

    monkeypatch.setattr(isnet, "resizable_graph", lambda path: b"graph")
    monkeypatch.setattr("reid_engine.plugin.weight_path", lambda name: "isnet.onnx")
    import onnxruntime as ort

    made = []
    monkeypatch.setattr(ort, "InferenceSession",
                        lambda model, options, providers: made.append(options.intra_op_num_threads) or _Session(
                            np.zeros((256, 256), np.float32)))
    monkeypatch.setattr(threads, "_count", 4)
    monkeypatch.setattr(threads, "_workers", 2)
    net = isnet.IsNet(isnet.IsNetConfig(input_size=256), "cpu")
    assert made == [2]  # built for the feature workers: 4 threads, 2 photos side by side
    photos = [_photo() for _ in range(4)]
    for done in threads.ordered_map(net.probability, photos, 2):
        done.result()
    assert made == [2]
    net.probability(_photo())  # alone: every thread
    assert made == [2, 4] and sorted(net._sessions) == [(256, 2), (256, 4)]
    assert threads.call_threads() == 4
    made.clear()
    isnet.IsNet(isnet.IsNetConfig(input_size=256), "cuda")  # off the CPU photos go one at a time
    assert made == [4]


@pytest.mark.slow
def test_resized_graph_is_the_published_network_at_1024_and_runs_at_smaller_sizes():
    import onnxruntime as ort

    from reid_engine.plugins.segmenters.isnet import resizable_graph
    from reid_engine.threads import onnx_session_options
    from reid_engine.weights import MissingWeights, weight_path

    try:
        path = weight_path("isnet-small")
    except MissingWeights as exc:
        pytest.skip(str(exc).splitlines()[0])
    published = ort.InferenceSession(str(path), onnx_session_options(), providers=["CPUExecutionProvider"])
    resized = ort.InferenceSession(resizable_graph(path), onnx_session_options(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 3, 1024, 1024)).astype(np.float32)
    assert np.array_equal(published.run(["output"], {"input": x})[0], resized.run(["output"], {"input": x})[0])
    assert [o.name for o in resized.get_outputs()] == ["output"]
    small = resized.run(["output"], {"input": x[:, :, :384, :448]})[0]
    assert small.shape == (1, 1, 384, 448) and 0.0 <= small.min() and small.max() <= 1.0


def test_a_value_the_config_refuses_is_a_profile_error_naming_where_not_a_crash():
    from reid_engine.registry import ConfigError

    spec = PluginTable.discover().get("segmenter", "isnet")
    with pytest.raises(ConfigError, match=r"^p.toml \[segment\]: segmenter 'isnet' rejects its options: isnet.input_size"):
        spec.make_config({"input_size": 1000}, "p.toml [segment]")
