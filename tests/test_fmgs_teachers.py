"""Teachers with tiny random models of the real architectures (no downloads), hybrid maps and the feature cache."""

from pathlib import Path

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from fmgs_field.teachers import (
    CLIPTeacher,
    CLIPTeacherConfig,
    DINOTeacher,
    DINOTeacherConfig,
    FeatureCache,
    MissingWeightsError,
    cached_teacher_features,
    hybrid_clip_map,
    image_key,
)
from fmgs_field.teachers.pyramid import default_out_stride, stride_ratio, tile_layout, tile_ratios
from fmgs_field.testing.tiny import write_tiny_clip, write_tiny_teachers

TINY_CLIP = "fmgs-test-tiny-clip"


@pytest.fixture(scope="module")
def tiny_clip_weights(tmp_path_factory):
    """Weights of a tiny random OpenCLIP model (ViT tower + text tower with the real BPE vocabulary), registered as
    ``TINY_CLIP``."""
    return Path(write_tiny_clip(tmp_path_factory.mktemp("clip"), name=TINY_CLIP).pretrained)


def _tiny_clip_config(path, **kw):
    settings = dict(num_scales=2, min_tile=0.25, max_tile=0.5, out_stride=8, batch_size=16)
    settings.update(kw)
    return CLIPTeacherConfig(model_name=TINY_CLIP, pretrained=str(path), **settings)


def _tiny_timm_vit():
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, num_classes=0)


def test_pyramid_layout_constants():
    assert tile_ratios() == pytest.approx([0.05, 0.125, 0.2, 0.275, 0.35, 0.425, 0.5])
    assert stride_ratio(0.05) == 1.0 and stride_ratio(0.1) == pytest.approx(0.75)
    assert stride_ratio(0.15) == 0.5 and stride_ratio(0.5) == 0.5
    # the centres match nn.Unfold's tile count
    img = torch.rand(1, 3, 37, 50)
    for k, s in ((9, 9), (18, 9), (4, 2)):
        n_tiles = torch.nn.Unfold(k, stride=s, padding=k // 2)(img).shape[-1]
        assert n_tiles == tile_layout(37, k, s).numel() * tile_layout(50, k, s).numel()
    assert tile_layout(37, 9, 9)[0] == 0.0 and tile_layout(37, 18, 9)[0] == -0.5
    assert default_out_stride(738) == 33 and default_out_stride(40) == 1


def test_hybrid_map_splats_tile_embeddings_to_pixels():
    # encoder = mean colour of the tile; left half red, right half blue
    image = torch.zeros(48, 64, 3)
    image[:, :32, 0] = 1.0
    image[:, 32:, 2] = 1.0
    calls = []

    def encoder(tiles):
        calls.append(tiles.shape)
        return tiles.mean(dim=(2, 3)) + 1e-3

    out = hybrid_clip_map(image, encoder, scales=3, min_tile=0.25, max_tile=0.5, out_stride=8)
    assert out.shape == (6, 8, 3)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(6, 8))
    assert (out[:, 0, 0] > out[:, 0, 2]).all() and (out[:, -1, 2] > out[:, -1, 0]).all()
    assert all(shape[1:] == (3, shape[2], shape[3]) and shape[2] == shape[3] for shape in calls)
    # a constant encoder gives a constant map
    const = hybrid_clip_map(image, lambda t: torch.ones(t.shape[0], 4), scales=2, min_tile=0.25, out_stride=5)
    torch.testing.assert_close(const, torch.full((10, 13, 4), 0.5))


def test_clip_teacher_loads_from_file_and_encodes(tiny_clip_weights):
    teacher = _tiny_clip_config(tiny_clip_weights).setup()
    assert isinstance(teacher, CLIPTeacher)
    assert teacher.feature_dim == 16 and teacher.input_size == (32, 32)
    # frozen network is hidden from the module tree: no checkpoint entries, no trainable parameters
    assert len(teacher.state_dict()) == 0 and len(list(teacher.parameters())) == 0
    assert teacher.neg_embeds.shape == (4, 16)
    text = teacher.encode_text(["a red cup", "a plate"])
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    teacher.set_positives(["a red cup", "  ", "a plate"])
    assert teacher.positives == ["a red cup", "a plate"]
    torch.testing.assert_close(teacher.pos_embeds, text)
    # viewer callback: ';'-separated phrases
    teacher.positives_text.value = "plate;cup"
    teacher._on_positives(teacher.positives_text)
    assert teacher.positives == ["plate", "cup"]
    teacher.set_positives([])
    assert teacher.pos_embeds.shape == (0, 16)
    image = torch.rand(40, 56, 3)
    hmap = teacher.image_features(image)
    assert hmap.shape == (5, 7, 16)
    torch.testing.assert_close(hmap.norm(dim=-1), torch.ones(5, 7))
    teacher.set_positives(["cup"])
    assert teacher.relevancy(hmap).shape == (5, 7, 1)
    # .to() reaches the hidden network
    teacher.to(torch.float64)
    assert next(teacher.network.parameters()).dtype == torch.float64


def test_missing_weights_raise_one_error_naming_the_field(tiny_clip_weights, tmp_path):
    with pytest.raises(MissingWeightsError, match="CLIPTeacherConfig.pretrained"):
        CLIPTeacherConfig(cache_dir=str(tmp_path)).setup()  # laion2b_s34b_b88k: not cached here
    with pytest.raises(MissingWeightsError, match="CLIPTeacherConfig.pretrained"):
        _tiny_clip_config(tmp_path / "missing.pt").setup()
    with pytest.raises(MissingWeightsError, match="DINOTeacherConfig.pretrained"):
        DINOTeacherConfig(pretrained=str(tmp_path / "dino.pth")).setup()
    with pytest.raises(MissingWeightsError, match="DINOTeacherConfig.pretrained"):
        DINOTeacherConfig(backend="transformers", pretrained=str(tmp_path / "no_such_dir")).setup()


def test_dino_timm_key_facet_matches_attention_internals():
    net = _tiny_timm_vit()
    teacher = DINOTeacher(DINOTeacherConfig(layer=-1, load_size=0), network=net)
    assert teacher.layer == 1 and teacher.feature_dim == 24 and teacher.patch_size == 8
    # reference: dino-vit-features' hook on block.attn, qkv of its input, keys as (head_dim, head)
    captured = {}

    def hook(module, inputs, _output):
        x = inputs[0]
        b, n, c = x.shape
        qkv = module.qkv(x).reshape(b, n, 3, module.num_heads, c // module.num_heads).permute(2, 0, 3, 1, 4)
        captured["k"] = qkv[1]  # [B, h, t, d]

    handle = net.blocks[1].attn.register_forward_hook(hook)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        net(x)
    handle.remove()
    k = captured["k"][:, :, 1:, :].permute(0, 2, 3, 1).flatten(-2)  # [B, t-1, d*h]
    ours = teacher.extract(x)
    assert ours.shape == (1, 4, 4, 24)
    torch.testing.assert_close(ours.reshape(1, 16, 24), k)


def test_dino_feature_map_resolution_and_layer_check():
    teacher = DINOTeacher(DINOTeacherConfig(layer=1, load_size=40), network=_tiny_timm_vit())
    # 60 x 90 -> shorter side 40 -> 40 x 60 -> 5 x 7 patches of 8 (remainder dropped); non-square pos. interpolation
    assert teacher.image_features(torch.rand(60, 90, 3)).shape == (5, 7, 24)
    assert teacher.image_features((torch.rand(90, 60, 3) * 255).to(torch.uint8)).shape == (7, 5, 24)
    with pytest.raises(ValueError, match="DINOTeacherConfig.layer"):
        DINOTeacher(DINOTeacherConfig(layer=11), network=_tiny_timm_vit())


def test_dino_timm_loads_a_state_dict_file(tmp_path, monkeypatch):
    import timm

    net = _tiny_timm_vit()
    path = tmp_path / "tiny_dino.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in net.state_dict().items()}}, path)  # DINO-style file

    def tiny_architecture(name, pretrained=False, num_classes=0):  # stands in for the 384-wide ViT-S/8
        assert name == "vit_small_patch8_224_dino" and not pretrained
        torch.manual_seed(1)
        return VisionTransformer(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, num_classes=0)

    monkeypatch.setattr(timm, "create_model", tiny_architecture)
    teacher = DINOTeacherConfig(pretrained=str(path), layer=-1, load_size=32).setup()
    for a, b in zip(teacher.network.state_dict().values(), net.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_dino_transformers_backend_from_saved_folder(tmp_path):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(
        hidden_size=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48, patch_size=8, image_size=32
    )
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path / "vit")
    teacher = DINOTeacherConfig(backend="transformers", pretrained=str(tmp_path / "vit"), layer=0, load_size=40).setup()
    fmap = teacher.image_features(torch.rand(40, 56, 3))
    assert fmap.shape == (5, 7, 24)
    token_teacher = DINOTeacher(DINOTeacherConfig(backend="transformers", layer=0, facet="token"), teacher.network)
    x = torch.randn(1, 3, 32, 40)
    with torch.no_grad():
        hidden = teacher.network(pixel_values=x, interpolate_pos_encoding=True, output_hidden_states=True)
    torch.testing.assert_close(token_teacher.extract(x).reshape(1, 20, 24), hidden.hidden_states[1][:, 1:])


def test_feature_cache_hits_and_keys(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    images = [torch.rand(10, 12, 3), torch.rand(10, 12, 3)]
    calls = []

    def compute(img):
        calls.append(1)
        return img.mean(-1, keepdim=True).repeat(1, 1, 4)

    first = cache.get_or_compute("fake", images, compute, {"model": "m", "pretrained": "a"})
    assert len(calls) == 2
    second = cache.get_or_compute("fake", images, compute, {"model": "m", "pretrained": "a"})
    assert len(calls) == 2  # all hits
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)
        assert a.dtype == torch.float32
    cache.get_or_compute("fake", images[:1], compute, {"model": "m", "pretrained": "b"})
    assert len(calls) == 3  # new weights tag -> new key
    # uint8 content and its /255 float copy share a key; a changed pixel does not
    u8 = (torch.rand(5, 6, 3) * 255).to(torch.uint8)
    fp = {"model": "m"}
    assert image_key(u8, fp) == image_key(u8.float() / 255, fp)
    changed = u8.clone()
    changed[0, 0, 0] ^= 1
    assert image_key(changed, fp) != image_key(u8, fp)
    assert len(list((tmp_path / "cache" / "fake").glob("*.pt"))) == 3


def test_cached_teacher_features_second_call_hits(tmp_path, tiny_clip_weights):
    cache = FeatureCache(tmp_path)
    images = [torch.rand(32, 40, 3)]
    for teacher in (
        DINOTeacher(DINOTeacherConfig(layer=-1, load_size=32), network=_tiny_timm_vit()),
        _tiny_clip_config(tiny_clip_weights).setup(),
    ):
        first = cached_teacher_features(teacher, images, cache)
        calls = []
        compute = teacher.image_features
        teacher.image_features = lambda img: calls.append(1) or compute(img)
        second = cached_teacher_features(teacher, images, cache)
        assert calls == [] and torch.equal(first[0], second[0])
        assert (tmp_path / teacher.name).is_dir()
    assert cached_teacher_features(teacher, images, None)[0].shape == first[0].shape


def test_clip_model_config_file_is_registered_and_checked(tmp_path):
    from fmgs_field.teachers.clip_teacher import register_model_config

    clip, dino = write_tiny_teachers(tmp_path, clip_dim=8, dino_dim=12)
    assert clip.model_config_file.name == "fmgs-tiny-clip-8.json" and dino.backend == "transformers"
    teacher = clip.setup()
    assert teacher.feature_dim == 8 and teacher.name == "openclip_fmgs-tiny-clip-8_tiny_clip"
    assert dino.setup().feature_dim == 12
    with pytest.raises(MissingWeightsError, match="model_config_file"):
        register_model_config(CLIPTeacherConfig(model_name="x", model_config_file=tmp_path / "missing.json"))
    with pytest.raises(ValueError, match="model_name"):
        register_model_config(CLIPTeacherConfig(model_name="other", model_config_file=clip.model_config_file))


def test_clip_teacher_negatives(tiny_clip_weights):
    teacher = _tiny_clip_config(tiny_clip_weights).setup()
    assert teacher.negatives == ["object", "things", "stuff", "texture"]
    torch.testing.assert_close(teacher.neg_embeds, teacher.encode_text(teacher.negatives))
    teacher.set_negatives([" a wall ", "", "a floor"])
    assert teacher.negatives == ["a wall", "a floor"] and teacher.neg_embeds.shape == (2, 16)
    teacher.set_negatives([])
    assert teacher.negatives == ["object", "things", "stuff", "texture"]
    torch.testing.assert_close(teacher.neg_embeds, teacher.canonical_neg_embeds)
