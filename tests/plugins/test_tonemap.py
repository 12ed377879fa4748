"""tonemap: brings detail out of a dark, low-contrast region without reversing brightness."""

from __future__ import annotations

import numpy as np
import pytest

from pathlib import Path

from reid_engine.records import ImageRecord, LoadedImage
from reid_engine.registry import PluginTable


def _image() -> LoadedImage:
    """A photo half in deep shade: stripes of contrast 8 grey levels on a dark left half, a bright right half."""
    rgb = np.full((96, 128, 3), 220, np.uint8)
    rgb[:, :64] = 20
    rgb[::8, :64] = 28  # faint stripes in the shade
    return LoadedImage(record=ImageRecord("x", Path("x.png")), rgb=rgb, mask=None, content_hash="0" * 64,
                       original_hw=rgb.shape[:2])


@pytest.mark.parametrize("method", ["mantiuk", "reinhard"])
def test_shade_detail_is_stretched_and_order_kept(method):
    spec = PluginTable.discover().get("preprocessor", "tonemap")
    tonemap = spec.build(spec.make_config({"method": method}), "cpu")
    image = _image()
    out = tonemap(image)
    assert out.rgb.shape == image.rgb.shape and out.rgb.dtype == np.uint8
    assert np.array_equal(image.rgb, _image().rgb)  # the input is not changed
    shade = out.rgb[:, 8:56, 1].astype(float)
    assert shade[::8].mean() - shade[4::8].mean() > 8  # stripe contrast grew (it was 8)
    assert out.rgb[:, 72:120].mean() > out.rgb[:, 8:56].mean()  # bright stays brighter than shade


def test_bad_parameters_name_the_key():
    spec = PluginTable.discover().get("preprocessor", "tonemap")
    with pytest.raises(Exception, match="scale"):
        spec.make_config({"scale": 9.0})
