"""Cached tokenizers: trained once on a (tiny) SynthFaces build, then loaded identically."""

import pytest
import torch

from unif2ace_mini import profiles
from unif2ace_mini.tokenizers import SPECIAL_TOKENS, Vocabulary, coloured_shapes
from unif2ace_mini.tokenizers.cache import (load_or_train_image_tokenizer,
                                            load_or_train_text_tokenizer, text_corpus)
from unif2ace_mini.tokenizers.config import ImageTokenizerConfig, TextTokenizerConfig


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from unif2ace_mini.data.build import build_or_load

    data = profiles.DataConfig(image_size=32, n_identities=8, n_train=24, n_val=4, n_test=4,
                               n_compositional=4, vqa_per_image=2)
    profile = profiles.get_profile("quick").replace(data=data)
    root = tmp_path_factory.mktemp("cache")
    return profile, build_or_load(data, root=root / "data", workers=1), root


def test_image_tokenizer_is_trained_once_then_loaded(tiny):
    profile, data_path, root = tiny
    cfg = ImageTokenizerConfig(codebook_size=16, code_dim=4, width=16, batch_size=8,
                               max_steps=4, ae_warmup_steps=2, restart_every=2)
    a, hist_a = load_or_train_image_tokenizer(profile, cfg, data_path=data_path, root=root)
    b, hist_b = load_or_train_image_tokenizer(profile, cfg, data_path=data_path, root=root)
    assert hist_a["steps"] == hist_b["steps"] == 4
    assert hist_a["psnr"] == hist_b["psnr"]
    x = coloured_shapes(2, 32)
    assert torch.equal(a.encode(x), b.encode(x))
    # another config is another cache entry
    c, hist_c = load_or_train_image_tokenizer(profile, cfg.replace(max_steps=2),
                                              data_path=data_path, root=root)
    assert hist_c["steps"] == 2


def test_text_tokenizer_is_trained_on_captions_and_vqa(tiny):
    profile, data_path, root = tiny
    corpus = text_corpus(data_path)
    assert len(corpus) == 24 * (1 + 2 * 2)  # caption + (question, answer) x vqa_per_image
    cfg = TextTokenizerConfig(vocab_size=400)
    tok = load_or_train_text_tokenizer(profile, cfg, data_path=data_path, root=root)
    again = load_or_train_text_tokenizer(profile, cfg, data_path=data_path, root=root)
    assert len(tok) == len(again) <= 400 + len(SPECIAL_TOKENS)
    assert tok(corpus[0])["input_ids"] == again(corpus[0])["input_ids"]
    assert tok.decode(tok(corpus[0])["input_ids"]) == corpus[0]
    assert Vocabulary.from_tokenizers(tok, 16).image_offset == len(tok)
