"""``reid-engine train embedder`` and the trained embedder in runs (engine/training/train_embedder.py,
engine/embedding/, plugins/embedders/trained.py). Tiny images (64 px) keep it to seconds."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from reid_engine.embedding.views import GREY, animal_square
from reid_engine.records import ImageRecord, LoadedImage
from reid_engine.training.train_embedder import identity_split, retrieval_metrics
from tests.conftest import fast_profile_with, run_cli

TRAINED_EMBEDDER = """
[trained_embedder]
image_size = 64
epochs = 2
weight = 1.0
calibration = { midpoint = 0.5, width = 0.1 }
"""


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory, fast_profile):
    """conftest's fast profile, renamed, with a [trained_embedder] table (64 px, 2 epochs)."""
    return fast_profile_with(fast_profile, tmp_path_factory.mktemp("embed-profile"), "embed-test", TRAINED_EMBEDDER)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, seal_data, profile_file):
    """A database with an embedder trained on the synthetic gallery, and the --out file."""
    folder = tmp_path_factory.mktemp("trained")
    db, out = folder / "g.db", folder / "model.pt"
    done = run_cli("train", "embedder", "--profile", str(profile_file), "--gallery", str(seal_data.gallery_csv),
                   "--db", str(db), "--out", str(out), "--val-share", "0.5", "--seed", "1")
    assert done.returncode == 0, done.stderr
    return db, out, done


# -- pure functions ---------------------------------------------------------------------------------
def test_animal_square_greys_the_background_and_keeps_the_aspect():
    rgb = np.full((40, 100, 3), 200, np.uint8)
    mask = np.zeros((40, 100), bool)
    mask[10:30, 20:80] = True
    square = animal_square(LoadedImage(ImageRecord("a", "a.png"), rgb, mask, "0" * 64, (40, 100)), 64, margin=0.0)
    assert square.shape == (64, 64, 3) and square.dtype == np.uint8
    assert tuple(square[32, 32]) == (200, 200, 200)  # the animal, centred
    assert tuple(square[2, 32]) == GREY  # padding above a wide animal


def test_retrieval_metrics_known_values():
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    assert retrieval_metrics(emb, np.array([0, 0, 1, 1])) == {"map": 1.0, "top1": 1.0}
    crossed = retrieval_metrics(emb, np.array([0, 1, 0, 1]))
    assert crossed["top1"] == 0.0 and crossed["map"] == pytest.approx((1 / 3 + 1 / 2 + 1 / 3 + 1 / 2) / 4)


def test_identity_split_holds_out_whole_multi_photo_identities():
    labels = np.array([0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9])
    train, val = identity_split(labels, 0.2, seed=0)
    assert set(labels[train]).isdisjoint(labels[val])
    assert len(set(labels[val])) == 2 and all((labels == c).sum() >= 2 for c in set(labels[val]))
    assert sorted(np.concatenate([train, val])) == list(range(len(labels)))
    assert np.array_equal(identity_split(labels, 0.2, seed=0)[1], val)


# -- training and use ---------------------------------------------------------------------------------
def test_train_embedder_stores_the_model_with_what_it_was_trained_on(trained, seal_data):
    from reid_engine.embedding.stored import model_key, stored_info
    from reid_engine.store.database import GalleryDatabase

    db, out, done = trained
    assert "held out:" in done.stdout and "epoch 1" in done.stdout
    with GalleryDatabase(db) as gdb:
        info = stored_info(gdb, "embed-test")
        assert gdb.get_model(model_key("embed-test")) is not None
    n_gallery = sum(1 for _ in csv.DictReader(seal_data.gallery_csv.open()))
    assert info["images"] == n_gallery and info["identities"] == 4
    assert info["train_identities"] + info["val_identities"] == 4 and info["val_identities"] == 2
    assert 1 <= info["epochs_run"] <= 2 and "map" in info["start"]
    assert out.is_file()


def test_run_uses_the_trained_embedder_and_says_so(trained, seal_data, profile_file, tmp_path):
    db, _, _ = trained
    done = run_cli("run", "--profile", str(profile_file), "--query", str(seal_data.query_csv), "--db", str(db),
                   "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("re-ID embedder trained for profile 'embed-test'" in n for n in summary["notices"])
    assert summary["metrics"]["top5"] >= 0.5
    # the cosine is a fused source: the ranking carries it
    rows = list(csv.DictReader((tmp_path / "out" / "ranking.csv").open()))
    assert rows


def test_trained_cosine_as_evidence_only_keeps_the_shortlist_embedders_candidates(trained, seal_data, tmp_path,
                                                                                   fast_profile):
    db, _, _ = trained
    (tmp_path / "p").mkdir()
    evidence_only = fast_profile_with(fast_profile, tmp_path / "p", "embed-test",
                                      TRAINED_EMBEDDER.replace("epochs = 2", "epochs = 2\nshortlist = false"))
    done = run_cli("run", "--profile", str(evidence_only), "--query", str(seal_data.query_csv), "--db", str(db),
                   "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any(n.startswith("global evidence ('fisher-vector' picks the shortlist): the re-ID embedder trained")
               for n in summary["notices"])
    assert summary["metrics"]["top5"] >= 0.5


def test_pair_cosines_are_the_cosines_of_the_listed_rows():
    from reid_engine.shortlist.stage import pair_cosines

    rng = np.random.default_rng(0)
    queries, gallery = rng.normal(size=(3, 8)), rng.normal(size=(5, 8)) * 7
    index = np.array([[4, 0], [1, 2], [3, 3]])
    expected = [[float(gallery[j] @ queries[i] / np.linalg.norm(gallery[j]) / np.linalg.norm(queries[i]))
                 for j in row] for i, row in enumerate(index)]
    assert np.allclose(pair_cosines(queries, gallery, index), expected, atol=1e-6)
    assert pair_cosines(queries, gallery, np.zeros((0, 2), np.int64)).shape == (0, 2)


def test_without_a_trained_model_the_run_falls_back_and_names_the_command(seal_data, profile_file, tmp_path):
    done = run_cli("run", "--profile", str(profile_file), "--gallery", str(seal_data.gallery_csv), "--query",
                   str(seal_data.query_csv), "--db", str(tmp_path / "g.db"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    notices = json.loads((tmp_path / "out" / "summary.json").read_text())["notices"]
    assert any("reid-engine train embedder --profile" in n and "'fisher-vector' instead" in n for n in notices)


def test_model_file_torch_and_onnx_agree(trained, tmp_path):
    from reid_engine.registry import PluginTable

    _, out, _ = trained
    onnx = tmp_path / "m.onnx"
    done = run_cli("export", "onnx", str(onnx), "--model", str(out))
    assert done.returncode == 0, done.stderr
    table = PluginTable.discover()
    spec = table.get("embedder", "trained-embedder")
    rng = np.random.default_rng(0)
    images = [LoadedImage(ImageRecord(str(i), "x.png"), rng.integers(0, 255, (50, 70, 3), dtype=np.uint8), None,
                          "0" * 64, (50, 70)) for i in range(3)]
    by_torch = spec.build(spec.make_config({"model": str(out)}), "cpu")
    by_pt_in_onnx = spec.build(spec.make_config({"model": str(out), "runtime": "onnx"}), "cpu")
    by_onnx_file = spec.build(spec.make_config({"model": str(onnx), "runtime": "onnx"}), "cpu")
    a, b, c = (e.embed(images) for e in (by_torch, by_pt_in_onnx, by_onnx_file))
    assert a.shape == (3, 512) and np.allclose(a, b, atol=1e-4) and np.allclose(a, c, atol=1e-4)
    assert by_torch.model_sha256 and by_onnx_file.model_sha256 != by_torch.model_sha256


def test_too_few_labels_is_a_usage_error_and_stores_nothing(tmp_path, profile_file):
    from tests.conftest import write_image

    rng = np.random.default_rng(0)
    for ident, n in (("a", 2), ("b", 1), ("c", 1)):
        for i in range(n):
            write_image(tmp_path / "g" / ident / f"{i}.png", rng.integers(0, 255, (80, 80, 3), dtype=np.uint8))
    done = run_cli("train", "embedder", "--profile", str(profile_file), "--gallery", str(tmp_path / "g"),
                   "--db", str(tmp_path / "g.db"))
    assert done.returncode == 2
    assert "at least 2 identities with 2+ photos" in done.stderr and "Nothing was stored" in done.stderr
    assert "Traceback" not in done.stderr


def test_resume_needs_the_same_options(trained, seal_data, profile_file):
    db, _, _ = trained
    done = run_cli("train", "embedder", "--profile", str(profile_file), "--gallery", str(seal_data.gallery_csv),
                   "--db", str(db), "--resume", "--seed", "2")
    assert done.returncode == 2 and "other options (val_share 0.5, seed 1)" in " ".join(done.stderr.split())


def test_resume_compares_the_options_a_checkpoint_records(tmp_path):
    """A checkpoint from before the normalisation was an option resumes; another normalisation does not."""
    import torch

    from reid_engine.errors import UsageError
    from reid_engine.registry.profiles import resolve_profile
    from reid_engine.training.train_embedder import checkpoint_to_resume, options_from_profile

    options = options_from_profile(resolve_profile("seal", None)[0], db=tmp_path / "g.db", resume=True)
    older = {k: v for k, v in options.resume_view().items() if k not in ("mean", "std")}
    torch.save({"options": older}, options.checkpoint_path)
    assert checkpoint_to_resume(options)["options"] == older
    torch.save({"options": {**options.resume_view(), "mean": "(0.5, 0.5, 0.5)"}}, options.checkpoint_path)
    with pytest.raises(UsageError, match=r"other options \(mean \(0\.5, 0\.5, 0\.5\)\)"):
        checkpoint_to_resume(options)


def test_training_is_deterministic(seal_data, profile_file, tmp_path):
    from reid_engine.registry.profiles import load_profile_file
    from reid_engine.training.train_embedder import options_from_profile, train_embedder

    profile = load_profile_file(profile_file)
    shas = []
    for run in range(2):
        options = options_from_profile(profile, db=tmp_path / f"{run}.db", gallery=seal_data.gallery_csv,
                                       epochs=1, val_share=0.0, batch_p=2, batch_k=2)
        shas.append(train_embedder(options).model_sha256)
    assert shas[0] == shas[1]


# -- the profile's [trained_embedder] table ----------------------------------------------------------
def test_trained_embedder_settings_are_checked():
    from reid_engine.registry import ConfigError
    from reid_engine.registry.profiles import parse_profile, resolve_profile

    base = {"profile": {"name": "x"}}
    s = parse_profile({**base, "trained_embedder": {"epochs": 3, "embedder": {"plugin": "trained-embedder",
                                                                              "runtime": "onnx"}}}, "p.toml")
    assert s.trained_embedder.epochs == 3 and s.trained_embedder.embedder.options_dict == {"runtime": "onnx"}
    assert parse_profile(base, "p.toml").trained_embedder is None
    for bad, message in (({"epoch": 3}, "unknown key 'epoch'"), ({"weight": -1.0}, "weight: must be ≥ 0"),
                         ({"use": "sometimes"}, "'sometimes' is not one of"),
                         ({"calibration": {"width": 0.0}}, "width: must be positive")):
        with pytest.raises(ConfigError, match=message):
            parse_profile({**base, "trained_embedder": bad}, "p.toml")
    for species in ("nyala", "seal"):  # the shipped profiles use a trained embedder when there is one
        profile = resolve_profile(species, None)[0]
        assert profile.trained_embedder is not None and profile.trained_embedder.flip is False


def test_known_individual_probes_and_their_metrics():
    from reid_engine.training.train_embedder import (
        known_gallery_rows,
        known_metrics,
        photo_probes,
    )

    labels = np.repeat(np.arange(10), 4)
    train, probes = photo_probes(labels, np.arange(len(labels)), 0.3, seed=0)
    assert len(probes) == 3 and len(set(labels[probes])) == 3 and not set(probes) & set(train)
    gallery = known_gallery_rows(labels, train, probes, seed=0, others=5)
    assert set(labels[probes]) <= set(labels[gallery]) and not set(probes) & set(gallery)
    emb = np.eye(10, dtype=np.float32)[labels]
    perfect = known_metrics(emb[probes], labels[probes], emb[gallery], labels[gallery])
    assert perfect == {"known_top1": 1.0, "known_mrr": 1.0}
    shifted = known_metrics(emb[probes][:, ::-1].copy(), labels[probes], emb[gallery], labels[gallery])
    assert shifted["known_top1"] < 1.0


def test_probes_hold_out_whole_encounters_when_the_manifest_has_them():
    from reid_engine.training.train_embedder import photo_probes

    labels = np.repeat(np.arange(6), 4)
    encounters = [f"id{i // 4}-enc{(i % 4) // 2}" for i in range(len(labels))]  # two bursts of 2 per identity
    train, probes = photo_probes(labels, np.arange(len(labels)), 0.5, seed=0, encounters=encounters)
    assert len(probes) == 6  # 3 identities x one whole burst of 2
    for p in probes:
        same_burst = [i for i in range(len(labels)) if encounters[i] == encounters[p]]
        assert set(same_burst) <= set(probes.tolist())  # none of the burst is trained on
        assert any(labels[t] == labels[p] for t in train)  # the identity itself is


def test_a_users_transformer_checkpoint_goes_in_through_init_and_serves_runs(seal_data, profile_file, tmp_path):
    """`--init FOLDER` as the Hugging Face hub serves a timm model (model.safetensors + config.json;
    MegaDescriptor's form), with `--epochs 0 --dim 0` to use it as it is: the architecture, input
    size and normalisation come from config.json, the stored model carries the file's weights,
    pools as timm does, has no neck, and a run shortlists with it."""
    import timm
    import torch
    from safetensors.torch import save_file

    from reid_engine.embedding.model import from_arrays
    from reid_engine.embedding.stored import model_key
    from reid_engine.store.database import GalleryDatabase

    backbone = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    weights = {k: v.contiguous() for k, v in backbone.state_dict().items()}
    hub = tmp_path / "vit-tiny-reid"
    hub.mkdir()
    save_file(weights, str(hub / "model.safetensors"))
    (hub / "config.json").write_text(json.dumps({
        "architecture": "vit_tiny_patch16_224", "num_classes": 0,
        "pretrained_cfg": {"input_size": [3, 224, 224], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}))
    db = tmp_path / "g.db"
    done = run_cli("train", "embedder", "--profile", str(profile_file), "--gallery", str(seal_data.gallery_csv),
                   "--db", str(db), "--init", str(hub), "--epochs", "0", "--val-share", "0", "--dim", "0",
                   "--out", str(tmp_path / "vit.pt"))
    assert done.returncode == 0, done.stderr
    assert "its config.json: backbone vit_tiny_patch16_224, image size 224" in " ".join(done.stderr.split())
    with GalleryDatabase(db) as gdb:
        net, meta = from_arrays(gdb.get_model(model_key("embed-test")))
    assert net.spec.backbone == "vit_tiny_patch16_224" and net.spec.image_size == 224  # the profile says 64 px
    assert net.spec.mean == (0.5, 0.5, 0.5) and net.spec.pooling == "timm"
    assert meta["init"] == str(hub / "model.safetensors")
    assert not net.spec.neck and net.spec.dim == backbone.num_features  # --dim 0: the ViT's own features
    assert all(torch.equal(net.backbone.state_dict()[k], v) for k, v in weights.items())
    done = run_cli("run", "--profile", str(profile_file), "--query", str(seal_data.query_csv), "--db", str(db),
                   "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert any("re-ID embedder trained for profile 'embed-test'" in n for n in summary["notices"])
    # the neck-less, timm-pooled net exports to ONNX and embeds alike in onnxruntime
    from reid_engine.registry import PluginTable

    done = run_cli("export", "onnx", str(tmp_path / "vit.onnx"), "--model", str(tmp_path / "vit.pt"))
    assert done.returncode == 0, done.stderr
    spec = PluginTable.discover().get("embedder", "trained-embedder")
    rng = np.random.default_rng(0)
    images = [LoadedImage(ImageRecord(str(i), "x.png"), rng.integers(0, 255, (50, 70, 3), dtype=np.uint8), None,
                          "0" * 64, (50, 70)) for i in range(2)]
    by_torch = spec.build(spec.make_config({"model": str(tmp_path / "vit.pt")}), "cpu").embed(images)
    onnx_config = spec.make_config({"model": str(tmp_path / "vit.onnx"), "runtime": "onnx"})
    by_onnx = spec.build(onnx_config, "cpu").embed(images)
    assert by_torch.shape == (2, backbone.num_features) and np.allclose(by_torch, by_onnx, atol=1e-4)


def test_training_for_a_profile_that_will_not_use_the_model_says_how_to_make_it(seal_data, fast_profile, tmp_path):
    never = fast_profile_with(fast_profile, tmp_path, "embed-never", TRAINED_EMBEDDER.replace(
        "[trained_embedder]", '[trained_embedder]\nuse = "never"'))
    done = run_cli("train", "embedder", "--profile", str(never), "--gallery", str(seal_data.gallery_csv),
                   "--db", str(tmp_path / "g.db"), "--epochs", "0", "--val-share", "0")
    assert done.returncode == 0, done.stderr
    said = " ".join(done.stdout.split())
    assert "runs with this profile do not use it (use = \"never\"" in said and "use = \"when-trained\"" in said
    assert "with this profile uses it" not in said


@pytest.mark.parametrize("args, message", [
    (["--backbone", "swin_tiny_patch4_window7_224", "--image-size", "192"], "cannot take 192-px photos"),
    (["--backbone", "vit_tiny_patch16_224", "--image-size", "224", "--method", "dve"], "needs a backbone whose"),
])
def test_a_backbone_that_cannot_train_so_stops_before_loading_photos(seal_data, profile_file, tmp_path, args, message):
    done = run_cli("train", "embedder", "--profile", str(profile_file), "--gallery", str(seal_data.gallery_csv),
                   "--db", str(tmp_path / "g.db"), *args)
    assert done.returncode == 2 and message in " ".join(done.stderr.split())
    assert "loaded" not in done.stderr and not (tmp_path / "g.db").exists()


def _hub_folder(folder, architecture: str, size: int):
    """A model folder as the hub serves it (the weights file's content does not matter here)."""
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "config.json").write_text(json.dumps({"architecture": architecture, "pretrained_cfg": {
        "input_size": [3, size, size], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}))
    return folder


def test_a_model_folders_config_fills_in_only_what_the_user_left_out(tmp_path):
    from reid_engine.registry.profiles import resolve_profile
    from reid_engine.training.train_embedder import options_from_profile

    profile, _ = resolve_profile("seal", None)
    hub = _hub_folder(tmp_path / "hub", "vit_tiny_patch16_224", 224)
    taken = options_from_profile(profile, db=tmp_path / "g.db", init=hub, backbone=None, image_size=None)
    assert (taken.backbone, taken.image_size, taken.mean) == ("vit_tiny_patch16_224", 224, (0.5, 0.5, 0.5))
    assert taken.init == hub / "model.safetensors"
    sized = options_from_profile(profile, db=tmp_path / "g.db", init=hub, backbone="vit_tiny_patch16_224",
                                 image_size=384)
    assert (sized.backbone, sized.image_size, sized.mean) == ("vit_tiny_patch16_224", 384, (0.5, 0.5, 0.5))
    other = options_from_profile(profile, db=tmp_path / "g.db", init=hub, backbone="tf_efficientnet_lite0",
                                 image_size=None)
    assert (other.backbone, other.image_size) == ("tf_efficientnet_lite0", profile.trained_embedder.image_size)
    assert other.mean != (0.5, 0.5, 0.5) and "not used" in other.init_note


def test_a_model_folder_naming_an_architecture_timm_lacks_says_so(tmp_path):
    from reid_engine.errors import UsageError
    from reid_engine.registry.profiles import resolve_profile
    from reid_engine.training.train_embedder import options_from_profile

    hub = _hub_folder(tmp_path / "hub", "miewid_msv3", 440)
    with pytest.raises(UsageError, match=r"--init .*hub: its config.json's architecture 'miewid_msv3' is not a timm "
                                         r"model here .*pass --backbone"):
        options_from_profile(resolve_profile("seal", None)[0], db=tmp_path / "g.db", init=hub, backbone=None)
