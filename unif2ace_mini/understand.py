"""Face understanding with the unified model: captioning and VQA by autoregressive decoding.

The prompt is Show-o's mmu layout, left-padded so every row continues at the same column:

    [pad ...] <|mmu|> <|soi|> image tokens <|eoi|> <|sot|> question   -> answer ... <|eot|>

Captioning is the same with an empty question (`CAPTION_QUESTION`), as trained. Decoding is
greedy or top-k sampling (seeded), restricted to text tokens and <|eot|> (the model could put
mass on image / special ids; those are never a valid answer), and stops at <|eot|> or after
`max_new_tokens` (at most what the model's max_len leaves after the prompt). `no_repeat_ngram=n`
forbids a row to generate any n tokens twice, which breaks the phrase loops of greedy captions.

KV cache: the prompt runs once with `use_cache=True`, then each step feeds only the new token.
Rows that have finished are fed <|pad|>, which no token ever attends to, so they cost a little
compute but never change another row. `use_cache=False` re-runs the whole sequence every step
(the reference the tests compare against); `time_decoding` measures both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from .model.sequences import CAPTION_QUESTION, SequenceBuilder

DECODINGS = ("greedy", "top-k")


@dataclass
class Decoded:
    texts: list[str]               # decoded answers / captions, stripped
    tokens: list[list[int]]        # generated ids per row, <|eot|> excluded
    finished: list[bool]           # the row ended with <|eot|> (False: cut by max_new_tokens)
    forward_passes: int            # model calls (the prompt pass included)
    new_tokens: int                # decoding steps taken (tokens generated per row, at most)
    seconds: float


# --- inputs ---------------------------------------------------------------------------------
def image_token_ids(vocab, builder: SequenceBuilder, images: Tensor | None = None,
                    codes: Tensor | None = None, image_tokenizer=None) -> Tensor:
    """(B, N) image token ids from images (float (B, 3, H, W) in [-1, 1], or uint8 pixels),
    checked by the image tokenizer, or from codes (B, h, w) / (B, N) in [0, K)."""
    if (images is None) == (codes is None):
        raise ValueError("pass exactly one of images= or codes=")
    if images is not None:
        if image_tokenizer is None:
            raise ValueError("images need image_tokenizer= to be turned into codes")
        if isinstance(images, Tensor) and images.dtype == torch.uint8:
            images = images.float().div(127.5).sub(1.0)
        codes = image_tokenizer.encode(images)                   # checks size, channels, range
    if not isinstance(codes, Tensor) or codes.dim() not in (2, 3):
        raise ValueError(f"codes must be a (B, h, w) or (B, N) integer tensor, got "
                         f"{tuple(getattr(codes, 'shape', ()))}")
    if codes.shape[0] == 0:
        raise ValueError("no images to caption / answer about (batch of 0)")
    codes = codes.flatten(1)
    if codes.shape[1] != builder.n_image_tokens:
        raise ValueError(f"expected {builder.n_image_tokens} image codes per image, got "
                         f"{codes.shape[1]}")
    return vocab.image_ids(codes.cpu())                           # ValueError if out of range


def check_questions(questions, n_images: int) -> list[str]:
    if isinstance(questions, str):
        questions = [questions]
    if not isinstance(questions, (list, tuple)):
        raise ValueError(f"questions must be a list of strings, got {questions!r}")
    if len(questions) != n_images:
        raise ValueError(f"need one question per image ({n_images}), got {len(questions)}")
    out = []
    for i, q in enumerate(questions):
        if not isinstance(q, str) or not q.strip():
            raise ValueError(f"question {i} must be a non-empty string, got {q!r}")
        out.append(q.strip())
    return out


# --- decoding -------------------------------------------------------------------------------
def _allowed_bias(vocab, device) -> Tensor:
    """(V,) 0 on text ids and <|eot|>, -inf elsewhere."""
    bias = torch.full((vocab.size,), float("-inf"), device=device)
    bias[:vocab.n_text] = 0.0
    bias[vocab.special_id("eot")] = 0.0
    return bias


def check_no_repeat_ngram(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n == 1:
        raise ValueError(f"no_repeat_ngram must be 0 (off) or an integer >= 2, got {n!r}")
    return n


def _ban_repeats(logits: Tensor, seen: list[dict], generated: list[list[int]], n: int) -> Tensor:
    """-inf on every token that would complete an n-gram a row has already generated
    (transformers' `no_repeat_ngram_size`): greedy captions otherwise loop on their most likely
    phrase ("a full head of hair, a full head of hair, ..."). A row that stops at <|eot|> never
    has it in an n-gram, so <|eot|> always stays a finite choice."""
    for row, (grams, tokens) in enumerate(zip(seen, generated)):
        banned = grams.get(tuple(tokens[len(tokens) - n + 1:])) if len(tokens) >= n - 1 else None
        if banned:
            logits[row, list(banned)] = float("-inf")
    return logits


def _remember(seen: list[dict], generated: list[list[int]], nxt: list[int], n: int) -> None:
    for grams, tokens, token in zip(seen, generated, nxt):
        tokens.append(token)
        if len(tokens) >= n:
            grams.setdefault(tuple(tokens[-n:-1]), set()).add(token)


def _choose(logits: Tensor, decoding: str, top_k: int, temperature: float,
            generator: torch.Generator) -> Tensor:
    """(B, V) logits -> (B,) next ids."""
    if decoding == "greedy":
        return logits.argmax(-1)
    values, ids = (logits / temperature).topk(min(top_k, logits.shape[-1]), dim=-1)  # (B, k)
    pick = torch.multinomial(values.softmax(-1), 1, generator=generator)             # (B, 1)
    return ids.gather(-1, pick).squeeze(-1)


@torch.no_grad()
def decode(model, prompt_ids: Tensor, *, tokenizer, max_new_tokens: int | None = None,
           decoding: str = "greedy", top_k: int = 5, temperature: float = 1.0, seed: int = 0,
           use_cache: bool = True, stop_at_eot: bool = True, features=None,
           no_repeat_ngram: int = 0) -> Decoded:
    """Continue left-padded mmu prompts (B, P) token by token (see the module docstring).

    max_new_tokens None = all the room the model's max_len leaves; larger values are cut to it.
    stop_at_eot=False keeps going to max_new_tokens (for timing). no_repeat_ngram n >= 2 never
    lets a row generate the same n tokens twice (0: off)."""
    if decoding not in DECODINGS:
        raise ValueError(f"unknown decoding {decoding!r}; choose one of {DECODINGS}")
    if decoding == "top-k" and (top_k < 1 or not temperature > 0):
        raise ValueError(f"top-k decoding needs top_k >= 1 and temperature > 0, got "
                         f"{top_k}, {temperature}")
    check_no_repeat_ngram(no_repeat_ngram)
    vocab, device = model.vocab, next(model.parameters()).device
    prompt_ids = prompt_ids.to(device)
    if features is not None:
        features = {k: f.to(device) for k, f in features.items()}
    room = model.config.max_len - int((prompt_ids != vocab.pad_id).sum(-1).max())
    if room < 1:
        raise ValueError(f"the prompt fills all {model.config.max_len} positions of the model: "
                         f"shorten the question")
    steps = room if max_new_tokens is None else min(int(max_new_tokens), room)
    if steps < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    eot, pad = vocab.special_id("eot"), vocab.pad_id
    bias = _allowed_bias(vocab, device)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    batch = prompt_ids.shape[0]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    ids, new, cache, passes, taken = prompt_ids, prompt_ids, None, 0, 0
    seen, generated = [{} for _ in range(batch)], [[] for _ in range(batch)]
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        for _ in range(steps):
            if use_cache:
                out = model(new, features=features if cache is None else None,
                            past_key_values=cache, use_cache=True)
                cache = out.past_key_values
            else:
                out = model(ids, features=features)
            passes += 1
            logits = out.logits[:, -1].float() + bias                                 # (B, V)
            if no_repeat_ngram:
                logits = _ban_repeats(logits, seen, generated, no_repeat_ngram)
            nxt = _choose(logits, decoding, top_k, temperature, generator)              # (B,)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            if no_repeat_ngram:
                _remember(seen, generated, nxt.tolist(), no_repeat_ngram)
            ids, new, taken = torch.cat([ids, nxt[:, None]], 1), nxt[:, None], taken + 1
            if stop_at_eot:
                done |= nxt == eot
                if bool(done.all()):
                    break
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    tokens, finished = [], []
    for row in ids[:, prompt_ids.shape[1]:].tolist():
        end = row.index(eot) if eot in row else len(row)
        finished.append(end < len(row))
        tokens.append([t for t in row[:end] if t != pad])
    texts = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]
    return Decoded(texts, tokens, finished, passes, taken, seconds)


def decode_batches(model, image_ids: Tensor, questions: list[str], *, builder: SequenceBuilder,
                   batch_size: int = 128, **kw) -> Decoded:
    """`decode` over (image ids (B, N), questions) in batches of `batch_size`, merged.

    features: None or {name: (B, N_f, D_f)}, one row per image (a sequence-level MoE's encoder
    features), cut into the same batches. Top-k draws use seed + the batch index, so they do not
    depend on the other batches."""
    if len(questions) == 0:
        raise ValueError("no images to caption / answer about")
    parts = []
    seed = kw.pop("seed", 0)
    features = kw.pop("features", None)
    if features is not None and any(len(f) != len(questions) for f in features.values()):
        raise ValueError(f"features need one row per image ({len(questions)}), got "
                         f"{ {k: tuple(f.shape) for k, f in features.items()} }")
    for i, start in enumerate(range(0, len(questions), batch_size)):
        prompt = builder.mmu_prompt_batch(image_ids[start:start + batch_size],
                                          questions[start:start + batch_size])
        feats = None if features is None else \
            {k: f[start:start + batch_size] for k, f in features.items()}
        parts.append(decode(model, prompt, tokenizer=builder.tokenizer, seed=seed + i,
                            features=feats, **kw))
    return Decoded([t for p in parts for t in p.texts], [t for p in parts for t in p.tokens],
                   [f for p in parts for f in p.finished], sum(p.forward_passes for p in parts),
                   max(p.new_tokens for p in parts), sum(p.seconds for p in parts))


def caption(model, images: Tensor | None = None, *, codes: Tensor | None = None,
            image_tokenizer=None, builder: SequenceBuilder, **decode_kw) -> list[str]:
    """A caption per image (images float (B, 3, H, W) in [-1, 1] or uint8, or codes=)."""
    image_ids = image_token_ids(model.vocab, builder, images, codes, image_tokenizer)
    return decode_batches(model, image_ids, [CAPTION_QUESTION] * len(image_ids),
                          builder=builder, **decode_kw).texts


def answer(model, images: Tensor | None, questions, *, codes: Tensor | None = None,
           image_tokenizer=None, builder: SequenceBuilder, **decode_kw) -> list[str]:
    """An answer per (image, question); questions are non-empty strings, one per image."""
    image_ids = image_token_ids(model.vocab, builder, images, codes, image_tokenizer)
    questions = check_questions(questions, len(image_ids))
    return decode_batches(model, image_ids, questions, builder=builder, **decode_kw).texts


def time_decoding(model, image_ids: Tensor, builder: SequenceBuilder, new_tokens: int = 32,
                  question: str = CAPTION_QUESTION, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per generated token (the whole batch's step) with and without the KV cache,
    best of `repeats`, for exactly `new_tokens` tokens (no early stop)."""
    prompt = builder.mmu_prompt_batch(image_ids, [question] * len(image_ids))
    result = {"batch": len(image_ids), "new_tokens": new_tokens, "prompt_len": prompt.shape[1]}
    for name, use_cache in (("cached", True), ("uncached", False)):
        best = min(decode(model, prompt, tokenizer=builder.tokenizer, max_new_tokens=new_tokens,
                          use_cache=use_cache, stop_at_eot=False).seconds
                   for _ in range(repeats))
        result[f"ms_per_token_{name}"] = 1000 * best / new_tokens
    result["speedup"] = result["ms_per_token_uncached"] / result["ms_per_token_cached"]
    return result
