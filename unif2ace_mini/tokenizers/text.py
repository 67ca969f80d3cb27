"""Text tokenizer: byte-level BPE trained on captions + VQA, or Phi-1.5's at paper scale (DESIGN §5).

Both come back as a transformers fast tokenizer carrying Show-o's special tokens as the *last*
ids, so the shared vocabulary (vocab.py) is `[text | special | image codes | MASK]`.

Byte-level means the base alphabet is the 256 bytes: any string, including words and scripts
never seen in training, encodes to byte pieces and decodes back exactly. There is no UNK token.
"""

from __future__ import annotations

import os
from typing import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

# Show-o's task and segment markers: text-to-image, multimodal understanding, start/end of image,
# start/end of text, padding.
SPECIAL_TOKENS = ("<|t2i|>", "<|mmu|>", "<|soi|>", "<|eoi|>", "<|sot|>", "<|eot|>", "<|pad|>")
PAD_TOKEN = "<|pad|>"


def train_text_tokenizer(texts: Iterable[str], vocab_size: int = 1024,
                         min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and add Show-o's special tokens after it.

    `vocab_size` counts the BPE pieces (256 bytes + merges), not the special tokens. Training is
    deterministic for the same texts in the same order.
    """
    texts = [t for t in texts if t]  # a list: the trainer may read it more than once
    if not texts:
        raise ValueError("train_text_tokenizer needs at least one non-empty text")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size < len(alphabet):
        raise ValueError(f"vocab_size must be >= {len(alphabet)} (the byte alphabet), "
                         f"got {vocab_size}")
    bpe = Tokenizer(models.BPE())
    # GPT-2 / Phi pre-tokenisation: split on words, numbers and punctuation; a leading space is
    # part of the word ("Ġhair"), so decode(encode(s)) == s.
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  initial_alphabet=alphabet, special_tokens=[],
                                  show_progress=False)
    bpe.train_from_iterator(texts, trainer)
    return add_special_tokens(PreTrainedTokenizerFast(tokenizer_object=bpe))


def add_special_tokens(tokenizer):
    """Append SPECIAL_TOKENS (those not present yet) and make <|pad|> the pad token. Idempotent."""
    missing = [t for t in SPECIAL_TOKENS if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    tokenizer.pad_token = PAD_TOKEN
    special_ids(tokenizer)  # validates the layout
    return tokenizer


def special_ids(tokenizer) -> dict[str, int]:
    """{token: id} for SPECIAL_TOKENS; they must be the tokenizer's last ids, in order."""
    ids = tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    n = len(tokenizer)
    expected = list(range(n - len(SPECIAL_TOKENS), n))
    if ids != expected:
        raise ValueError(f"Show-o special tokens must be the last {len(SPECIAL_TOKENS)} ids "
                         f"{expected} in order, got {dict(zip(SPECIAL_TOKENS, ids))}")
    return dict(zip(SPECIAL_TOKENS, ids))


def load_text_tokenizer(path_or_id: str | os.PathLike, **hf_kwargs):
    """Load a saved tokenizer (ours, or Phi-1.5's: "microsoft/phi-1_5" or a local copy) and make
    sure Show-o's special tokens are appended. A hub id may download: paper profile only."""
    try:
        tok = AutoTokenizer.from_pretrained(str(path_or_id), **hf_kwargs)
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load a tokenizer from {str(path_or_id)!r}: {err}") from err
    return add_special_tokens(tok)
