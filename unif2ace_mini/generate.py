"""Text -> face generation with the unified model: MaskGIT + classifier-free guidance (DESIGN §7).

A prompt is one of
    "a caption"          used as written (cut at a sentence end if longer than the text budget,
                         as in training; `Generation.captions` holds what the model saw;
                         unknown words become the byte-level tokenizer's pieces, no error);
    {group: value}       SynthFaces attributes, checked against the taxonomy and turned into a
                         caption that states every given attribute (`attributes_caption`);
    None                 unconditional generation: the empty-caption prompt that 10% caption
                         dropout trained. An empty string "" is an error, never silently
                         unconditional.

The denoiser closure writes the image segment x_t into the full t2i sequence
    [pad ...] <|t2i|> <|sot|> caption <|eot|> <|soi|> x_t <|eoi|>
runs the model once and reads the logits at the image columns. The samplers work in *code
space*: because the vocabulary ends with [image codes | MASK] (`mask_id = image_offset + K`),
the columns image_offset .. mask_id are exactly "codes 0..K-1 and MASK = K", and a code c is
the id c + image_offset. Slicing those K + 1 columns gives exactly what setting every other
column to -inf would (p_theta renormalised over the image codes; the samplers drop MASK), is
K + 1 columns wide rather than V, and makes every sampled token a valid image code by
construction.

Guidance, (1 + w) cond - w uncond on the logits (Show-o), is applied inside the closure with the
conditional and unconditional rows in one batched forward pass; so ancestral sampling gets
guidance too. guidance = 0 skips the unconditional rows and is the plain conditional model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .data.groups import TAXONOMY
from .data.taxonomy import Taxonomy
from .diffusion import ancestral_sample, maskgit_sample
from .model.sequences import SequenceBuilder, truncate_caption

SAMPLERS = ("maskgit", "ancestral")
DEFAULT_STEPS = 16
DEFAULT_GUIDANCE = 2.0


@dataclass
class Generation:
    images: Tensor                 # (B, 3, H, W) float in [-1, 1]
    codes: Tensor                  # (B, h, w) image codes in [0, K)
    captions: list[str | None]     # the caption text each row was conditioned on (None: uncond)
    network_calls: int             # model forward passes; a guided pass counts 2 (cond + uncond)
    calls_per_sample: float        # model rows evaluated per image (guided rows count 2)


# --- prompts --------------------------------------------------------------------------------
def attributes_caption(attributes: Mapping[str, str], seed: int = 0,
                       taxonomy: Taxonomy = TAXONOMY) -> str:
    """A SynthFaces-style caption stating exactly the given attributes (wording drawn from
    `seed`). Unknown groups / values, broken consistency rules and values that captions can
    never state (e.g. hair_color "none") are ValueErrors."""
    from .data.text import make_caption

    if not isinstance(attributes, Mapping) or not attributes:
        raise ValueError(f"attributes must be a non-empty dict {{group: value}}, got "
                         f"{attributes!r}")
    taxonomy.validate(attributes, complete=False)       # names, values, rules
    unsayable = [f"{g}={v!r}" for g, v in attributes.items()
                 if not taxonomy.group(g).phrases.get(v)]
    if unsayable:
        raise ValueError(f"captions cannot state {', '.join(unsayable)} (no caption phrase); "
                         f"leave these groups out of the prompt")
    # make_caption states a random subset of a *complete* attribute set: on a sub-taxonomy of
    # just the given groups, with the subset size pinned to all of them, it states them all.
    names = [n for n in taxonomy.names if n in attributes]
    rules = [r for r in taxonomy.rules if r.if_group in attributes and r.then_group in attributes]
    sub = Taxonomy([taxonomy.group(n) for n in names], rules)
    caption, stated = make_caption({n: attributes[n] for n in names},
                                   np.random.default_rng(seed), mean_attrs=len(names),
                                   std_attrs=0.0, min_attrs=len(names), taxonomy=sub)
    assert len(stated) == len(names)
    return caption


def prompt_captions(prompts, seed: int = 0) -> list[str | None]:
    """Prompts (a caption, an attribute dict, None, or a list of these) -> caption | None each.

    Attribute dict i is worded with seed [seed, i]: deterministic, different across rows."""
    if prompts is None or isinstance(prompts, (str, Mapping)):
        prompts = [prompts]
    if not isinstance(prompts, Sequence) or len(prompts) == 0:
        raise ValueError("prompts must be a non-empty list of captions, attribute dicts or None")
    captions = []
    for i, p in enumerate(prompts):
        if p is None:
            captions.append(None)
        elif isinstance(p, str):
            if not p.strip():
                raise ValueError(f"prompt {i} is empty; pass None for unconditional generation")
            captions.append(p.strip())
        elif isinstance(p, Mapping):
            captions.append(attributes_caption(p, seed=int(np.random.SeedSequence([seed, i])
                                                            .generate_state(1)[0])))
        else:
            raise ValueError(f"prompt {i} must be a caption string, an attribute dict or None, "
                             f"got {type(p).__name__}")
    return captions


# --- the denoiser ---------------------------------------------------------------------------
def check_parts(model, image_tokenizer, builder: SequenceBuilder) -> None:
    """The model, the image tokenizer and the sequence builder must describe the same layout."""
    vocab = model.vocab
    if builder.vocab != vocab:
        raise ValueError(f"the sequence builder's vocabulary {builder.vocab.to_dict()} differs "
                         f"from the model's {vocab.to_dict()}")
    if image_tokenizer is not None:
        if image_tokenizer.codebook_size != vocab.n_image_codes:
            raise ValueError(f"image tokenizer has {image_tokenizer.codebook_size} codes, the "
                             f"model's vocabulary {vocab.n_image_codes}")
        if image_tokenizer.grid ** 2 != builder.n_image_tokens:
            raise ValueError(f"image tokenizer makes {image_tokenizer.grid ** 2} tokens per image, "
                             f"the builder expects {builder.n_image_tokens}")
    if builder.max_len > model.config.max_len:
        raise ValueError(f"builder max_len {builder.max_len} exceeds the model's "
                         f"{model.config.max_len}")


class ImageDenoiser:
    """x_t in code space (B, N), MASK = K -> guided logits (B, N, K + 1) for a batch of prompts.

    Counts forward passes (`calls`) and rows, guided rows counting twice. `rows` (a bool mask
    or index over the prompts) evaluates a subset, so samplers may skip unchanged rows."""

    takes_rows = True

    def __init__(self, model, builder: SequenceBuilder, captions: list[str | None],
                 guidance: float = 0.0, temperature: float = 1.0):
        device = next(model.parameters()).device
        self.model, self.guidance, self.temperature = model, float(guidance), float(temperature)
        self.columns, self.offset = builder.t2i_image_columns, model.vocab.image_offset
        self.cond = builder.t2i_batch(captions).to(device)                  # (B, L)
        self.uncond = builder.t2i_batch([None] * len(captions)).to(device) if guidance else None
        self.calls = self.rows = 0

    def logits(self, ids: Tensor, xt: Tensor) -> Tensor:
        ids = ids.clone()
        ids[:, self.columns] = xt + self.offset                            # codes, MASK -> ids
        return self.model(ids).logits[:, self.columns, self.offset:].float()   # (b, N, K + 1)

    @torch.no_grad()
    def __call__(self, xt: Tensor, rows: Tensor | None = None) -> Tensor:
        cond = self.cond if rows is None else self.cond[rows]
        if xt.shape[0] != cond.shape[0]:
            raise ValueError(f"x_t has {xt.shape[0]} rows but {cond.shape[0]} prompts are "
                             f"selected (of {self.cond.shape[0]})")
        factor = 2 if self.guidance else 1
        self.calls += factor
        self.rows += factor * xt.shape[0]
        if not self.guidance:
            logits = self.logits(cond, xt)
        else:   # cond and uncond rows in one pass
            uncond = self.uncond if rows is None else self.uncond[rows]
            both = self.logits(torch.cat([cond, uncond]), torch.cat([xt, xt]))
            cond, uncond = both.chunk(2)
            logits = (1 + self.guidance) * cond - self.guidance * uncond
        return logits / self.temperature


# --- generation -----------------------------------------------------------------------------
def _check_settings(steps, guidance, sampler, temperature) -> None:
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not np.isfinite(guidance) or guidance < 0:
        raise ValueError(f"guidance must be a finite number >= 0, got {guidance!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")


@torch.no_grad()
def generate(model, prompts, *, image_tokenizer, builder: SequenceBuilder,
             steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
             sampler: str = "maskgit", temperature: float = 1.0, choice_temperature: float = 1.0,
             seed: int = 0, batch_size: int = 64, decode: bool = True) -> Generation:
    """Faces for `prompts` (see the module docstring); the same seed gives the same images.

    temperature          divides the guided logits before sampling (1 = the model's p_theta);
    choice_temperature   MaskGIT only: the Gumbel noise on the re-masking confidence;
    batch_size           prompts per sampler run (the results depend on it: one generator
                         runs through the batches in order);
    decode               False skips the image tokenizer's decoder (codes only; images empty).
    With sampler="ancestral", a row is re-evaluated only after one of its tokens changed (RADD's
    caching), so `calls_per_sample` can be below `steps` (x2 with guidance)."""
    _check_settings(steps, guidance, sampler, temperature)
    check_parts(model, image_tokenizer, builder)
    captions = prompt_captions(prompts, seed)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    n_codes, n_tokens = model.vocab.n_image_codes, builder.n_image_tokens
    was_training = model.training
    model.eval()
    tokens, calls, rows = [], 0, 0
    try:
        for start in range(0, len(captions), batch_size):
            chunk = captions[start:start + batch_size]
            # an all-unconditional batch needs no guidance: cond == uncond
            w = guidance if any(c is not None for c in chunk) else 0.0
            net = ImageDenoiser(model, builder, chunk, w, temperature)
            if sampler == "maskgit":
                result = maskgit_sample(net, len(chunk), n_tokens, n_codes, steps,
                                        choice_temperature, generator=generator, device=device)
            else:
                result = ancestral_sample(net, len(chunk), n_tokens, n_codes, steps,
                                          generator=generator, device=device)
            tokens.append(result.tokens)                                    # (b, N) codes
            calls, rows = calls + net.calls, rows + net.rows
    finally:
        model.train(was_training)
    tokens = torch.cat(tokens)
    if (tokens < 0).any() or (tokens >= n_codes).any():     # cannot happen: MASK has no mass
        raise RuntimeError("the sampler returned a token that is not an image code")
    grid = int(round(n_tokens ** 0.5))
    codes = tokens.view(-1, grid, grid).cpu()                               # (B, h, w)
    images = image_tokenizer.decode(codes) if decode else torch.empty(0)
    return Generation(images, codes, effective_captions(builder, captions), calls,
                      rows / len(captions))


def effective_captions(builder: SequenceBuilder, captions: list[str | None]) -> list[str | None]:
    """The text of each caption the model actually reads (cut to the text budget at a
    sentence end; None stays None). Score generations against the attributes of *these*."""
    return [truncate_caption(builder.tokenizer, c, builder.text_budget)[1] if c else None
            for c in captions]


# --- the trained parts of a profile -----------------------------------------------------------
@dataclass
class Pipeline:
    """What generation and understanding need, from the artifact cache."""
    model: object                  # UniFace (eval mode)
    image_tokenizer: object
    text_tokenizer: object
    builder: SequenceBuilder
    profile: object


def builder_for(model, text_tokenizer, image_tokenizer) -> SequenceBuilder:
    model.config.check_image_tokens(image_tokenizer.grid ** 2)
    return SequenceBuilder(text_tokenizer, model.vocab, model.config.max_len,
                           image_tokenizer.grid ** 2)


def load_pipeline(profile, progress: bool = True, announce=print) -> Pipeline:
    """The profile's trained model and tokenizers; trains whatever is missing, announcing it
    (through `announce`) before a long training run starts."""
    from . import profiles
    from .model.cache import finished_run, load_or_train_model
    from .model.config import get_model_config
    from .tokenizers.cache import load_or_train_image_tokenizer
    from .training import get_train_config, load_training_data

    profile = profiles.get_profile(profile)
    data = load_training_data(profile)            # dataset + tokenizers (trained if missing)
    mc, tc = get_model_config(profile).for_vocab(data.vocab), get_train_config(profile)
    if finished_run(profile, mc, tc, data) is None:
        announce(f"no trained model for profile {profile.name!r} in the cache: training it now "
                 f"(at most {tc.max_steps} steps / {tc.max_seconds:.0f} s)")
    model, _ = load_or_train_model(profile, data=data, progress=progress)
    image_tok, _ = load_or_train_image_tokenizer(profile)
    model.eval()
    return Pipeline(model, image_tok, data.text_tokenizer,
                    builder_for(model, data.text_tokenizer, image_tok), profile)
