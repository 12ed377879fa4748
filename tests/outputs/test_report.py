"""The HTML report: self-contained, escaped, robust to bad images."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid_engine.outputs.report import write_report
from reid_engine.records import NEW_INDIVIDUAL, Candidate, ImageError, Prediction

DATA_URI = "data:image/jpeg;base64,"


def _png(path: Path, color=(200, 30, 30), size=(40, 30)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def _cands(paths: list[Path], identities: list[str], pipeline=True) -> tuple[Candidate, ...]:
    return tuple(
        Candidate(
            rank=i + 1,
            identity=ident,
            score=0.9 - 0.1 * i,
            gallery_image_id=f"g{i}_{ident}",
            gallery_path=str(p),
            pipeline_scores={"global": 0.8 - 0.1 * i, "inliers": 40.0 - i} if pipeline else {},
        )
        for i, (p, ident) in enumerate(zip(paths, identities))
    )


@pytest.fixture()
def images(tmp_path: Path) -> dict[str, Path]:
    return {
        "q1": _png(tmp_path / "q1.png", (10, 200, 10)),
        "q2": _png(tmp_path / "q2.png", (10, 10, 200), size=(30, 60)),
        "ga": _png(tmp_path / "ga.png", (200, 200, 10)),
        "gb": _png(tmp_path / "gb.png", (10, 200, 200)),
    }


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_report_basic(tmp_path: Path, images: dict[str, Path]):
    preds = [
        Prediction(
            image_id="query_one",
            path=str(images["q1"]),
            prediction="alpha",
            score=0.87,
            decision="known",
            candidates=_cands([images["ga"], images["gb"]], ["alpha", "beta"]),
            truth="alpha",
        ),
        Prediction(
            image_id="query_two",
            path=str(images["q2"]),
            prediction=NEW_INDIVIDUAL,
            score=0.12,
            decision="new",
            candidates=_cands([images["gb"], images["ga"]], ["beta", "alpha"]),
            truth="alpha",
        ),
    ]
    out = write_report(
        tmp_path / "sub" / "report.html",
        preds,
        title="Nyala run",
        summary={"profile": "fast", "queries": 2, "BAKS": 0.123456, "BAUS": float("nan"),
                 "settings": {"top_k": 5, "threshold": 0.5}},
        errors=[ImageError("bad1", "/x/bad1.jpg", "load", "truncated file")],
    )
    assert out == tmp_path / "sub" / "report.html" and out.exists()
    text = _read(out)
    assert text.startswith("<!DOCTYPE html>")
    for needle in ("query_one", "query_two", "Nyala run", "alpha", "beta", "g0_alpha", "bad1", "truncated file",
                   "Images that could not be used", "0.123", "0.870", "global: 0.800", "inliers: 40"):
        assert needle in text, needle
    assert "0.123456" not in text  # floats to 3 decimals
    assert DATA_URI in text
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:)""", text)
    # correct / wrong marks and the truth candidate highlighted in each row
    assert "\u2713 correct" in text and "\u2717 wrong" in text
    assert text.count('class="cand truth"') == 2
    # each distinct image's thumbnail is embedded once although ga/gb appear in both rows
    assert text.count(DATA_URI) == 4
    # the embedded thumbnails decode as JPEG no larger than thumb_px
    payload = re.search(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", text).group(1)
    with Image.open(io.BytesIO(base64.b64decode(payload))) as im:
        assert im.format == "JPEG" and max(im.size) <= 160


def test_report_escapes_text(tmp_path: Path, images: dict[str, Path]):
    evil = "<script>alert('x')</script>"
    preds = [
        Prediction(
            image_id='q"<b>',
            path=str(images["q1"]),
            prediction=evil,
            score=0.5,
            decision="known",
            candidates=_cands([images["ga"]], [evil]),
            truth=evil,
        )
    ]
    out = write_report(
        tmp_path / "r.html", preds, title="<i>title</i>", summary={"<k>": "<v>"},
        errors=[ImageError("<e>", "<p>", "<s>", "<r>")],
    )
    text = _read(out)
    assert evil not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "<i>title</i>" not in text and "&lt;i&gt;title&lt;/i&gt;" in text
    assert "<k>" not in text and "<v>" not in text and "<e>" not in text and "<r>" not in text
    # the only script element is our own inline one
    assert text.count("<script>") == 1


def test_report_unreadable_images(tmp_path: Path, images: dict[str, Path]):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    preds = [
        Prediction(
            image_id="q_missing",
            path=str(tmp_path / "does_not_exist.png"),
            prediction="alpha",
            score=0.5,
            decision="known",
            candidates=_cands([broken, images["ga"]], ["beta", "alpha"]) + (
                Candidate(3, "gamma", 0.1, "g_empty", ""),
            ),
        )
    ]
    text = _read(write_report(tmp_path / "r.html", preds, title="t", summary={}))
    assert text.count(">unreadable<") == 3
    assert DATA_URI in text  # the readable gallery image is still there
    assert "q_missing" in text


def test_report_zero_predictions(tmp_path: Path):
    out = write_report(tmp_path / "empty.html", [], title="Nothing", summary={})
    text = _read(out)
    assert "Nothing" in text and "No queries." in text
    assert "http://" not in text and "https://" not in text


def test_report_odd_image_modes(tmp_path: Path):
    paths = {}
    grey16 = np.linspace(0, 4000, 64 * 48, dtype=np.uint16).reshape(48, 64)
    paths["i16"] = tmp_path / "i16.png"
    Image.fromarray(grey16).save(paths["i16"])
    paths["la"] = tmp_path / "la.png"
    Image.new("LA", (30, 30), (120, 128)).save(paths["la"])
    paths["rgba"] = tmp_path / "rgba.png"
    rgba = Image.new("RGBA", (50, 50), (0, 0, 0, 0))
    rgba.paste((250, 10, 10, 255), (10, 10, 40, 40))
    rgba.save(paths["rgba"])
    paths["p"] = tmp_path / "p.png"
    Image.new("RGB", (20, 20), (1, 2, 3)).convert("P").save(paths["p"])
    paths["ptrans"] = tmp_path / "pt.gif"
    Image.new("P", (20, 20), 0).save(paths["ptrans"], transparency=0)
    paths["cmyk"] = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (20, 20), (0, 100, 100, 0)).save(paths["cmyk"])
    paths["big"] = tmp_path / "big.jpg"
    Image.new("RGB", (1600, 1200), (90, 90, 90)).save(paths["big"])
    paths["float"] = tmp_path / "f.tiff"
    Image.fromarray(np.random.default_rng(0).random((20, 30), dtype=np.float32)).save(paths["float"])
    items = list(paths.items())
    preds = [
        Prediction(
            image_id="q_modes",
            path=str(paths["i16"]),
            prediction="x",
            score=0.5,
            decision="known",
            candidates=tuple(
                Candidate(i + 1, name, 0.5, name, str(p)) for i, (name, p) in enumerate(items)
            ),
        )
    ]
    mask = tmp_path / "mask.png"
    Image.new("L", (1600, 1200), 0).save(mask)
    text = _read(
        write_report(tmp_path / "r.html", preds, title="t", summary={}, thumb_px=48, mask_outlines=True,
                     masks={"big": mask})
    )
    assert ">unreadable<" not in text
    assert text.count(DATA_URI) == len(paths)  # the query reuses the i16 thumbnail
    for payload in re.findall(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", text):
        with Image.open(io.BytesIO(base64.b64decode(payload))) as im:
            assert im.mode == "RGB" and max(im.size) <= 48


def test_mask_outline_drawn_from_alpha(tmp_path: Path):
    rgba = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    rgba.paste((40, 40, 40, 255), (16, 16, 48, 48))
    src = tmp_path / "a.png"
    rgba.save(src)
    pred = Prediction("q", str(src), "x", 0.5, "known", ())

    def thumb(outlines: bool) -> np.ndarray:
        text = _read(write_report(tmp_path / "r.html", [pred], title="t", summary={}, thumb_px=64,
                                  mask_outlines=outlines))
        payload = re.search(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", text).group(1)
        with Image.open(io.BytesIO(base64.b64decode(payload))) as im:
            return np.asarray(im.convert("RGB"), dtype=np.int32)

    plain, outlined = thumb(False), thumb(True)
    # outline colour is magenta-ish: strong red + blue, weak green, around the square's border
    magenta = (outlined[..., 0] > 180) & (outlined[..., 2] > 120) & (outlined[..., 1] < 90)
    assert magenta.sum() > 50
    assert not ((plain[..., 0] > 180) & (plain[..., 2] > 120) & (plain[..., 1] < 90)).any()
