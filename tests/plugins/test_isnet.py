"""``isnet`` segmenter: mask cleaning (fast) and one real inference against a known body mask (slow)."""

from __future__ import annotations

import csv

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
                                          ({"threads": -1}, "threads")])
def test_isnet_options_are_checked_when_the_profile_loads(options, key):
    spec = PluginTable.discover().get("segmenter", "isnet")
    with pytest.raises(Exception, match=f"isnet.{key}"):
        spec.make_config(options)


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
