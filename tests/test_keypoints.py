"""The keypoints column (engine/keypoints.py): parsing, one clear message per bad value, and
where the landmarks lie in a loaded (downscaled, cropped) photo."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from reid_engine.errors import ManifestError
from reid_engine.keypoints import format_keypoints, landmark_names, landmarks_in_image, parse_keypoints
from reid_engine.records import ImageRecord, LoadedImage


def test_parse_reads_points_and_invisible_landmarks():
    assert parse_keypoints('{"head": [10, 20.5], "tail": null}') == {"head": (10.0, 20.5), "tail": None}
    assert parse_keypoints("") == {} and parse_keypoints(None) == {}
    assert parse_keypoints(format_keypoints({"a": (1.25, 2.0), "b": None})) == {"a": (1.2, 2.0), "b": None}


@pytest.mark.parametrize("text, says", [
    ("head: 10, 20", "is not JSON"),
    ("[[10, 20]]", "JSON object of landmark names"),
    ('{"head": [10]}', "give [x, y]"),
    ('{"head": ["a", 2]}', "give [x, y]"),
    ('{"head": [1, NaN]}', "give [x, y]"),
])
def test_bad_keypoints_name_the_place_and_the_form(text, says):
    with pytest.raises(ManifestError) as err:
        parse_keypoints(text, "g.csv line 3")
    assert str(err.value).startswith("g.csv line 3: ") and says in str(err.value)


def test_landmark_names_are_the_sorted_union():
    assert landmark_names(['{"tail": null}', None, '{"head": [1, 2], "tail": [3, 4]}']) == ("head", "tail")


def _loaded(keypoints, rgb_hw, original_hw, crop=None):
    record = ImageRecord("a", "a.png", keypoints=keypoints)
    view = SimpleNamespace(crop=crop) if crop else None
    return LoadedImage(record, np.zeros((*rgb_hw, 3), np.uint8), None, "0" * 64, original_hw, view)


def test_landmarks_follow_the_downscale_and_the_crop():
    text = '{"head": [400, 100], "tail": null, "fin": [790, 590]}'
    half = landmarks_in_image(_loaded(text, (300, 400), (600, 800)), ("head", "tail", "fin", "eye"))
    assert half[0] == pytest.approx((200, 50)) and np.isnan(half[1]).all() and np.isnan(half[3]).all()
    assert half[2] == pytest.approx((395, 295))
    # cropped to the right half of the photo, resized to 200 x 150: the head is on the crop's left edge
    cropped = landmarks_in_image(_loaded(text, (150, 200), (600, 800), crop=(0.5, 0.0, 1.0, 1.0)), ("head",))
    assert cropped[0] == pytest.approx((0, 25))
    outside = landmarks_in_image(_loaded('{"head": [100, 100]}', (150, 200), (600, 800), crop=(0.5, 0, 1, 1)),
                                 ("head",))
    assert np.isnan(outside).all()
    assert landmarks_in_image(_loaded(None, (10, 10), (10, 10)), ("head",)) is None


def test_the_csv_manifest_refuses_bad_keypoints_naming_the_line(tmp_path):
    from reid_engine.inputs.manifests import load_manifest
    from reid_engine.registry import PluginTable

    csv_path = tmp_path / "g.csv"
    csv_path.write_text('image_id,identity,path,keypoints\na,x,a.png,"{""head"": [1, 2]}"\nb,x,b.png,head\n')
    with pytest.raises(ManifestError) as err:
        load_manifest(csv_path, "gallery", PluginTable.discover())
    assert f"{csv_path} line 3" in str(err.value) and "keypoints" in str(err.value)
    csv_path.write_text('image_id,identity,path,keypoints\na,x,a.png,"{""head"": [1, 2]}"\nb,x,b.png,\n')
    records = load_manifest(csv_path, "gallery", PluginTable.discover()).records
    assert records[0].keypoints == '{"head": [1, 2]}' and records[1].keypoints is None
