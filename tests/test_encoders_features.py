"""One feature-extractor interface: shapes, input checks, save/load round trips, paper adapters.

The paper-scale adapters are exercised with small random-initialised models of the same family
(a transformers CLIPModel with a 14 px-patch ViT; an insightface-layout IResNet at 112 px),
saved by the test into tmp_path: nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from unif2ace_mini.encoders import (ClipImageFeatures, FaceIdentityFeatures, IResNet,
                                    convert_insightface_checkpoint, load_face_backbone,
                                    load_face_model, load_pretrained_clip, save_face_model)
from unif2ace_mini.runtime import save_safetensors


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def _clip(image_size=16, patch=8, width=32):
    torch.manual_seed(0)
    text = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=16, projection_dim=8)
    vision = dict(image_size=image_size, patch_size=patch, hidden_size=width,
                  intermediate_size=2 * width, num_hidden_layers=1, num_attention_heads=2,
                  projection_dim=8)
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).eval()


def _images(n=3, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_clip_patch_and_pooled_tokens():
    model = _clip()
    patches = ClipImageFeatures(model, tokens="patches")
    assert (patches.name, patches.n_tokens, patches.dim) == ("clip", 1 + 4, 32)
    out = patches(_images())
    assert out.shape == (3, 5, 32) and not out.requires_grad
    pooled = ClipImageFeatures(model, tokens="pooled")
    out = pooled(_images())
    assert out.shape == (3, 1, 8)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3, 1), atol=1e-5)
    # pooled == CLIP's own normalised image embedding
    ref = model.get_image_features(pixel_values=_images())
    ref = torch.nn.functional.normalize(getattr(ref, "pooler_output", ref), dim=-1)
    assert torch.allclose(out[:, 0], ref, atol=1e-5)
    with pytest.raises(ValueError, match="'patches' or 'pooled'"):
        ClipImageFeatures(model, tokens="mean")


def test_uint8_input_equals_its_unit_range_version():
    face = FaceIdentityFeatures(IResNet((4, 8), (1, 1), 6, 16), image_size=16, model_size=16)
    u8 = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(face(u8), face(u8.float() / 127.5 - 1), atol=1e-6)


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(2, 3, 32, 32), "take 16x16"),
    (torch.zeros(2, 1, 16, 16), r"RGB images \(B, 3, H, W\)"),
    (torch.zeros(3, 16, 16), r"RGB images \(B, 3, H, W\)"),
    (torch.full((2, 3, 16, 16), 3.0), r"in \[-1, 1\]"),
    (torch.zeros(2, 3, 16, 16, dtype=torch.int32), "uint8 or float"),
    (torch.zeros(0, 3, 16, 16), "empty batch"),
    ([[0.0]], "torch.Tensor"),
])
def test_bad_images_are_clear_errors(bad, message):
    for extractor in (ClipImageFeatures(_clip()),
                      FaceIdentityFeatures(IResNet((4, 8), (1, 1), 6, 16), 16, 16)):
        with pytest.raises(ValueError, match=message):
            extractor(bad)


def test_extractors_stay_frozen_in_eval_mode():
    face = FaceIdentityFeatures(IResNet((4, 8), (1, 1), 6, 16).train(), 16, 16)
    face.train()
    assert not face.training and not face.backbone.training
    assert all(not p.requires_grad for p in face.parameters())
    x = _images(1)
    assert torch.equal(face(x), face(x))                           # BatchNorm uses running stats


def test_face_model_safetensors_round_trip_is_exact(tmp_path):
    torch.manual_seed(1)
    net = IResNet((4, 8), (1, 1), 6, 16).eval()
    file = save_face_model(net, tmp_path / "face.safetensors")
    loaded = load_face_model(file, image_size=16)
    direct = FaceIdentityFeatures(net, 16, 16)
    x = _images(4)
    assert torch.equal(loaded(x), direct(x))
    assert loaded(x).shape == (4, 1, 6) and (loaded.name, loaded.dim, loaded.n_tokens) == ("face", 6, 1)


def test_face_model_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_face_model(tmp_path / "missing.safetensors", image_size=16)
    save_safetensors({"w": torch.zeros(2)}, tmp_path / "other.safetensors", {"kind": "oracle"})
    with pytest.raises(ValueError, match="not a face model"):
        load_face_model(tmp_path / "other.safetensors", image_size=16)
    net = IResNet((4, 8), (1, 1), 6, 16)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    meta = {"format": "unif2ace-face-iresnet", "arch": net.arch(), "mean": [0.5] * 3, "std": [0.5] * 3}
    save_safetensors(state, tmp_path / "cut.safetensors", meta)
    with pytest.raises(ValueError, match="does not match its recorded architecture"):
        load_face_backbone(tmp_path / "cut.safetensors")
    (tmp_path / "face.onnx").write_bytes(b"0")
    with pytest.raises(ValueError, match="unknown face model format"):
        load_face_model(tmp_path / "face.onnx", image_size=16)
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="not a TorchScript model"):
        load_face_model(tmp_path / "junk.pt", image_size=16)


def _insightface_like():
    """insightface's IResNet layout at 112 px (7x7 final map), 8x narrower and 1 block a stage."""
    torch.manual_seed(2)
    return IResNet(widths=(8, 16, 32, 64), layers=(1, 1, 1, 1), embedding_dim=32, image_size=112).eval()


def test_insightface_checkpoint_converts_and_loads_at_another_image_size(tmp_path):
    net = _insightface_like()
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert "layer1.0.downsample.0.weight" in state and "features.running_var" in state
    torch.save(state, tmp_path / "backbone.pth")                   # what arcface_torch writes
    out = convert_insightface_checkpoint(tmp_path / "backbone.pth", tmp_path / "r.safetensors",
                                         layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), embedding_dim=32)
    face = load_face_model(out, image_size=64)                     # data at 64 px, model at 112
    assert (face.image_size, face.model_size, face.dim) == (64, 112, 32)
    x = _images(2, size=64)
    big = torch.nn.functional.interpolate(x, size=(112, 112), mode="bilinear", antialias=True)
    ref = torch.nn.functional.normalize(net(big), dim=-1)
    assert torch.allclose(face(x)[:, 0], ref, atol=1e-5)
    with pytest.raises(ValueError, match="does not fit IResNet"):
        convert_insightface_checkpoint(tmp_path / "backbone.pth", tmp_path / "bad.safetensors",
                                       layers=(2, 1, 1, 1), widths=(8, 16, 32, 64), embedding_dim=32)


def test_torchscript_face_model_loads(tmp_path):
    net = _insightface_like()
    torch.jit.trace(net, torch.zeros(2, 3, 112, 112)).save(str(tmp_path / "arcface.pt"))
    face = load_face_model(tmp_path / "arcface.pt", image_size=112, model_size=112)
    x = _images(2, size=112)
    assert face.dim == 32 and face(x).shape == (2, 1, 32)
    assert torch.allclose(face(x)[:, 0], torch.nn.functional.normalize(net(x), dim=-1), atol=1e-5)


def test_pretrained_clip_adapter_loads_a_local_folder_and_resizes(tmp_path):
    """ViT with 14 px patches at 56 px (ViT-L/14's family, tiny); data at 64 px is resized."""
    model = _clip(image_size=56, patch=14, width=32)
    model.save_pretrained(tmp_path / "clip")
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    config = json.dumps({"image_mean": mean, "image_std": std})
    (tmp_path / "clip" / "preprocessor_config.json").write_text(config)
    feats = load_pretrained_clip(tmp_path / "clip", image_size=64)
    assert (feats.image_size, feats.model_size, feats.n_tokens, feats.dim) == (64, 56, 1 + 16, 32)
    x = _images(2, size=64)
    pixels = torch.nn.functional.interpolate(x, size=(56, 56), mode="bilinear", antialias=True)
    pixels = ((pixels + 1) / 2 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    ref = model.vision_model(pixel_values=pixels)
    ref = model.vision_model.post_layernorm(ref.last_hidden_state)
    assert torch.allclose(feats(x), ref, atol=1e-4)
    pooled = load_pretrained_clip(tmp_path / "clip", image_size=64, tokens="pooled")
    assert pooled(x).shape == (2, 1, 8)
    with pytest.raises(ValueError, match="could not load a CLIP model"):
        load_pretrained_clip(tmp_path / "nothing-here")
