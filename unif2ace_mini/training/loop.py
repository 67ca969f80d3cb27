"""Joint training of the unified model: D3Diff on t2i rows + next-token CE on mmu rows.

One optimizer step:
    batch       n_t2i t2i rows and n_mmu mmu rows (data.BatchStream, a pure function of the step)
    t2i rows    t ~ U(0,1) per row (stratified; u ** t2i_time_power if set, see TrainConfig),
                x_t = forward_mask(x0 = the image tokens)
    forward     one pass over the mixed batch; the omni-attention mask follows from the ids;
                a sequence-level MoE also gets the batch's encoder features (data.py)
    loss        loss_t2i * D3Diff(image logits) + loss_mmu * CE(answer logits)
                + loss_aux * the MoE balance losses; the CE averages within each answer, then
                over rows (`text_loss`), and logits are computed only where a loss reads them
    update      AdamW, gradient clipping, warmup + cosine lr, optional EMA

The noise of step s is drawn from a generator seeded with (seed, step, process), dropout from
torch's global RNG (saved in checkpoints): a resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .. import runtime
from ..diffusion import d3diff_loss, forward_mask, get_schedule, sample_t
from ..model.config import ModelConfig
from ..model.sequences import IGNORE
from ..model.tasks import MMU, T2I
from ..model.transformer import UniFace
from .config import TrainConfig
from .data import BatchStream, TrainingData, with_model_features
from .state import (CHECKPOINT_NAME, EMA, DeferredInterrupt, WarmupCosine, load_checkpoint,
                    optimizer_from_tensors, prefixed, restore_rng, save_checkpoint)

LOG_NAME = "log.jsonl"
SUMMARY_NAME = "summary.json"


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """The generator of step `step`'s masking noise: independent of every earlier step."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def joint_loss(model, batch: dict[str, Tensor], config: TrainConfig, generator: torch.Generator,
               device=None) -> tuple[Tensor, dict[str, float]]:
    """(loss, parts) of one mixed batch. t2i rows are noised here, on the CPU, with `generator`."""
    vocab = model.vocab if hasattr(model, "vocab") else model.module.vocab
    schedule = get_schedule(config.schedule)
    input_ids, labels, task = batch["input_ids"].clone(), batch["labels"], batch["task"]
    is_t2i = task == T2I
    image = vocab.is_image(labels) & is_t2i[:, None]                          # (B, L) D3Diff
    text = (labels != IGNORE) & (task == MMU)[:, None]                        # (B, L) next token
    n_t2i = int(is_t2i.sum())
    if n_t2i:
        x0 = labels[image].view(n_t2i, -1)                                    # (n_t2i, N)
        t = sample_t(n_t2i, generator, power=config.t2i_time_power)
        xt = forward_mask(x0, t, schedule, vocab.mask_id, generator)
        input_ids[image] = xt.flatten()
    device = device or input_ids.device
    # logits only where a loss reads them, in row-major order: image rows, then answers
    wanted = image | text
    # encoder features for a sequence-level MoE (data.BatchStream: mmu rows' own, t2i rows zero)
    kw = {"features": {k: v.to(device) for k, v in batch["features"].items()}} \
        if batch.get("features") is not None else {}
    out = model(input_ids.to(device), logits_mask=wanted.to(device), **kw)
    logits = out.logits.float()                                               # (N, V)
    picked_image = image[wanted].nonzero().squeeze(1).to(device)
    picked_text = text[wanted].nonzero().squeeze(1).to(device)
    loss, parts = out.aux_loss.float() * config.loss_aux, {"aux": float(out.aux_loss.detach())}
    if n_t2i:
        image_logits = logits.index_select(0, picked_image).view(n_t2i, x0.shape[1], -1)
        d3 = d3diff_loss(image_logits, xt.to(device), x0.to(device), t.to(device), schedule,
                         vocab.mask_id, config.lambda_score, config.score_head, return_parts=True)
        loss = loss + config.loss_t2i * d3.loss
        parts.update(t2i=float(d3.loss.detach()), t2i_mgm=float(d3.mgm.detach()),
                     t2i_score=float(d3.score.detach()))
    if text.any():
        ce = text_loss(logits.index_select(0, picked_text), labels[text].to(device),
                       text.nonzero()[:, 0].to(device), config.text_loss)
        loss = loss + config.loss_mmu * ce
        parts["mmu"] = float(ce.detach())
    parts["loss"] = float(loss.detach())
    return loss, parts


def text_loss(logits: Tensor, targets: Tensor, rows: Tensor, reduction: str) -> Tensor:
    """Next-token CE of the answer tokens (N, V) / (N,), with `rows` (N,) their batch rows.

    "row_mean" averages within each sequence, then over sequences: a 2-token VQA answer weighs as
    much as a 59-token caption (with "token_mean", Show-o's, captions hold ~85% of the weight on
    the quick profile and VQA barely trains)."""
    ce = F.cross_entropy(logits, targets, reduction="none")                   # (N,)
    if reduction == "token_mean":
        return ce.mean()
    if reduction != "row_mean":
        raise ValueError(f"text_loss must be 'row_mean' or 'token_mean', got {reduction!r}")
    n_rows = int(rows.max()) + 1
    total = ce.new_zeros(n_rows).index_add(0, rows, ce)
    count = torch.bincount(rows, minlength=n_rows)
    present = count > 0
    return (total[present] / count[present]).mean()


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices, not on biases, norms or embedding tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.dim() < 2 or name.startswith(("embed.", "pos_embed.", "image_pos_embed."))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class TrainResult:
    model: UniFace                      # the final weights (eval mode)
    ema_model: UniFace | None           # the EMA weights, when TrainConfig.ema_decay > 0
    history: list[dict]                 # the JSONL log of the whole run (resumed parts included)
    out_dir: Path
    step: int                           # optimizer steps done
    stop_reason: str                    # "steps" or "time"
    seconds: float = 0.0                # wall-clock of the whole run (all invocations)
    extra: dict = field(default_factory=dict)

    @property
    def best_model(self) -> UniFace:
        return self.ema_model if self.ema_model is not None else self.model


def read_log(path: Path, up_to_step: int | None = None) -> list[dict]:
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if up_to_step is None or r["step"] <= up_to_step]


def train(profile="quick", out_dir=None, resume: bool = False, max_steps: int | None = None,
          model_config: ModelConfig | None = None, train_config: TrainConfig | None = None,
          data: TrainingData | None = None, progress: bool = True, callback=None) -> TrainResult:
    """Train the unified model; checkpoints, a JSONL log and the final model go to `out_dir`.

    resume=True continues from out_dir/checkpoint.safetensors (same configs required) and
    reproduces the uninterrupted run. `callback(step, record)` runs after every step; a
    KeyboardInterrupt (Ctrl-C, or raised by the callback) saves a checkpoint, then propagates.
    Stops at train_config.max_steps or after train_config.max_seconds, whichever comes first."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs
    from tqdm.auto import tqdm

    from .. import profiles
    from ..model.config import get_model_config
    from .config import get_train_config
    from .data import load_training_data

    profile = profiles.get_profile(profile)
    tc = train_config or get_train_config(profile)
    if max_steps is not None:
        tc = tc.replace(max_steps=int(max_steps))
    data = data or load_training_data(profile)
    mc = model_config or get_model_config(profile)
    mc = mc if mc.vocab_size is not None else mc.for_vocab(data.vocab)
    mc.check_image_tokens(data.n_image_tokens)
    data = with_model_features(data, profile, mc)     # sequence MoE: CLIP / face features
    out_dir = Path(out_dir) if out_dir is not None else Path("runs") / profile.name / "train"
    ckpt_path, log_path = out_dir / CHECKPOINT_NAME, out_dir / LOG_NAME

    is_moe = mc.ffn != "dense" or mc.sequence != "identity"
    accelerator = Accelerator(cpu=runtime.get_device(profile.device).type == "cpu",
                              mixed_precision=tc.mixed_precision, kwargs_handlers=[
                                  DistributedDataParallelKwargs(find_unused_parameters=is_moe)])
    runtime.seed_everything(tc.seed)
    model = UniFace(mc, data.vocab)
    optimizer = torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=tc.lr, betas=tc.betas)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, WarmupCosine(tc.warmup_steps, tc.max_steps, tc.min_lr_ratio))
    ema = EMA(model, tc.ema_decay) if tc.ema_decay > 0 else None
    step, seconds_before = 0, 0.0
    if resume and ckpt_path.is_file():
        tensors, state = load_checkpoint(ckpt_path)
        _check_resume(state, mc, tc, data, ckpt_path)
        model.load_state_dict(prefixed(tensors, "model."), strict=not mc.tie_embeddings)
        optimizer_from_tensors(optimizer, tensors, state["param_groups"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.shadow = prefixed(tensors, "ema.")
        restore_rng(tensors)
        step, seconds_before = int(state["step"]), float(state["seconds"])
    history = read_log(log_path, step)
    if accelerator.is_main_process:
        runtime.atomic_write_bytes(log_path, "".join(json.dumps(r) + "\n" for r in history).encode())
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)
    batches = BatchStream(data, mc.max_len, tc.batch_size, tc.t2i_share, tc.seed,
                          tc.caption_dropout, tc.mmu_caption_prob, tc.vqa_turns)

    def checkpoint() -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            meta = {"step": step, "seconds": seconds_before + time.perf_counter() - start,
                    "model_config": mc.to_dict(), "vocabulary": data.vocab.to_dict(),
                    "train_config": tc.to_dict(), "data_key": data.key,
                    "data_order": {"seed": tc.seed, "next_step": step}, "log_lines": len(history)}
            save_checkpoint(ckpt_path, raw_model, optimizer.optimizer if hasattr(
                optimizer, "optimizer") else optimizer, scheduler, ema, meta)

    start, stop_reason = time.perf_counter(), "steps"
    bar = tqdm(total=tc.max_steps, initial=step, desc="train", leave=False,
               disable=runtime.progress_disabled() or not progress
               or not accelerator.is_main_process)
    model.train()
    try:
        with DeferredInterrupt() as interrupt, log_path.open("a") as log_file:
            while step < tc.max_steps:
                if time.perf_counter() - start >= tc.max_seconds:
                    stop_reason = "time"
                    break
                batch = batches.batch(step, accelerator.process_index, accelerator.num_processes)
                gen = step_generator(tc.seed, step, accelerator.process_index)
                loss, parts = joint_loss(model, batch, tc, gen, accelerator.device)
                optimizer.zero_grad(set_to_none=True)
                accelerator.backward(loss)
                grad_norm = accelerator.clip_grad_norm_(model.parameters(), tc.grad_clip)
                lr = scheduler.get_last_lr()[0]
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update(raw_model, step)
                step += 1
                record = {"step": step, **parts, "grad_norm": float(grad_norm), "lr": lr,
                          "seconds": round(seconds_before + time.perf_counter() - start, 3)}
                if step % tc.log_every == 0 or step == tc.max_steps:
                    history.append(record)
                    if accelerator.is_main_process:
                        log_file.write(json.dumps(record) + "\n")
                        log_file.flush()
                if step % tc.checkpoint_every == 0:
                    checkpoint()
                bar.update(1)
                bar.set_postfix(t2i=parts.get("t2i"), mmu=parts.get("mmu"), refresh=False)
                if callback is not None:
                    callback(step, record)
                if interrupt.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        checkpoint()
        bar.close()
        raise
    bar.close()
    checkpoint()
    if stop_reason == "time":
        runtime.warn_if_time_limited("unified model", step, tc.max_steps, tc.max_seconds)
    seconds = seconds_before + time.perf_counter() - start
    raw_model.eval()
    ema_model = None
    if accelerator.is_main_process:
        raw_model.save_pretrained(out_dir / "model")
        if ema is not None:
            ema_model = ema.copy_to(UniFace(mc, data.vocab)).eval()
            ema_model.save_pretrained(out_dir / "model_ema")
        summary = {"step": step, "stop_reason": stop_reason, "seconds": round(seconds, 1),
                   "last": history[-1] if history else None, "data_key": data.key,
                   "model_config": mc.to_dict(), "train_config": tc.to_dict(),
                   "n_parameters": raw_model.num_parameters()}
        runtime.atomic_write_bytes(out_dir / SUMMARY_NAME, json.dumps(summary, indent=1).encode())
    return TrainResult(raw_model, ema_model, history, out_dir, step, stop_reason, seconds)


def _check_resume(state: dict, mc: ModelConfig, tc: TrainConfig, data: TrainingData,
                  path: Path) -> None:
    """A resumed run must be the same run: same model, same training recipe, same data."""
    saved_mc = ModelConfig.from_dict(state["model_config"])
    diffs = saved_mc.differences(mc)
    diffs.update(TrainConfig.from_dict(state["train_config"]).run_differences(tc))
    if diffs:
        text = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diffs.items())
        raise ValueError(f"cannot resume from {path}: the configuration differs ({text}); "
                         f"start a new run (resume=False) or use the checkpoint's settings")
    if state["data_key"] != data.key:
        raise ValueError(f"cannot resume from {path}: it was trained on data {state['data_key']}"
                         f", not {data.key}")
