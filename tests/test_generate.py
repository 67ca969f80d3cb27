"""Generation: prompts, seeding, valid image codes, CFG wiring, call counts, CLI input checks."""

import numpy as np
import pytest
import torch

from unif2ace_mini.data.text import parse_caption
from unif2ace_mini.diffusion import maskgit_sample
from unif2ace_mini.generate import (ImageDenoiser, attributes_caption, generate,
                                    prompt_captions)
from unif2ace_mini.inference_cli import main as cli_main
from unif2ace_mini.model import SequenceBuilder, UniFaceOutput

CAPTION = "A portrait of a person. They have red hair. The person wears round glasses."


@pytest.fixture(scope="module")
def parts(tiny_unified):
    return tiny_unified[:3]


def run(parts, prompts, **kw):
    model, image_tok, builder = parts
    kw.setdefault("steps", 4)
    return generate(model, prompts, image_tokenizer=image_tok, builder=builder, **kw)


def favour_non_image_tokens(logit_boost, model):
    """Text ids and MASK get huge logits: generation must still give image codes."""
    return logit_boost(model, [*range(model.vocab.image_offset), model.vocab.mask_id])


def test_same_seed_same_images_other_seed_other_images(parts):
    a = run(parts, [CAPTION, None], seed=3)
    b = run(parts, [CAPTION, None], seed=3)
    c = run(parts, [CAPTION, None], seed=4)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.images, b.images)
    assert not torch.equal(a.codes, c.codes)
    assert a.images.shape == (2, 3, 16, 16) and a.codes.shape == (2, 4, 4)
    assert a.images.min() >= -1 and a.images.max() <= 1


@pytest.mark.parametrize("sampler", ["maskgit", "ancestral"])
def test_tokens_are_always_image_codes(parts, sampler, logit_boost):
    model, image_tok, builder = parts
    result = generate(favour_non_image_tokens(logit_boost, model), [CAPTION] * 3, image_tokenizer=image_tok,
                      builder=builder, steps=5, sampler=sampler, guidance=0.0)
    assert result.codes.dtype == torch.long
    assert result.codes.min() >= 0 and result.codes.max() < image_tok.codebook_size


def test_guidance_formula_and_zero_guidance_is_the_conditional_model(parts):
    model, _, builder = parts
    xt = torch.full((2, 16), 16)                                   # all MASK (code space)
    xt[:, :5] = torch.tensor([1, 2, 3, 4, 5])
    cond_ids, uncond_ids = builder.t2i_batch([CAPTION] * 2), builder.t2i_batch([None] * 2)
    cols, off = builder.t2i_image_columns, model.vocab.image_offset
    cond_ids[:, cols], uncond_ids[:, cols] = xt + off, xt + off
    with torch.no_grad():
        cond = model(cond_ids).logits[:, cols, off:]
        uncond = model(uncond_ids).logits[:, cols, off:]
    assert cond.shape == (2, 16, 17)                               # K codes + MASK
    plain = ImageDenoiser(model, builder, [CAPTION] * 2, guidance=0.0)
    torch.testing.assert_close(plain(xt), cond, rtol=1e-5, atol=1e-5)
    guided = ImageDenoiser(model, builder, [CAPTION] * 2, guidance=1.5)
    torch.testing.assert_close(guided(xt), 2.5 * cond - 1.5 * uncond, rtol=1e-4, atol=1e-4)
    assert (plain.calls, guided.calls) == (1, 2)                   # a guided pass counts 2
    assert not torch.allclose(cond, uncond)                        # the caption matters


def test_zero_guidance_generation_equals_plain_maskgit(parts):
    model, image_tok, builder = parts
    result = run(parts, [CAPTION, CAPTION], guidance=0.0, seed=7, steps=6)
    cols, off = builder.t2i_image_columns, model.vocab.image_offset
    base = builder.t2i_batch([CAPTION] * 2)

    def denoiser(xt):
        ids = base.clone()
        ids[:, cols] = xt + off
        with torch.no_grad():
            return model(ids).logits[:, cols, off:].float()

    ref = maskgit_sample(denoiser, 2, 16, 16, 6, 1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(result.codes.flatten(1), ref.tokens)
    assert result.network_calls == 6 and result.calls_per_sample == 6
    assert run(parts, [CAPTION], guidance=2.0, steps=6).network_calls == 12


def test_attribute_prompts_state_every_attribute():
    attrs = {"hair_color": "red", "glasses": "round", "emotion": "happy", "background": "blue"}
    caption = attributes_caption(attrs, seed=1)
    assert parse_caption(caption) == attrs
    assert attributes_caption(attrs, seed=1) == caption                   # deterministic
    captions = prompt_captions([attrs, attrs, "A face.", None], seed=0)
    assert captions[0] != captions[1] and captions[2:] == ["A face.", None]


@pytest.mark.parametrize("prompt, message", [
    ({"hair_colour": "red"}, "unknown attribute group"),
    ({"hair_color": "purple"}, "unknown value"),
    ({"hair_color": "none"}, "cannot state"),
    ({"bald": "yes", "hair_color": "red"}, "broken rules"),
    ({}, "non-empty dict"),
    ("", "empty"),
    ("   ", "empty"),
    (3, "must be a caption string"),
])
def test_bad_prompts_are_clear_errors(prompt, message):
    with pytest.raises(ValueError, match=message):
        prompt_captions([prompt])


def test_bad_settings_and_mismatched_parts(parts):
    model, image_tok, builder = parts
    for kw, message in [({"sampler": "euler"}, "unknown sampler"), ({"steps": 0}, "steps"),
                        ({"guidance": -1.0}, "guidance"), ({"temperature": 0.0}, "temperature")]:
        with pytest.raises(ValueError, match=message):
            run(parts, [CAPTION], **kw)
    other = SequenceBuilder(builder.tokenizer, model.vocab, max_len=48, n_image_tokens=4)
    with pytest.raises(ValueError, match="tokens per image"):
        generate(model, [CAPTION], image_tokenizer=image_tok, builder=other, steps=2)
    with pytest.raises(ValueError, match="prompts"):
        run(parts, [])


def test_long_captions_are_cut_at_a_sentence_end(parts):
    long = " ".join([CAPTION] * 6)
    result = run(parts, [long], steps=2)
    assert result.captions[0] and len(result.captions[0]) < len(long)
    assert result.captions[0].endswith(".")


@pytest.mark.parametrize("argv, message", [
    (["generate", "--prompt", "", "--out", "x.png"], "empty"),
    (["generate", "--out", "x.png"], "give --prompt"),
    (["generate", "--attributes", "{bad json", "--out", "x.png"], "not valid JSON"),
    (["generate", "--attributes", '{"wings": "yes"}', "--out", "x.png"], "unknown attribute"),
    (["generate", "--prompt", "A face.", "--out", "x.jpg"], ".png"),
])
def test_cli_rejects_bad_input_before_loading_anything(argv, message, capsys):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1


def test_image_token_bits_of_a_uniform_model_is_log2_of_the_real_tokens(parts, logit_boost):
    from unif2ace_mini.evaluate import image_token_bits

    model, image_tok, builder = parts

    class Uniform(logit_boost):
        def forward(self, ids, **kw):
            out = self.inner(ids, **kw)
            return UniFaceOutput(torch.zeros_like(out.logits), out.aux_loss, out.aux, None)

    ids = model.vocab.image_ids(torch.randint(0, 16, (3, 16)))
    bits = image_token_bits(Uniform(model, []), builder, [CAPTION, None, "A face."], ids,
                            batch_size=2)
    assert bits == pytest.approx(np.log2(model.vocab.size - 1))       # MASK excluded
    assert 0 < image_token_bits(model, builder, [CAPTION] * 3, ids) < 20


def test_ancestral_row_caching_skips_unchanged_rows_and_keeps_the_samples(parts):
    from unif2ace_mini.diffusion import ancestral_sample

    model, _, builder = parts
    prompts = [CAPTION, None, "A face with a green background."]

    def sample(cache):
        net = ImageDenoiser(model, builder, prompts, guidance=1.0)
        out = ancestral_sample(net, 3, 16, 16, num_steps=40, cache=cache,
                               generator=torch.Generator().manual_seed(0))
        return out.tokens, net.rows
    cached, cached_rows = sample(True)
    plain, plain_rows = sample(False)
    assert torch.equal(cached, plain)               # skipped rows had not changed
    assert plain_rows == 2 * 3 * 40 and cached_rows < plain_rows
    net = ImageDenoiser(model, builder, prompts, guidance=1.0)
    xt = torch.full((2, 16), 16)
    with pytest.raises(ValueError, match="2 rows but 3 prompts"):
        net(xt)
    rows = torch.tensor([True, False, True])
    torch.testing.assert_close(net(xt, rows=rows), net(torch.full((3, 16), 16))[rows])
