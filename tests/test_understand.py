"""Understanding: cached == uncached decoding, seeding, stopping, allowed tokens, bad inputs."""

import numpy as np
import pytest
import torch

from unif2ace_mini.inference_cli import load_image
from unif2ace_mini.inference_cli import main as cli_main
from unif2ace_mini.understand import answer, caption, decode, image_token_ids, time_decoding

QUESTIONS = ["Is the person smiling?", "What colour is the person's hair?", "How many earrings?"]


@pytest.fixture(scope="module")
def parts(tiny_unified):
    return tiny_unified


def prompt(parts, questions=QUESTIONS):
    model, image_tok, builder, images = parts
    ids = image_token_ids(model.vocab, builder, images, image_tokenizer=image_tok)
    return builder.mmu_prompt_batch(ids, list(questions))


@pytest.mark.parametrize("decoding", ["greedy", "top-k"])
def test_cached_decoding_gives_the_same_tokens_as_uncached(parts, decoding):
    model, _, builder, _ = parts
    kw = dict(tokenizer=builder.tokenizer, max_new_tokens=12, decoding=decoding, top_k=4, seed=5)
    cached = decode(model, prompt(parts), use_cache=True, **kw)
    uncached = decode(model, prompt(parts), use_cache=False, **kw)
    assert cached.tokens == uncached.tokens and cached.texts == uncached.texts
    assert cached.new_tokens == uncached.new_tokens > 0


def test_top_k_is_seeded_and_tokens_are_text(parts, logit_boost):
    model, _, builder, _ = parts
    kw = dict(tokenizer=builder.tokenizer, max_new_tokens=10, decoding="top-k", top_k=50)
    a, b = decode(model, prompt(parts), seed=1, **kw), decode(model, prompt(parts), seed=1, **kw)
    c = decode(model, prompt(parts), seed=2, **kw)
    assert a.tokens == b.tokens and a.tokens != c.tokens
    # a model that prefers image codes, MASK and specials still only writes text (+ <|eot|>)
    v = model.vocab
    biased = logit_boost(model, list(range(v.n_text + 1, v.size)))
    out = decode(biased, prompt(parts), tokenizer=builder.tokenizer, max_new_tokens=6)
    assert all(0 <= t < v.n_text for row in out.tokens for t in row)


def test_stops_at_eot_and_respects_max_new_tokens(parts, logit_boost):
    model, _, builder, _ = parts
    eot = model.vocab.special_id("eot")
    out = decode(logit_boost(model, [eot]), prompt(parts), tokenizer=builder.tokenizer)
    assert out.texts == ["", "", ""] and all(out.finished) and out.forward_passes == 1
    out = decode(model, prompt(parts), tokenizer=builder.tokenizer, max_new_tokens=3,
                 stop_at_eot=False)
    assert out.new_tokens == 3 and all(len(t) <= 3 for t in out.tokens)
    # asking for more than max_len leaves is cut to the room left
    out = decode(model, prompt(parts), tokenizer=builder.tokenizer, max_new_tokens=500,
                 stop_at_eot=False)
    longest = int((prompt(parts) != model.vocab.pad_id).sum(-1).max())
    assert out.new_tokens == 48 - longest


def test_no_repeat_ngram_breaks_loops_and_keeps_the_cache_exact(parts, logit_boost):
    model, _, builder, _ = parts
    looping = logit_boost(model, [7])              # one favourite text token: greedy repeats it
    kw = dict(tokenizer=builder.tokenizer, max_new_tokens=10, stop_at_eot=False)
    assert decode(looping, prompt(parts), **kw).tokens == [[7] * 10] * 3
    for n in (2, 3):
        out = decode(looping, prompt(parts), no_repeat_ngram=n, **kw)
        assert out.tokens == decode(looping, prompt(parts), no_repeat_ngram=n, use_cache=False,
                                    **kw).tokens
        for row in out.tokens:
            grams = [tuple(row[i:i + n]) for i in range(len(row) - n + 1)]
            assert row[:n] == [7] * n and len(grams) == len(set(grams)) and len(row) > n
    # a bound longer than what is generated changes nothing
    assert decode(model, prompt(parts), no_repeat_ngram=11, **kw).tokens == \
        decode(model, prompt(parts), **kw).tokens
    for bad in (1, -2, 2.5, True):
        with pytest.raises(ValueError, match="no_repeat_ngram"):
            decode(model, prompt(parts), no_repeat_ngram=bad, **kw)


def test_caption_and_answer_from_images_and_codes(parts):
    model, image_tok, builder, images = parts
    kw = dict(image_tokenizer=image_tok, builder=builder, max_new_tokens=5)
    caps = caption(model, images, **kw)
    assert len(caps) == 3 and all(isinstance(c, str) for c in caps)
    codes = image_tok.encode(images)
    assert caption(model, codes=codes, builder=builder, max_new_tokens=5) == caps
    uint8 = ((images + 1) * 127.5).round().to(torch.uint8)
    assert len(answer(model, uint8, QUESTIONS, **kw)) == 3
    assert answer(model, images[:1], "Is the person smiling?", **kw) == \
        answer(model, images[:1], ["Is the person smiling?"], **kw)


@pytest.mark.parametrize("make, message", [
    (lambda im: im[:, :, :8, :8], "image size must be 16x16"),
    (lambda im: im[:, :1], "3 channels"),
    (lambda im: im * 10, r"\[-1, 1\]"),
    (lambda im: im[0], "shape"),
])
def test_bad_images_are_clear_errors(parts, make, message):
    model, image_tok, builder, images = parts
    with pytest.raises(ValueError, match=message):
        caption(model, make(images), image_tokenizer=image_tok, builder=builder)


def test_bad_questions_and_codes_are_clear_errors(parts):
    model, image_tok, builder, images = parts
    kw = dict(image_tokenizer=image_tok, builder=builder)
    cases = [(["", "a?", "b?"], "non-empty"), (["a?", "  ", "b?"], "non-empty"),
             (["a?"], "one question per image"), ([None, "a?", "b?"], "non-empty"),
             (7, "list of strings")]
    for questions, message in cases:
        with pytest.raises(ValueError, match=message):
            answer(model, images, questions, **kw)
    with pytest.raises(ValueError, match="exactly one"):
        caption(model, images, codes=torch.zeros(3, 4, 4, dtype=torch.long), **kw)
    with pytest.raises(ValueError, match="image codes must lie"):
        caption(model, codes=torch.full((3, 4, 4), 99), builder=builder)
    with pytest.raises(ValueError, match="16 image codes"):
        caption(model, codes=torch.zeros(3, 2, 2, dtype=torch.long), builder=builder)
    with pytest.raises(ValueError, match="shorten the question|only"):
        answer(model, images[:1], ["hair " * 40], **kw)
    with pytest.raises(ValueError, match="no images"):
        caption(model, images[:0], **kw)
    with pytest.raises(ValueError, match="unknown decoding"):
        caption(model, images, decoding="beam", **kw)


def test_time_decoding_reports_both_paths(parts):
    model, image_tok, builder, images = parts
    ids = image_token_ids(model.vocab, builder, images, image_tokenizer=image_tok)
    t = time_decoding(model, ids, builder, new_tokens=4, repeats=1)
    assert t["ms_per_token_cached"] > 0 and t["ms_per_token_uncached"] > 0 and t["batch"] == 3


def test_cli_image_checks_before_loading_anything(tmp_path, capsys):
    from PIL import Image

    assert cli_main(["answer", "--image", str(tmp_path / "none.png"), "--question", "Hi?"]) == 2
    assert "no image file" in capsys.readouterr().err
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "small.png")
    assert cli_main(["answer", "--image", str(tmp_path / "small.png"), "--question", "Hi?"]) == 2
    assert "20x20" in capsys.readouterr().err
    assert cli_main(["answer", "--image", str(tmp_path / "small.png"), "--question", " "]) == 2
    assert "--question is empty" in capsys.readouterr().err
    assert cli_main(["answer", "--image", str(tmp_path / "small.png"), "--caption",
                     "--no-repeat-ngram", "1"]) == 2
    assert "no_repeat_ngram" in capsys.readouterr().err
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read"):
        load_image(tmp_path / "junk.png", 32)
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(tmp_path / "grey.png")
    x = load_image(tmp_path / "grey.png", 32)
    assert x.shape == (1, 3, 32, 32) and float(x.max()) == 1.0
