"""image_embed_init="codebook:<profile>": image-code rows start from the image tokenizer's
codebook (a fixed orthonormal projection), and saving / loading / configs stay as they were."""

import pytest
import torch

from unif2ace_mini.model import ModelConfig, UniFace
from unif2ace_mini.model import transformer
from unif2ace_mini.model.transformer import codebook_embedding
from unif2ace_mini.tokenizers import Vocabulary

K, D = 16, 4


@pytest.fixture(scope="module")
def vocab():
    return Vocabulary(n_text=40, n_image_codes=K)


def config(vocab, **kw):
    return ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=24,
                       **kw).for_vocab(vocab)


def codebook(seed=0):
    return torch.randn(K, D, generator=torch.Generator().manual_seed(seed)) * 3 + 1


def test_codebook_embedding_keeps_geometry_and_init_scale():
    cb = codebook()
    rows = codebook_embedding(cb, 32, 0.02)
    assert rows.shape == (K, 32)
    assert abs(float(rows.std()) - 0.02) < 1e-6
    d_cb, d_rows = torch.cdist(cb, cb), torch.cdist(rows, rows)
    scale = d_rows[0, 1] / d_cb[0, 1]
    assert torch.allclose(d_rows, d_cb * scale, atol=1e-6)         # distances up to one scale
    assert torch.equal(rows, codebook_embedding(cb, 32, 0.02))     # fixed projection
    with pytest.raises(ValueError, match="more than d_model"):
        codebook_embedding(torch.randn(K, 64), 32, 0.02)


@pytest.mark.parametrize("tied", [False, True])
def test_image_rows_start_from_the_codebook(vocab, tied):
    cb = codebook()
    torch.manual_seed(0)
    model = UniFace(config(vocab, image_embed_init="codebook:quick", tie_embeddings=tied),
                    vocab, image_codebook=cb)
    torch.manual_seed(0)
    plain = UniFace(config(vocab, tie_embeddings=tied), vocab)
    image = slice(vocab.image_offset, vocab.image_offset + K)
    expected = codebook_embedding(cb, 32, 0.02)
    assert torch.equal(model.embed.weight[image], expected)
    assert torch.equal(model.head.weight[image], expected)
    # text, special and MASK rows and every other weight: the normal init, unchanged
    text = slice(0, vocab.image_offset)
    assert torch.equal(model.embed.weight[text], plain.embed.weight[text])
    assert torch.equal(model.embed.weight[vocab.mask_id], plain.embed.weight[vocab.mask_id])
    assert torch.equal(model.blocks[0].attn.qkv.weight, plain.blocks[0].attn.qkv.weight)
    assert (model.head.weight is model.embed.weight) == tied


def test_codebook_comes_from_the_profile_when_not_given(vocab, monkeypatch):
    asked = []
    monkeypatch.setattr(transformer, "profile_codebook", lambda p: asked.append(p) or codebook())
    UniFace(config(vocab, image_embed_init="codebook:quick"), vocab)
    assert asked == ["quick"]


def test_codebook_must_fit_the_vocabulary(vocab):
    with pytest.raises(ValueError, match="image codes"):
        UniFace(config(vocab, image_embed_init="codebook:quick"), vocab,
                image_codebook=torch.randn(K + 1, D))


def test_bad_setting_is_an_error():
    for bad in ("codebook", "codebook:", "pca"):
        with pytest.raises(ValueError, match="image_embed_init"):
            ModelConfig(image_embed_init=bad)
    assert ModelConfig(image_embed_init="codebook:cpu").codebook_profile == "cpu"
    assert ModelConfig().codebook_profile is None


def test_config_dict_and_differences(vocab):
    plain, cb = config(vocab), config(vocab, image_embed_init="codebook:quick")
    assert "image_embed_init" not in plain.to_dict()        # old configs / cache keys unchanged
    assert ModelConfig.from_dict(plain.to_dict()) == plain
    assert ModelConfig.from_dict(cb.to_dict()) == cb
    assert plain.differences(cb) == {"image_embed_init": ("normal", "codebook:quick")}
    assert cb.differences(plain) == {"image_embed_init": ("codebook:quick", "normal")}


def test_save_load_round_trip_without_the_tokenizer(vocab, tmp_path, monkeypatch):
    model = UniFace(config(vocab, image_embed_init="codebook:quick"), vocab,
                    image_codebook=codebook()).eval()
    model.save_pretrained(tmp_path)

    def no_lookup(profile):
        raise AssertionError("from_pretrained must not load the image tokenizer")

    monkeypatch.setattr(transformer, "profile_codebook", no_lookup)
    loaded = UniFace.from_pretrained(tmp_path, config=model.config)
    assert loaded.config == model.config
    ids = torch.tensor([[vocab.special_id("t2i"), vocab.special_id("sot"), 3,
                         vocab.special_id("eot"), vocab.special_id("soi"),
                         vocab.image_offset + 2, vocab.mask_id, vocab.special_id("eoi")]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
