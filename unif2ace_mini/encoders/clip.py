"""A small transformers CLIPModel, trained contrastively on SynthFaces image-caption pairs (§8).

The vision tower is a ViT over 4 px (quick, 32 px) or 8 px (cpu, 64 px) patches; the text tower
reads the project's own byte-level BPE tokenizer, so captions need no second vocabulary:

    vocab_size  = len(text tokenizer)   (BPE pieces + Show-o specials)
    eos         = <|eot|>   appended to every caption; CLIP pools the text at its first eos
    pad         = <|pad|>   masked out by the attention mask
    bos         = <|sot|>   recorded in the config only (CLIP never reads it)

Images go in as they are stored, float [-1, 1]: the model is trained on that range, so the
extractor's normalisation for it is mean = std = 0.5 on [0, 1] (the identity map).
"""

from __future__ import annotations

import math
import time

import torch
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

from .. import runtime
from ..data.dataset import to_unit_range
from ..tokenizers.text import special_ids
from .config import ClipConfig
from .data import CaptionSampler, random_shift

EOS_TOKEN, PAD_TOKEN, BOS_TOKEN = "<|eot|>", "<|pad|>", "<|sot|>"


def build_clip_model(cfg: ClipConfig, tokenizer) -> CLIPModel:
    """A randomly initialised CLIPModel of `cfg`'s size whose text side reads `tokenizer`'s ids."""
    ids = special_ids(tokenizer)
    text = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_text_len, projection_dim=cfg.projection_dim,
        hidden_act="gelu", pad_token_id=ids[PAD_TOKEN], bos_token_id=ids[BOS_TOKEN],
        eos_token_id=ids[EOS_TOKEN])
    vision = CLIPVisionConfig(
        image_size=cfg.image_size, patch_size=cfg.patch_size, hidden_size=cfg.vision_width,
        intermediate_size=4 * cfg.vision_width, num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads, projection_dim=cfg.projection_dim, hidden_act="gelu")
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                        projection_dim=cfg.projection_dim)
    return CLIPModel(config)


class TextBatcher:
    """Captions -> (input_ids (B, L), attention_mask (B, L)) for a CLIP text tower.

    Our BPE has no post-processor, so the end token is appended by hand after truncating to
    max_len - 1 pieces; a pretrained CLIP tokenizer (paper) adds its own <bos>/<eos>.
    """

    def __init__(self, tokenizer, max_len: int, eos_id: int | None = None):
        self.tokenizer, self.max_len, self.eos_id = tokenizer, max_len, eos_id
        if eos_id is None and tokenizer.pad_token_id is None:
            raise ValueError("a tokenizer without an end id needs a pad token")

    @classmethod
    def for_model(cls, model: CLIPModel, tokenizer) -> "TextBatcher":
        text_cfg = model.config.text_config
        eos = text_cfg.eos_token_id
        own = (EOS_TOKEN in tokenizer.get_vocab()
               and tokenizer.convert_tokens_to_ids(EOS_TOKEN) == eos)
        return cls(tokenizer, text_cfg.max_position_embeddings, eos if own else None)

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if not texts:
            raise ValueError("no texts to encode")
        if self.eos_id is None:
            enc = self.tokenizer(list(texts), padding=True, truncation=True,
                                 max_length=self.max_len, return_tensors="pt")
            return enc["input_ids"], enc["attention_mask"]
        pieces = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        rows = [p[:self.max_len - 1] + [self.eos_id] for p in pieces]
        length = max(len(r) for r in rows)
        ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        return ids, mask


@torch.no_grad()
def encode_texts(model: CLIPModel, batcher: TextBatcher, texts: list[str],
                 batch_size: int = 256) -> torch.Tensor:
    """L2-normalised projected text embeddings. (T, projection_dim)"""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        ids, mask = batcher(texts[i:i + batch_size])
        emb = model.get_text_features(input_ids=ids.to(device), attention_mask=mask.to(device))
        emb = getattr(emb, "pooler_output", emb)
        out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
    return torch.cat(out)


@torch.no_grad()
def encode_images(model: CLIPModel, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised projected image embeddings of uint8 or [-1,1] images (N,3,H,W). (N, proj)"""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        x = to_unit_range(x) if x.dtype == torch.uint8 else x
        emb = model.get_image_features(pixel_values=x.to(device))
        emb = getattr(emb, "pooler_output", emb)
        out.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu())
    return torch.cat(out)


def train_clip(model: CLIPModel, tokenizer, data: dict, cfg: ClipConfig, data_cfg,
               progress: bool | None = None) -> dict:
    """Contrastive (symmetric InfoNCE) training for cfg.max_steps steps.

    data: images uint8 (N,3,H,W), labels (N,G), captions (N,) str or None (see CaptionSampler).
    The learning rate follows warmup + cosine over the steps, so the result depends on the
    seed and the config, not on the machine's speed. cfg.max_seconds is only a safety net: a run
    that hits it stops early (history["stop_reason"] = "time", not at the end of its schedule).
    Returns the history (loss, lr, accuracy of in-batch image->text matching, steps,
    stop_reason, seconds, img_per_s).
    """
    device = next(model.parameters()).device
    images = data["images"]
    if len(images) < 2:
        raise ValueError("contrastive training needs at least 2 image-caption pairs")
    batcher = TextBatcher.for_model(model, tokenizer)
    mean_attrs, std_attrs = cfg.caption_attrs or (data_cfg.caption_attrs_mean,
                                                  data_cfg.caption_attrs_std)
    captions = CaptionSampler(data["labels"], data["captions"], cfg.fresh_caption_prob, cfg.seed,
                              mean_attrs, std_attrs)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(0.9, 0.98), eps=1e-6)
    history = {"step": [], "loss": [], "lr": [], "batch_acc": []}
    batch = min(cfg.batch_size, len(images))
    start, step, stop_reason = time.perf_counter(), 0, "steps"
    bar = tqdm(total=cfg.max_steps, desc="CLIP",
               disable=runtime.progress_disabled() or progress is False)
    model.train()
    while step < cfg.max_steps:
        if time.perf_counter() - start >= cfg.max_seconds:   # safety net only (see config.py)
            stop_reason = "time"
            break
        done = step / cfg.max_steps
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * 0.5 * (1 + math.cos(math.pi * done))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randperm(len(images), generator=gen)[:batch]
        x = random_shift(to_unit_range(images[idx]), gen)                   # (B, 3, H, W)
        ids, mask = batcher(captions(idx))                                  # (B, L)
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                    pixel_values=x.to(device), return_loss=True)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        with torch.no_grad():   # CLIP caps the temperature at 1/100 so the logits cannot blow up
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        acc = (out.logits_per_image.argmax(1).cpu() == torch.arange(batch)).float().mean().item()
        history["step"].append(step)
        history["loss"].append(out.loss.item())
        history["lr"].append(lr)
        history["batch_acc"].append(acc)
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{out.loss.item():.3f}", acc=f"{acc:.2f}")
    bar.close()
    model.eval()
    seconds = time.perf_counter() - start
    history |= {"steps": step, "stop_reason": stop_reason, "seconds": seconds,
                "img_per_s": step * batch / max(seconds, 1e-9),
                "batch_size": batch, "n_images": len(images)}
    return history
