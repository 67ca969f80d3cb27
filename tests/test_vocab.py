"""The shared vocabulary [text | special | image codes | MASK]: layout, conversions, errors."""

import pytest
import torch

from unif2ace_mini.tokenizers import SPECIAL_TOKENS, Vocabulary, train_text_tokenizer

V = Vocabulary(n_text=100, n_image_codes=16)


def test_layout():
    assert V.n_special == 7 and V.special_tokens == SPECIAL_TOKENS
    assert V.image_offset == 107 and V.mask_id == 123 and V.size == len(V) == 124
    assert V.special_ids["<|t2i|>"] == 100 and V.special_ids["<|pad|>"] == 106
    assert V.special_id("soi") == V.special_id("<|soi|>") == 102 and V.pad_id == 106
    ids = torch.arange(V.size)
    text, special, image = V.is_text(ids), V.is_special(ids), V.is_image(ids)
    # every id except MASK is exactly one kind; MASK is none of them and is the last id
    kinds = text.long() + special.long() + image.long()
    assert kinds[:-1].eq(1).all() and kinds[-1] == 0
    assert text.sum() == 100 and special.sum() == 7 and image.sum() == 16


def test_image_code_round_trip():
    codes = torch.arange(16).view(2, 2, 4)
    ids = V.image_ids(codes)
    assert ids.shape == codes.shape and int(ids.min()) == 107 and int(ids.max()) == 122
    assert torch.equal(V.image_codes(ids), codes)
    assert V.image_ids(0) == 107 and isinstance(V.image_ids(0), int)
    assert V.image_codes(122) == 15


@pytest.mark.parametrize("fn, arg, match", [
    ("image_ids", torch.tensor([16]), r"\[0, 16\)"),
    ("image_ids", torch.tensor([-1]), r"\[0, 16\)"),
    ("image_ids", torch.tensor([1.0]), "integers"),
    ("image_codes", torch.tensor([123]), "not image tokens"),   # MASK
    ("image_codes", torch.tensor([5]), "not image tokens"),     # text
    ("image_codes", torch.tensor([106]), "not image tokens"),   # <|pad|>
    ("check_text_ids", torch.tensor([107]), r"\[0, 107\)"),
    ("check_text_ids", torch.tensor([-3]), r"\[0, 107\)"),
    ("check_ids", torch.tensor([124]), r"\[0, 124\)"),
    ("special_id", "<|foo|>", "unknown special token"),
])
def test_out_of_range_ids_are_rejected(fn, arg, match):
    with pytest.raises(ValueError, match=match):
        getattr(V, fn)(arg)


def test_text_ids_without_specials():
    assert V.check_text_ids([0, 99], allow_special=False) == [0, 99]
    with pytest.raises(ValueError):
        V.check_text_ids([100], allow_special=False)


def test_serialisation():
    d = V.to_dict()
    assert Vocabulary.from_dict(d) == V
    with pytest.raises(ValueError, match="unknown"):
        Vocabulary.from_dict({**d, "extra": 1})
    with pytest.raises(ValueError):
        Vocabulary(n_text=0, n_image_codes=4)
    assert "MASK     123" in V.describe()


def test_from_trained_tokenizers():
    tok = train_text_tokenizer(["red hair and blue eyes"] * 10, vocab_size=270)
    vocab = Vocabulary.from_tokenizers(tok, 512)
    assert vocab.n_text == len(tok) - 7 and vocab.image_offset == len(tok)
    assert vocab.mask_id == len(tok) + 512 == vocab.size - 1
    soi = tok.convert_tokens_to_ids("<|soi|>")
    assert vocab.special_id("soi") == soi
    # text ids from the tokenizer are valid text ids of the vocabulary
    vocab.check_text_ids(tok("<|sot|>red hair<|eot|>")["input_ids"])


def test_tokenizer_with_misplaced_specials_is_rejected():
    tok = train_text_tokenizer(["red hair"] * 10, vocab_size=260)
    tok.add_tokens(["<extra>"])  # now the specials are no longer the last ids
    with pytest.raises(ValueError, match="last 7 ids"):
        Vocabulary.from_tokenizers(tok, 16)
