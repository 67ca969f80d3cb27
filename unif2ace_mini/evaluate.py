"""Basic metrics of the unified model on a SynthFaces split, always beside baselines (DESIGN §9).

Understanding
    VQA exact match        answers compared after lower-casing and stripping spaces / a final
                           period; overall and per question type.  Baseline: the majority train
                           answer of the same question (else of its type).
    caption P / R / F1     generated captions parsed back to {group: value} (parse_caption).
                           precision = correct statements / statements;
                           recall    = correct statements / the image's true attributes that a
                                       caption can state at all (values with a phrase).
                           Micro-averaged over images. Baselines: "frequent attributes" (always
                           state the k groups train captions state most often, each with its most
                           frequent value; k = the mean number stated) and "reference" (the
                           dataset's own caption, cut to the model's text budget as in training:
                           precision 1, and the recall a perfect imitator of the captions gets).
Generation
    attribute accuracy     the oracle reads the generated face; only the attributes its caption
                           states are scored (micro-averaged). Baselines: unconditional (empty
                           prompt), shuffled prompt (another image's caption, scored against this
                           caption), and the real images themselves (the oracle's ceiling).
    held-out pairs         on the "compositional" split only: each image has one of the attribute
                           pairs never seen together in train (TAXONOMY.compositional_pairs);
                           the share of those pairs, stated in full by the prompt, whose two
                           values the oracle finds together in the generated face.
    FD-oracle              Fréchet distance between Gaussian fits of the oracle's penultimate
                           features of generated and real images (not FID: another network).
                           With n ~ 128 and 256 features it is biased upwards; compare only at
                           equal n, next to the real-vs-real floor (n train vs n split images).
    image-token bits       -log2 p(true image token | caption) with the whole image masked, for
                           the true, a shuffled and the empty caption: does the model use its
                           prompt at all (no sampling involved)?
The evaluation takes the first `n` images of the split (default 128: about a minute or two of CPU
for everything at the quick size) and all their VQA pairs.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from .data.groups import TAXONOMY
from .data.taxonomy import count_answer
from .data.text import parse_caption

PARTS = ("vqa", "caption", "generation")


# --- understanding metrics ------------------------------------------------------------------
def normalize_answer(text: str) -> str:
    return " ".join(str(text).lower().strip().rstrip(".").split())


def exact_match(predictions: Sequence[str], answers: Sequence[str]) -> float:
    if len(predictions) != len(answers) or not answers:
        raise ValueError(f"need equally many predictions and answers (> 0), got "
                         f"{len(predictions)} and {len(answers)}")
    return float(np.mean([normalize_answer(p) == normalize_answer(a)
                          for p, a in zip(predictions, answers)]))


def vqa_scores(predictions: Sequence[str], answers: Sequence[str],
               types: Sequence[str]) -> dict:
    """{"accuracy": exact match, "per_type": {type: exact match}, "n": questions}."""
    if len(types) != len(answers):
        raise ValueError(f"{len(types)} question types for {len(answers)} answers")
    by_type = defaultdict(list)
    for p, a, t in zip(predictions, answers, types):
        by_type[t].append((p, a))
    return {"accuracy": exact_match(predictions, answers), "n": len(answers),
            "per_type": {t: exact_match(*zip(*pairs)) for t, pairs in sorted(by_type.items())}}


def answer_from_attributes(qa: Mapping[str, str], attrs: Mapping[str, str],
                           taxonomy=TAXONOMY) -> str:
    """The answer to a SynthFaces VQA pair (data.text.make_vqa) that a reader who sees `attrs`
    gives: the true answer when attrs are the face's own. Scores an attribute classifier (the
    oracle) on the same questions as the model (benchmarks/vqa_ceiling.py)."""
    g = taxonomy.group(qa["group"])
    value = attrs[g.name]
    if qa["type"] == "is_there":
        return "no" if value == g.absent else "yes"
    if qa["type"] == "counting":
        return count_answer(g.name, value)
    if qa["type"] == "yes_no" and qa["question"] != g.question:     # "Does the person have x?"
        return "yes" if parse_caption(qa["question"]).get(g.name) == value else "no"
    return value


def majority_answers(records: Sequence[Mapping]) -> dict:
    """The most frequent answer per question, per question type, and overall (from train)."""
    by_q, by_t, overall = defaultdict(Counter), defaultdict(Counter), Counter()
    for r in records:
        for qa in r["vqa"]:
            a = normalize_answer(qa["answer"])
            by_q[qa["question"]][a] += 1
            by_t[qa["type"]][a] += 1
            overall[a] += 1
    if not overall:
        raise ValueError("no VQA pairs to take majority answers from")
    top = lambda c: c.most_common(1)[0][0]                                   # noqa: E731
    return {"question": {q: top(c) for q, c in by_q.items()},
            "type": {t: top(c) for t, c in by_t.items()}, "overall": top(overall)}


def majority_predict(table: dict, questions: Sequence[str], types: Sequence[str]) -> list[str]:
    return [table["question"].get(q, table["type"].get(t, table["overall"]))
            for q, t in zip(questions, types)]


def sayable(attributes: Mapping[str, str], taxonomy=TAXONOMY) -> dict[str, str]:
    """The attributes a caption can state (values with at least one caption phrase)."""
    return {g: v for g, v in attributes.items() if taxonomy.group(g).phrases.get(v)}


def attribute_prf(stated: Sequence[Mapping[str, str]], truth: Sequence[Mapping[str, str]]) -> dict:
    """Micro precision / recall / F1 of stated {group: value} against true {group: value}."""
    if len(stated) != len(truth) or not truth:
        raise ValueError(f"need equally many stated and true attribute sets (> 0), got "
                         f"{len(stated)} and {len(truth)}")
    correct = sum(sum(true.get(g) == v for g, v in s.items()) for s, true in zip(stated, truth))
    n_stated, n_true = sum(len(s) for s in stated), sum(len(t) for t in truth)
    p = correct / n_stated if n_stated else 0.0
    r = correct / n_true if n_true else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "mean_stated": n_stated / len(stated)}


def frequent_attributes(captions: Sequence[str]) -> dict[str, str]:
    """The caption baseline: the k groups captions state most often, each with its most
    frequent value, k = the mean number of attributes a caption states."""
    parsed = [parse_caption(c) for c in captions]
    if not parsed:
        raise ValueError("no captions to take frequent attributes from")
    counts = Counter(g for p in parsed for g in p)
    k = round(np.mean([len(p) for p in parsed]))
    values = {g: Counter(p[g] for p in parsed if g in p).most_common(1)[0][0]
              for g, _ in counts.most_common(k)}
    return values


# --- generation metrics ---------------------------------------------------------------------
def attribute_accuracy(predicted: Sequence[Mapping[str, str]],
                       stated: Sequence[Mapping[str, str]]) -> dict:
    """Share of the stated attributes the oracle finds in the image (micro over all statements)."""
    if len(predicted) != len(stated):
        raise ValueError(f"{len(predicted)} predictions for {len(stated)} prompts")
    hits = [seen.get(g) == v for seen, s in zip(predicted, stated) for g, v in s.items()]
    return {"accuracy": float(np.mean(hits)) if hits else float("nan"), "n_scored": len(hits)}


def stated_held_out_pairs(records: Sequence[Mapping], stated: Sequence[Mapping[str, str]],
                          taxonomy=TAXONOMY) -> list[list[dict[str, str]]]:
    """Per prompt, the compositional pairs (never together in train) its image has and its
    prompt states both halves of: [] on every split but "compositional"."""
    out = []
    for record, says in zip(records, stated):
        pairs = (taxonomy.compositional_pairs[i]
                 for i in taxonomy.held_out_pairs(record["attributes"]))
        out.append([dict(p) for p in pairs if all(says.get(g) == v for g, v in p)])
    return out


def pair_accuracy(predicted: Sequence[Mapping[str, str]],
                  pairs: Sequence[Sequence[Mapping[str, str]]]) -> dict:
    """Share of the stated held-out pairs whose two values the oracle finds together."""
    if len(predicted) != len(pairs):
        raise ValueError(f"{len(predicted)} predictions for {len(pairs)} pair lists")
    hits = [all(seen.get(g) == v for g, v in pair.items())
            for seen, image_pairs in zip(predicted, pairs) for pair in image_pairs]
    return {"accuracy": float(np.mean(hits)) if hits else float("nan"), "n_scored": len(hits)}


def gaussian_frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """|mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^1/2 C2 C1^1/2)^1/2), the Fréchet (2-Wasserstein)
    distance of two Gaussians; eigen-decompositions in float64 (no scipy needed)."""
    mu1, mu2, cov1, cov2 = (torch.as_tensor(x, dtype=torch.float64) for x in (mu1, mu2, cov1, cov2))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shape mismatch: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, cov "
                         f"{tuple(cov1.shape)} / {tuple(cov2.shape)}")
    w, v = torch.linalg.eigh(cov1)
    root1 = (v * w.clamp(min=0).sqrt()) @ v.T                                # C1^1/2
    middle = root1 @ cov2 @ root1
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross
    return max(float(fd), 0.0)


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """FD between Gaussian fits (mean, unbiased covariance) of two feature sets (N, D)."""
    for f in (features_a, features_b):
        if f.dim() != 2 or f.shape[0] < 2:
            raise ValueError(f"features must be (N >= 2, D), got {tuple(f.shape)}")
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"feature sizes differ: {features_a.shape[1]} vs {features_b.shape[1]}")
    a, b = features_a.double(), features_b.double()
    return gaussian_frechet_distance(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


@torch.no_grad()
def oracle_features(oracle, images: Tensor, batch_size: int = 256) -> Tensor:
    oracle.eval()
    return torch.cat([oracle.features(images[i:i + batch_size])
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def image_token_bits(model, builder, captions: Sequence[str | None], image_ids: Tensor,
                     batch_size: int = 64) -> float:
    """Bits per image token of -log p_theta(x0_i | caption) with every image token masked: how
    much a caption tells the model about the image, without sampling. True captions should
    beat shuffled or empty ones; if not, the model ignores its prompt."""
    import torch.nn.functional as F

    vocab, cols = model.vocab, builder.t2i_image_columns
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for start in range(0, len(captions), batch_size):
        ids = image_ids[start:start + batch_size].to(device)                 # (b, N) targets
        seq = builder.t2i_batch(list(captions[start:start + batch_size])).to(device)
        logits = model(seq).logits[:, cols].float()                          # (b, N, V)
        logits[..., vocab.mask_id] = float("-inf")
        total += float(F.cross_entropy(logits.flatten(0, 1), ids.flatten(), reduction="sum"))
        count += ids.numel()
    return total / count / float(np.log(2))


# --- the evaluation run ---------------------------------------------------------------------
def derangement(n: int, seed: int) -> np.ndarray:
    """A seeded permutation with no fixed point (n >= 2): each image gets another's prompt."""
    if n < 2:
        raise ValueError("a shuffled-prompt baseline needs at least 2 images")
    perm = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[perm] = np.roll(perm, -1)
    return out


@dataclass
class EvalContext:
    """What every part of the evaluation reads: the pipeline, the split's first n images."""
    pipe: object                   # generate.Pipeline
    path: object                   # the SynthFaces folder
    split: str
    records: list                  # the split's first n records
    image_ids: Tensor              # (n, N) their image token ids
    train: list                    # train records (for the baselines)
    features: dict | None = None   # (n, N_f, D_f) encoder features, for a sequence-level MoE

    def budget(self, caption: str) -> str:
        """A caption as the model reads it: cut to the text budget at a sentence end."""
        from .model.sequences import truncate_caption

        b = self.pipe.builder
        return truncate_caption(b.tokenizer, caption, b.text_budget)[1]


def eval_features(profile, model_config, split: str, n: int, data_path=None) -> dict | None:
    """The first n images' encoder features of `split` when the model reads any (a sequence-level
    MoE with CLIP / face experts; encoders.extract_features, cached), else None."""
    from .model.moe_config import feature_kinds

    kinds = feature_kinds(model_config)
    if not kinds:
        return None
    from .encoders import extract_features

    features = extract_features(profile, split, data_path=data_path)
    return {k: features[k][:n] for k in kinds}


def evaluate_vqa(ctx: EvalContext, batch_size: int = 256) -> dict:
    from .understand import decode_batches

    qa = [(i, q) for i, r in enumerate(ctx.records) for q in r["vqa"]]
    questions, answers = [q["question"] for _, q in qa], [q["answer"] for _, q in qa]
    types = [q["type"] for _, q in qa]
    rows = torch.tensor([i for i, _ in qa])
    features = None if ctx.features is None else \
        {k: f.index_select(0, rows) for k, f in ctx.features.items()}
    out = decode_batches(ctx.pipe.model, ctx.image_ids[rows], questions, features=features,
                         builder=ctx.pipe.builder, batch_size=batch_size, max_new_tokens=12)
    table = majority_answers(ctx.train)
    return {"n_questions": len(qa), "model": vqa_scores(out.texts, answers, types),
            "majority": vqa_scores(majority_predict(table, questions, types), answers, types),
            "unfinished": int(sum(not f for f in out.finished)),
            "answers_per_second": len(qa) / out.seconds,
            "examples": [{"question": q, "answer": a, "predicted": p}
                         for q, a, p in list(zip(questions, answers, out.texts))[:5]]}


def evaluate_captions(ctx: EvalContext, batch_size: int = 64, no_repeat_ngram: int = 0) -> dict:
    from .model.sequences import CAPTION_QUESTION
    from .understand import decode_batches

    n = len(ctx.records)
    out = decode_batches(ctx.pipe.model, ctx.image_ids, [CAPTION_QUESTION] * n,
                         features=ctx.features, builder=ctx.pipe.builder, batch_size=batch_size,
                         no_repeat_ngram=no_repeat_ngram)
    truth = [sayable(r["attributes"]) for r in ctx.records]
    references = [ctx.budget(r["caption"]) for r in ctx.records]
    baseline = frequent_attributes([ctx.budget(r["caption"]) for r in ctx.train])
    return {"n_images": n, "no_repeat_ngram": no_repeat_ngram,
            "model": attribute_prf([parse_caption(t) for t in out.texts], truth),
            "frequent_attributes": attribute_prf([baseline] * n, truth),
            "reference": attribute_prf([parse_caption(c) for c in references], truth),
            "unfinished": int(sum(not f for f in out.finished)),
            "examples": [{"generated": t, "reference": c}
                         for t, c in list(zip(out.texts, references))[:3]]}


def evaluate_generation(ctx: EvalContext, oracle, steps: int, guidance: float, sampler: str,
                        seed: int = 0, batch_size: int = 64, unconditional: bool = True) -> dict:
    """Oracle attribute accuracy and FD-oracle of faces generated from the split's captions,
    beside a shuffled-prompt generator and the real faces. unconditional=False skips the
    empty-prompt generator and the image-token bits (a third of the sampling work), for callers
    that compare models by the prompted numbers only."""
    from .data.dataset import load_tensors, to_unit_range
    from .generate import generate

    model, builder, n = ctx.pipe.model, ctx.pipe.builder, len(ctx.records)
    captions = [r["caption"] for r in ctx.records]
    mixed = [captions[j] for j in derangement(n, seed)]             # another image's caption
    kw = dict(image_tokenizer=ctx.pipe.image_tokenizer, builder=builder, steps=steps,
              sampler=sampler, batch_size=batch_size)
    tick = time.perf_counter()
    cond = generate(model, captions, guidance=guidance, seed=seed, **kw)
    images_per_second = n / (time.perf_counter() - tick)
    stated = [parse_caption(c) for c in cond.captions]               # what each prompt asked
    generated = {"model": cond.images,
                 "shuffled_prompt": generate(model, mixed, guidance=guidance, seed=seed + 1,
                                             **kw).images}
    if unconditional:
        generated["unconditional"] = generate(model, [None] * n, guidance=0.0, seed=seed + 2,
                                              **kw).images
    real = to_unit_range(load_tensors(ctx.path, ctx.split)["images"][:n])    # (n, 3, H, W)
    real_train = to_unit_range(load_tensors(ctx.path, "train")["images"][:n])
    real_features = oracle_features(oracle, real)
    pairs = stated_held_out_pairs(ctx.records, stated)
    acc, pair_acc, fd = {}, {}, {}
    for name, images in [*generated.items(), ("real_images", real)]:
        seen = oracle.predict(images)
        acc[name] = attribute_accuracy(seen, stated)["accuracy"]
        pair_acc[name] = pair_accuracy(seen, pairs)["accuracy"]
        if name != "real_images":
            fd[name] = frechet_distance(oracle_features(oracle, images), real_features)
    fd["real_train_vs_split"] = frechet_distance(oracle_features(oracle, real_train),
                                                 real_features)
    out = {"n_images": n, "n_attributes_scored": sum(map(len, stated)),
           "attribute_accuracy": acc, "fd_oracle": fd,
           "n_held_out_pairs": sum(map(len, pairs)),
           "network_calls_per_image": cond.calls_per_sample,
           "images_per_second": images_per_second}
    if out["n_held_out_pairs"]:
        out["held_out_pair_accuracy"] = pair_acc
    if unconditional:
        out["image_token_bits"] = {
            name: image_token_bits(model, builder, caps, ctx.image_ids) for name, caps in
            (("true_caption", captions), ("shuffled_caption", mixed),
             ("empty_caption", [None] * n))}
    return out


def evaluate(profile="quick", *, pipeline=None, data_path=None, oracle=None,
             split: str = "validation", n: int = 128,
             parts: Sequence[str] = ("vqa", "caption", "generation"), steps: int | None = None,
             guidance: float | None = None, sampler: str = "maskgit", seed: int = 0,
             batch_size: int = 64, unconditional: bool = True, progress: bool = True,
             caption_no_repeat_ngram: int = 0) -> dict:
    """Metrics and baselines on the first `n` images of `split`: a JSON-able dict.

    pipeline (generate.Pipeline), data_path (a SynthFaces folder) and oracle default to the
    profile's cached artifacts (trained if missing). unconditional=False leaves out the
    unconditional generator and the image-token bits (evaluate_generation), which format_table
    shows but a comparison of models by prompted generation does not need.
    caption_no_repeat_ngram n >= 2 decodes captions greedily without repeating any n tokens
    (understand.decode's no_repeat_ngram; 0, the default: plain greedy)."""
    from tqdm.auto import tqdm

    from . import profiles, runtime
    from .data.build import build_or_load
    from .data.dataset import load_split
    from .data.oracle import load_or_train_oracle
    from .generate import DEFAULT_GUIDANCE, DEFAULT_STEPS, _check_settings, load_pipeline
    from .training.data import load_or_encode_codes
    from .understand import check_no_repeat_ngram

    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)}; choose from {PARTS}")
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    steps = DEFAULT_STEPS if steps is None else steps
    guidance = DEFAULT_GUIDANCE if guidance is None else guidance
    _check_settings(steps, guidance, sampler, 1.0)                   # fail before any work
    check_no_repeat_ngram(caption_no_repeat_ngram)
    profile = profiles.get_profile(profile)
    pipe = pipeline or load_pipeline(profile, progress=progress)
    path = data_path or build_or_load(profile.data)
    records = load_split(path, split)[:n]
    codes = load_or_encode_codes(pipe.image_tokenizer, path, split)[:len(records)]
    ctx = EvalContext(pipe, path, split, records, pipe.model.vocab.image_ids(codes),
                      load_split(path, "train"),
                      eval_features(profile, pipe.model.config, split, len(records), path))
    results = {"config": {"profile": profile.name, "split": split, "n_images": len(records),
                          "steps": steps, "guidance": guidance, "sampler": sampler,
                          "seed": seed},
               "seconds": {}}
    runs = {"vqa": lambda: evaluate_vqa(ctx, 4 * batch_size),
            "caption": lambda: evaluate_captions(ctx, batch_size, caption_no_repeat_ngram),
            "generation": lambda: evaluate_generation(
                ctx, oracle or load_or_train_oracle(profile)[0], steps, guidance, sampler,
                seed, batch_size, unconditional)}
    chosen = [p for p in PARTS if p in parts]
    bar = tqdm(chosen, desc="evaluate", disable=runtime.progress_disabled() or not progress)
    for part in bar:
        bar.set_postfix_str(part)
        clock = time.perf_counter()
        results[part] = runs[part]()
        results["seconds"][part] = time.perf_counter() - clock
    return results


def format_table(results: dict, digits: int = 3) -> str:
    """Markdown tables of an `evaluate` result (each metric beside its baselines)."""
    f = lambda x: "n/a" if x is None or x != x else f"{x:.{digits}f}"          # noqa: E731
    lines = []

    def table(title, columns, rows):
        lines.extend([f"**{title}**", "", "| | " + " | ".join(columns) + " |",
                      "|---|" + "---|" * len(columns)])
        lines.extend(f"| {name} | " + " | ".join(f(v) for v in values) + " |"
                     for name, values in rows)
        lines.append("")

    if "vqa" in results:
        v = results["vqa"]
        types = sorted(v["model"]["per_type"])
        table(f"VQA exact match ({v['n_questions']} questions)", ["model", "majority answer"],
              [("overall", [v["model"]["accuracy"], v["majority"]["accuracy"]])]
              + [(t, [v["model"]["per_type"][t], v["majority"]["per_type"].get(t)])
                 for t in types])
    if "caption" in results:
        c = results["caption"]
        systems = ["model", "frequent_attributes", "reference"]
        blocked = c.get("no_repeat_ngram", 0)
        table(f"Caption attributes ({c['n_images']} images"
              + (f", no repeated {blocked}-grams" if blocked else "") + ")",
              ["model", "frequent attributes", "reference captions"],
              [(m, [c[s][m] for s in systems])
               for m in ("precision", "recall", "f1", "mean_stated")])
    if "generation" in results:
        g, cfg = results["generation"], results.get("config", {})
        systems = ["model", "unconditional", "shuffled_prompt", "real_images"]
        fd, bits = g["fd_oracle"], g.get("image_token_bits", {})    # n/a: unconditional=False
        rows = [("attribute accuracy", [g["attribute_accuracy"].get(s) for s in systems])]
        if "held_out_pair_accuracy" in g:                                # compositional split
            rows.append((f"held-out pairs, both found ({g['n_held_out_pairs']} pairs)",
                         [g["held_out_pair_accuracy"].get(s) for s in systems]))
        rows += [("image-token bits, all masked",
                  [bits.get(s) for s in ("true_caption", "empty_caption", "shuffled_caption")]
                  + [None]),
                 ("FD-oracle, lower is better (real: train vs split)",
                  [fd["model"], fd.get("unconditional"), fd["shuffled_prompt"],
                   fd["real_train_vs_split"]])]
        table(f"Generation ({g['n_images']} images, {cfg.get('sampler')} {cfg.get('steps')} "
              f"steps, guidance {cfg.get('guidance')})",
              ["model", "unconditional", "shuffled prompt", "real images"], rows)
    return "\n".join(lines)
