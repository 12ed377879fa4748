"""The embedding network (engine/embedding/model.py): pooling for any timm backbone, and
``--init`` checkpoints in the forms users have them (torch or safetensors, prefixed, with heads)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from reid_engine.embedding.model import (EmbedderSpec, InitSource, ReidNet, init_from_file, init_source,
                                         pooling_for)
from reid_engine.errors import UsageError

CNN, VIT, SWIN = "tf_efficientnet_lite0", "vit_tiny_patch16_224", "swin_tiny_patch4_window7_224"


def _net(backbone: str, size: int = 224) -> ReidNet:
    torch.manual_seed(0)
    return ReidNet(EmbedderSpec(backbone=backbone, image_size=size, pooling=pooling_for(backbone, size))).eval()


def _other_weights(net: ReidNet) -> dict[str, torch.Tensor]:
    """Backbone tensors that differ from ``net``'s (what a user's checkpoint would hold)."""
    torch.manual_seed(1)
    return {k: (torch.randn_like(v) if v.is_floating_point() else v.clone())
            for k, v in net.backbone.state_dict().items()}


def _assert_loaded(net: ReidNet, weights: dict[str, torch.Tensor]) -> None:
    own = net.backbone.state_dict()
    assert all(torch.equal(own[k], v) for k, v in weights.items())


# -- pooling ------------------------------------------------------------------------------------------
def test_maps_pool_by_gem_and_tokens_or_channels_last_by_the_backbones_own_pooling():
    assert pooling_for(CNN, 224) == "gem"  # (N, C, H, W)
    assert pooling_for(VIT, 224) == "timm"  # (N, T, C) tokens
    assert pooling_for(SWIN, 224) == "timm"  # (N, H, W, C): MegaDescriptor's architecture


@pytest.mark.parametrize("backbone", [VIT, SWIN])
def test_a_transformer_backbone_embeds_what_timm_pools(backbone):
    net = _net(backbone)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pooled = net.backbone(x)  # timm's own pre-logits features (N, num_features)
        assert pooled.shape == (2, net.backbone.num_features)
        expected = torch.nn.functional.normalize(net.neck(pooled), dim=1)
        assert torch.allclose(net(x), expected, atol=1e-6)


def test_a_backbone_built_for_another_size_names_the_image_size_option():
    with pytest.raises(UsageError, match="cannot take 192-px photos.*--image-size"):
        pooling_for(SWIN, 192)


def test_dve_and_landmark_id_need_feature_maps():
    with pytest.raises(UsageError, match="needs a backbone whose features are"):
        ReidNet(EmbedderSpec(backbone=VIT, method="dve", dve_dim=64, pooling="timm"))


def test_models_stored_before_the_pooling_field_still_rebuild_with_gem():
    assert EmbedderSpec.from_dict({"backbone": CNN, "dim": 512}).pooling == "gem"


# -- --init ---------------------------------------------------------------------------------------------
def test_init_takes_a_plain_or_module_prefixed_torch_state_dict(tmp_path):
    net = _net(CNN)
    weights = _other_weights(net)
    torch.save({"state_dict": {f"module.{k}": v for k, v in weights.items()}}, tmp_path / "ckpt.pth")
    assert init_from_file(net, tmp_path / "ckpt.pth") == f"{tmp_path / 'ckpt.pth'} (the tensors under 'module.')"
    _assert_loaded(net, weights)
    torch.save(weights, tmp_path / "plain.pth")
    assert init_from_file(_net(CNN), tmp_path / "plain.pth") == str(tmp_path / "plain.pth")


def test_init_finds_the_backbone_under_a_nested_prefix_and_refuses_two_copies(tmp_path):
    net = _net(CNN)
    weights = _other_weights(net)
    torch.save({f"module.backbone.{k}": v for k, v in weights.items()}, tmp_path / "ddp.pth")  # multi-GPU MiewID
    init_from_file(net, tmp_path / "ddp.pth")
    _assert_loaded(net, weights)
    torch.save({**{f"model.{k}": v for k, v in weights.items()}, **{f"model_ema.{k}": v for k, v in weights.items()}},
               tmp_path / "ema.pth")
    with pytest.raises(UsageError, match=r"ema\.pth: holds the backbone 2 times \(under 'model\.', 'model_ema\.'\)"):
        init_from_file(net, tmp_path / "ema.pth")


def test_init_of_the_same_architecture_at_another_size_is_refused_not_half_loaded(tmp_path):
    """A Swin for 384 px (window 12) into one for 224 (window 7): the names match, the position
    bias tables do not; they must not silently stay random."""
    w12 = ReidNet(EmbedderSpec(backbone="swin_base_patch4_window12_384", image_size=384, pooling="timm"))
    w7 = ReidNet(EmbedderSpec(backbone="swin_base_patch4_window7_224", image_size=224, pooling="timm"))
    save_file({k: v.contiguous() for k, v in w12.backbone.state_dict().items()}, str(tmp_path / "w12.safetensors"))
    with pytest.raises(UsageError, match=r"w12\.safetensors: \d+ of its .* tensors have other shapes \(first: "
                                         r".*relative_position_bias_table.*--backbone and --image-size"):
        init_from_file(w7, tmp_path / "w12.safetensors")


def test_init_takes_the_backbone_out_of_a_file_with_pooling_neck_and_head_beside_it(tmp_path):
    """A MiewID-style file: backbone.* plus its own GeM, BN neck and ArcFace kernel."""
    net = _net(CNN)
    weights = _other_weights(net)
    extra = {"global_pool.p": torch.tensor([3.0]), "bneck.weight": torch.ones(1280),
             "final.kernel": torch.ones(1280, 9)}
    torch.save({**{f"backbone.{k}": v for k, v in weights.items()}, **extra}, tmp_path / "miewid.bin")
    init_from_file(net, tmp_path / "miewid.bin")
    _assert_loaded(net, weights)


def test_init_takes_a_safetensors_file_of_a_swin_backbone(tmp_path):
    """MegaDescriptor's form: a Swin backbone's tensors in model.safetensors."""
    net = _net(SWIN)
    weights = {k: v.contiguous() for k, v in _other_weights(net).items()}
    save_file(weights, str(tmp_path / "model.safetensors"))
    init_from_file(net, tmp_path / "model.safetensors")
    _assert_loaded(net, weights)


def test_init_of_another_architecture_says_which_option_to_fix(tmp_path):
    vit = {k: v.contiguous() for k, v in _net(VIT).backbone.state_dict().items()}
    save_file(vit, str(tmp_path / "vit.safetensors"))
    with pytest.raises(UsageError, match=r"vit\.safetensors: only 0 of the .* tensors of tf_efficientnet_lite0 "
                                         r".*--backbone"):
        init_from_file(_net(CNN), tmp_path / "vit.safetensors")


@pytest.mark.parametrize("name, content, message", [
    ("notes.pth", b"not a checkpoint", "not a torch checkpoint"),
    ("broken.safetensors", b"\x00\x01", "not a readable safetensors file"),
    ("missing.pth", None, "file not found"),
])
def test_init_of_a_bad_file_is_one_line_naming_it(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(UsageError, match=f"--init .*{name}: {message}"):
        init_from_file(_net(CNN), tmp_path / name)


def test_without_a_neck_the_embedding_is_the_pooled_features_themselves():
    """`--dim 0`: a pretrained re-ID backbone used as it is (no random projection in between)."""
    torch.manual_seed(0)
    net = ReidNet(EmbedderSpec(backbone=VIT, image_size=224, pooling="timm", neck=False, dim=192)).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(net(x), torch.nn.functional.normalize(net.backbone(x), dim=1), atol=1e-6)
    with pytest.raises(Exception, match="dim 64 must be vit_tiny_patch16_224's 192 features"):
        ReidNet(EmbedderSpec(backbone=VIT, image_size=224, pooling="timm", neck=False, dim=64))


def test_init_of_a_model_folder_takes_its_weights_and_what_its_config_says(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    (tmp_path / "config.json").write_text('{"architecture": "swin_large_patch4_window12_384", "pretrained_cfg": '
                                          '{"input_size": [3, 384, 384], "mean": [0.485, 0.456, 0.406], '
                                          '"std": [0.229, 0.224, 0.225]}}')
    source = init_source(tmp_path)
    assert source.weights == tmp_path / "pytorch_model.bin"
    assert (source.backbone, source.image_size, source.std) == ("swin_large_patch4_window12_384", 384,
                                                                 (0.229, 0.224, 0.225))
    (tmp_path / "model.safetensors").write_bytes(b"")
    assert init_source(tmp_path).weights == tmp_path / "model.safetensors"  # preferred: no pickle
    assert init_source(tmp_path / "model.safetensors").backbone == "swin_large_patch4_window12_384"


def test_init_of_a_folder_without_weights_or_with_a_broken_config_says_what_to_pass(tmp_path):
    with pytest.raises(UsageError, match="a folder without model.safetensors or pytorch_model.bin"):
        init_source(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UsageError, match="config.json is not a timm config.json"):
        init_source(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "miewid"}')  # another library's config: nothing said
    assert init_source(tmp_path).backbone is None
    (tmp_path / "config.json").write_text("[1, 2]")  # beside a file named explicitly: some other tool's, ignored
    assert init_source(tmp_path / "model.safetensors") == InitSource(tmp_path / "model.safetensors")


def test_init_takes_the_model_out_of_a_training_checkpoint(tmp_path):
    net = _net(CNN)
    weights = _other_weights(net)
    torch.save({"model": weights, "epoch": 30, "optimizer": {"lr": torch.tensor(0.1)}}, tmp_path / "last.pth")
    init_from_file(net, tmp_path / "last.pth")
    _assert_loaded(net, weights)


def test_a_spec_of_before_the_pooling_field_keeps_its_digest():
    """Stored models' digests (their embeddings' cache ids) must not change with new spec fields:
    the digest below is what the engine of 2 Dec 2026 (commit 4f99c73) gave these arrays."""
    import json

    import numpy as np

    from reid_engine.embedding.model import arrays_sha256, from_arrays

    meta = {"spec": {"backbone": CNN, "dim": 2, "image_size": 64}}
    arrays = {"w.neck.0.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
              "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    assert arrays_sha256(arrays) == "41c39b286c4efc748211c0ea7775207db8b60a4b09603f7698835157f4c5f7df"
    assert "pooling" in EmbedderSpec(pooling="timm").to_json()  # a new model's choice is in its digest
    net = ReidNet(EmbedderSpec(backbone=CNN, dim=8, image_size=64))  # and an old payload rebuilds with GeM
    state = {f"w.{k}": v.numpy() for k, v in net.state_dict().items()}
    old_meta = {"spec": {"backbone": CNN, "dim": 8, "image_size": 64}}
    rebuilt, _ = from_arrays({**state, "meta": np.frombuffer(json.dumps(old_meta).encode(), np.uint8)})
    assert rebuilt.spec.pooling == "gem" and rebuilt.spec.neck and rebuilt.pool is not None


def test_the_smallest_image_size_still_probes():
    assert pooling_for(CNN, 32) == "gem"  # 1x1 maps at stride 32: BatchNorm must be in eval mode
