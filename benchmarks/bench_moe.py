"""Training throughput of the UniFace transformer: dense FFN vs grouped token MoE (issue 6 target).

    .venv/bin/python benchmarks/bench_moe.py                 # quick size, ~2 min on 2 busy cores
    .venv/bin/python benchmarks/bench_moe.py --all-slots     # + sequence MoE, both MoEs (~4 min)

The real model (unif2ace_mini.model.transformer.UniFace) at the quick size: d=128, 4 layers,
d_ff=512, a quick-profile vocabulary (1024 text ids + 7 specials + 512 image codes + MASK),
batch 32 x 112 positions, half understanding rows, half generation rows, padded as the
training data is (t2i rows on the left, mmu rows on the right). One step is the training
loop's: training.loop.joint_loss (D3Diff on the t2i rows' image tokens, cross-entropy on the
mmu answers, logits only where a loss reads them, + the balance losses), backward, gradient
clipping and AdamW. The sequence MoE variants get random CLIP / face features.
Dense and MoE have the same active parameters per token (moe_config.py: expert_d_ff =
d_ff / (top_k + n_shared)).

The CPU is shared with other processes, so the variants run interleaved (dense, MoE, MoE, dense,
...) and the table reports medians over repeats; the ratio is the median of per-repeat ratios.
Throughput is wall-clock; the CPU-time columns (process time, both threads) are a second view
that other processes disturb less.
Writes benchmarks/results/bench_moe.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from unif2ace_mini import runtime
from unif2ace_mini.model.config import ModelConfig
from unif2ace_mini.model.moe_config import SequenceMoEConfig, TokenMoEConfig
from unif2ace_mini.model.transformer import UniFace
from unif2ace_mini.tokenizers.vocab import Vocabulary
from unif2ace_mini.training.config import TrainConfig
from unif2ace_mini.training.loop import joint_loss, step_generator

from training_step import training_step

RESULTS = Path(__file__).parent / "results" / "bench_moe.json"
TARGET = 0.7


def make_batch(vocab: Vocabulary, batch: int, length: int, image_tokens: int,
               generator: torch.Generator) -> tuple[dict, dict]:
    """A training batch in the layout of model/sequences.py, random token ids:
    t2i rows  [pads] <t2i> <sot> caption <eot> <soi> image <eoi>   (labels: the image tokens)
    mmu rows  <mmu> <soi> image <eoi> <sot> question answer <eot> [pads]   (labels: the answer)
    plus quick-sized CLIP (1 + 8x8 tokens x 128) and face (1 x 128) features."""
    sid, pad = vocab.special_id, vocab.pad_id

    def rand_text(n: int) -> list[int]:
        return torch.randint(0, vocab.n_text, (n,), generator=generator).tolist()

    ids, labels, task = [], [], []
    for b in range(batch):
        image = (torch.randint(0, vocab.n_image_codes, (image_tokens,), generator=generator)
                 + vocab.image_offset).tolist()
        n_text = int(torch.randint(length - image_tokens - 20, length - image_tokens - 5, (1,),
                                   generator=generator))
        if b % 2:                                                     # t2i, left-padded
            row = [sid("t2i"), sid("sot")] + rand_text(n_text) + [sid("eot"), sid("soi")] \
                + image + [sid("eoi")]
            row = [pad] * (length - len(row)) + row
            label = [-100] * length
            label[length - 1 - image_tokens:length - 1] = image
        else:                                                         # mmu, right-padded
            n_answer = n_text // 3
            prompt = [sid("mmu"), sid("soi")] + image + [sid("eoi"), sid("sot")] \
                + rand_text(n_text - n_answer)
            target = rand_text(n_answer) + [sid("eot")]
            row = prompt + target + [pad] * (length - len(prompt) - len(target))
            label = [-100] * length
            label[len(prompt) - 1:len(prompt) - 1 + len(target)] = target
        ids.append(row)
        labels.append(label)
        task.append(b % 2)
    clip = torch.randn(batch, 65, 128, generator=generator)         # quick CLIP: 1 + 8x8 tokens
    face = F.normalize(torch.randn(batch, 1, 128, generator=generator), dim=-1)
    return ({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
             "task": torch.tensor(task)}, {"clip": clip, "face": face})


class WithFeatures(torch.nn.Module):
    """The model with fixed features, called as joint_loss calls the model."""

    def __init__(self, model: UniFace, features: dict):
        super().__init__()
        self.model, self.vocab, self.features = model, model.vocab, features

    def forward(self, input_ids, logits_mask=None):
        return self.model(input_ids, features=self.features, logits_mask=logits_mask)


def active_parameters(model: UniFace) -> int:
    """Parameters one token passes through: experts a token does not use are not counted."""
    total = model.num_parameters()
    for block in model.blocks:
        moe = block.ffn
        if hasattr(moe, "w_in"):
            per_expert = moe.w_in[0].numel() + moe.w_out[0].numel()
            total -= per_expert * (moe.w_in.shape[0] - (moe.s + moe.k))       # idle experts
            total -= moe.router.weight.numel() // 2                            # other group's
    return total


def build(variant: str, vocab: Vocabulary) -> UniFace:
    ffn = "token_moe" if variant in ("token_moe", "both") else "dense"
    seq = "sequence_moe" if variant in ("sequence_moe", "both") else "identity"
    config = ModelConfig(d_model=128, n_layers=4, n_heads=4, d_ff=512, max_len=128, ffn=ffn,
                         sequence=seq, moe=TokenMoEConfig() if ffn != "dense" else None,
                         seq_moe=SequenceMoEConfig() if seq != "identity" else None)
    torch.manual_seed(0)
    return UniFace(config.for_vocab(vocab), vocab)


def make_step(model: UniFace, batch: dict, features: dict):
    """One training step as training/loop.py runs it: joint_loss (D3Diff on t2i rows, CE on mmu
    answers, + balance losses), backward, gradient clipping, AdamW on its parameter groups."""
    config, wrapped = TrainConfig(), WithFeatures(model, features)
    return training_step(
        model, lambda: joint_loss(wrapped, batch, config, step_generator(config.seed, 0))[0], config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--all-slots", action="store_true",
                        help="also time the sequence MoE alone and both MoEs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    vocab = Vocabulary(n_text=1024, n_image_codes=512)
    batch, features = make_batch(vocab, args.batch, args.length, 64,
                                 torch.Generator().manual_seed(0))
    real_tokens = int((batch["input_ids"] != vocab.pad_id).sum())
    variants = ["dense", "token_moe"] + (["sequence_moe", "both"] if args.all_slots else [])
    models = {v: build(v, vocab) for v in variants}
    steps = {v: make_step(m, batch, features) for v, m in models.items()}
    for step in steps.values():                                        # warm-up (allocator, JIT)
        step()

    seconds = {v: [] for v in variants}                                 # wall clock per step
    cpu_seconds = {v: [] for v in variants}                             # CPU time per step
    for r in range(args.repeats):
        order = variants if r % 2 == 0 else variants[::-1]              # alternate who goes first
        for v in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                steps[v]()
            seconds[v].append((time.perf_counter() - start) / args.steps)
            cpu_seconds[v].append((time.process_time() - start_cpu) / args.steps)

    rows = []
    for v in variants:
        per_repeat = [d / m for d, m in zip(seconds["dense"], seconds[v])]
        per_repeat_cpu = [d / m for d, m in zip(cpu_seconds["dense"], cpu_seconds[v])]
        rows.append({"variant": v, "params": models[v].num_parameters(),
                     "active_params": active_parameters(models[v]),
                     "step_ms_median": round(1e3 * statistics.median(seconds[v]), 1),
                     "tokens_per_s": round(real_tokens / statistics.median(seconds[v])),
                     "ratio_vs_dense": round(statistics.median(per_repeat), 3),
                     "cpu_ms_median": round(1e3 * statistics.median(cpu_seconds[v]), 1),
                     "cpu_ratio_vs_dense": round(statistics.median(per_repeat_cpu), 3)})
    moe_ratio = rows[1]["ratio_vs_dense"]
    print(f"threads={args.threads} batch={args.batch}x{args.length} ({real_tokens} real tokens), "
          f"{args.repeats} interleaved repeats x {args.steps} steps")
    print(f"{'variant':<14}{'params':>10}{'active':>10}{'ms/step':>10}{'tokens/s':>10}"
          f"{'x dense':>9}{'cpu ms':>9}{'cpu x':>7}")
    for row in rows:
        print(f"{row['variant']:<14}{row['params']:>10}{row['active_params']:>10}"
              f"{row['step_ms_median']:>10}{row['tokens_per_s']:>10}{row['ratio_vs_dense']:>9}"
              f"{row['cpu_ms_median']:>9}{row['cpu_ratio_vs_dense']:>7}")
    print(f"token MoE / dense throughput = {moe_ratio} (target >= {TARGET}): "
          f"{'met' if moe_ratio >= TARGET else 'NOT met'}")

    result = {"benchmark": "bench_moe", "threads": args.threads, "batch": args.batch,
              "length": args.length, "real_tokens": real_tokens, "repeats": args.repeats,
              "steps_per_repeat": args.steps, "torch": torch.__version__,
              "machine": runtime.machine_name(), "target_ratio": TARGET,
              "token_moe_ratio": moe_ratio, "target_met": moe_ratio >= TARGET, "rows": rows,
              "seconds_per_step": {v: [round(s, 5) for s in seconds[v]] for v in variants},
              "cpu_seconds_per_step": {v: [round(s, 5) for s in cpu_seconds[v]]
                                       for v in variants}}
    runtime.atomic_write_bytes(args.out, (json.dumps(result, indent=1) + "\n").encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
