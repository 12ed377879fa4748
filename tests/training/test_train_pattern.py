"""train pattern: learns on photos with pattern masks, holds out whole individuals, resumes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from reid_engine.errors import UsageError
from reid_engine.pattern.model import predict_pattern, read_pattern_model
from reid_engine.training.train_pattern import TrainPatternOptions, read_rows, split_individuals, train_pattern


@pytest.fixture(scope="module")
def trained(seal_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pattern") / "p.pt"
    options = TrainPatternOptions(data=seal_data.root, out=out, epochs=1, crop=96, max_side=160, batch=4,
                                  val_share=0.3)
    return options, train_pattern(options, log=lambda line: None)


def test_rows_come_from_both_csvs_with_individuals(seal_data):
    rows = read_rows(seal_data.root)
    assert len(rows) == sum(1 for _ in open(seal_data.gallery_csv)) - 1 + sum(1 for _ in open(seal_data.query_csv)) - 1
    assert all(r["pattern"].endswith(".png") and r["mask"] for r in rows)
    assert {r["individual"] for r in rows} >= {"seal_000", "seal_004"}  # unknown individuals are named too


def test_held_out_individuals_are_never_trained_on():
    train, val = split_individuals(["a", "a", "b", "b", "c", "d", "e"], 0.4, seed=0)
    names = np.array(["a", "a", "b", "b", "c", "d", "e"])
    assert not set(names[train]) & set(names[val]) and len(set(names[val])) == 2


def test_training_writes_a_model_the_preprocessor_reads(trained, seal_data):
    options, result = trained
    assert result.best_epoch == 1 and result.val_images > 0
    assert 0.0 <= result.history[0]["val_iou"] <= result.history[0]["val_f1"] <= 1.0
    net, meta, sha = read_pattern_model(options.out)
    assert sha == result.model_sha256 and meta["val_f1"] == result.history[0]["val_f1"]
    rgb = np.zeros((70, 90, 3), np.uint8)
    mask = np.zeros((70, 90), bool)
    mask[10:50, 20:70] = True
    p = predict_pattern(net, rgb, mask)
    assert p.shape == (70, 90) and (p[~mask] == 0).all() and ((0 <= p) & (p <= 1)).all()


def test_resume_continues_after_the_last_epoch(trained):
    options, first = trained
    again = train_pattern(dataclasses.replace(options, epochs=2, resume=True), log=lambda line: None)
    assert [row["epoch"] for row in again.history] == [1, 2]
    assert again.history[0] == first.history[0]


def test_data_without_pattern_masks_is_refused(tmp_path):
    (tmp_path / "m.csv").write_text("image_id,identity,path\na,x,a.png\n")
    with pytest.raises(UsageError, match="no CSV row with a pattern mask"):
        train_pattern(TrainPatternOptions(data=tmp_path, out=tmp_path / "p.pt"))
