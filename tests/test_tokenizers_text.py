"""Text tokenizer: byte-level BPE with Show-o's special tokens, deterministic, no UNK surprises."""

import pytest
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from unif2ace_mini.tokenizers import SPECIAL_TOKENS, special_ids, train_text_tokenizer

TEXTS = [
    "A person with short red hair, round glasses and a faint smile.",
    "This face has long black hair and a full beard; the background is blue.",
    "What colour is the hair? red",
    "Is the person wearing a hat? no",
    "How many earrings are visible? two",
    "Someone with freckles, green eyes and a surprised expression.",
] * 30


@pytest.fixture(scope="module")
def tok():
    return train_text_tokenizer(TEXTS, vocab_size=300)


def test_is_a_fast_transformers_tokenizer_with_specials_last(tok):
    assert isinstance(tok, PreTrainedTokenizerFast)
    ids = special_ids(tok)
    assert list(ids) == list(SPECIAL_TOKENS)
    assert list(ids.values()) == list(range(len(tok) - 7, len(tok)))
    assert tok.pad_token == "<|pad|>" and tok.pad_token_id == ids["<|pad|>"]
    assert len(tok) <= 300 + 7


def test_special_tokens_stay_whole(tok):
    text = "<|t2i|><|sot|>red hair<|eot|><|soi|><|eoi|>"
    ids = tok(text)["input_ids"]
    sid = special_ids(tok)
    assert ids[:2] == [sid["<|t2i|>"], sid["<|sot|>"]]
    assert ids[-3:] == [sid["<|eot|>"], sid["<|soi|>"], sid["<|eoi|>"]]
    assert tok.decode(ids) == text
    assert tok.decode(ids, skip_special_tokens=True) == "red hair"


def test_no_special_tokens_added_implicitly(tok):
    assert tok("red hair")["input_ids"] == tok.encode("red hair", add_special_tokens=False)


@pytest.mark.parametrize("text", [
    "red hair", "A person with short red hair.", "zygomatic xylophone QWERTY",
    "naïve café — 红发 😀", "tabs\tand\nnewlines  double  spaces", "",
])
def test_any_text_round_trips_via_byte_fallback(tok, text):
    ids = tok(text)["input_ids"]
    assert all(0 <= i < len(tok) - 7 for i in ids)  # never a special token, never an UNK
    assert tok.decode(ids) == text


def test_bpe_learned_frequent_words(tok):
    # frequent words become single tokens; "hair" appears in most training texts
    assert len(tok(" hair")["input_ids"]) == 1
    assert len(tok(" hair")["input_ids"]) < len(tok(" xylophone")["input_ids"])


def test_training_is_deterministic():
    a = [train_text_tokenizer(TEXTS, vocab_size=300) for _ in range(3)]
    ref = a[0].backend_tokenizer.to_str()
    assert all(t.backend_tokenizer.to_str() == ref for t in a[1:])


def test_save_load_roundtrip(tok, tmp_path):
    tok.save_pretrained(tmp_path / "t")
    again = AutoTokenizer.from_pretrained(tmp_path / "t")
    text = "<|mmu|><|soi|><|eoi|><|sot|>What colour is the hair? red<|eot|><|pad|>"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert special_ids(again) == special_ids(tok) and again.pad_token_id == tok.pad_token_id


def test_bad_training_input():
    with pytest.raises(ValueError, match="non-empty"):
        train_text_tokenizer(["", ""])
    with pytest.raises(ValueError, match="byte alphabet"):
        train_text_tokenizer(TEXTS, vocab_size=100)
