"""UniFace: the unified transformer of UniF2ace (Show-o layout) in plain PyTorch.

One decoder over the joint vocabulary [text | special | image codes | MASK]. Each block:

    x = x + Attn(LN(x))                      omni-attention (attention.py), rotary positions
    x = x + FFN(LN(x), task)                 token-level slot: dense MLP or grouped token MoE
    x = Seq(x, task, cond_mask, features)    sequence-level slot: identity or sequence MoE

Why the sequence slot is not a pre-norm residual: its experts are maps *of the residual stream*
(copy: x, zero: 0, injection: w*x + (1-w)*Resampler(F), a convex mix of the stream and injected
features). As `x + E(LN(x))`, "copy" would add a normalised copy of x and Identity would not be a
no-op. So the slot receives the raw stream and returns the new one; the paper's "LayerNorm ->
sequence-level MoE" is the norm the sequence MoE applies to what its router and resampler read
(it owns it), and the identity slot leaves a standard pre-norm transformer.

What the sequence router sees (`cond_mask`): the condition, never the target. mmu rows: the
tokens up to the first <|eoi|> (task token + image); t2i rows: the text prompt before <|soi|>.
So an answer token cannot change the routing of earlier tokens (text stays causal, a KV cache
reproduces the full forward), and all MaskGIT steps of one prompt route the same way.

forward(input_ids (B, L), features=None, past_key_values=None, use_cache=False,
        logits_mask=None) -> UniFaceOutput(logits (B, L, V), aux_loss (), aux [per layer],
                                           past_key_values)
The task of each row comes from its first real token (<|t2i|> or <|mmu|>) and is remembered in
the cache. Logits cover the whole vocabulary (MASK column included: d3diff_loss drops it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import runtime
from ..tokenizers.vocab import Vocabulary
from .attention import (KVCache, RotaryEmbedding, SelfAttention, omni_attention_mask,
                        image_position_ids, open_image_segment, position_ids)
from .config import ModelConfig
from .slots import (DenseFFN, IdentitySequence, build_ffn_slot, build_sequence_slot,
                    condition_mask)
from .tasks import task_from_ids

FORMAT = "unif2ace-mini/uniface"
FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


@dataclass
class UniFaceOutput:
    logits: Tensor                          # (B, L, V) over the whole vocabulary
    aux_loss: Tensor                        # () summed "balance_loss" of all MoE slots
    aux: list[dict]                         # per layer {"ffn": dict, "sequence": dict}
    past_key_values: KVCache | None = None


class Block(nn.Module):
    """attention -> LayerNorm -> FFN slot -> (LayerNorm inside) sequence slot."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm_attn = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.attn = SelfAttention(config.d_model, config.n_heads, config.dropout)
        self.norm_ffn = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.ffn = build_ffn_slot(config)
        self.seq = build_sequence_slot(config)
        self.drop = nn.Dropout(config.dropout)

    @property
    def pools_sequence(self) -> bool:
        return not isinstance(self.seq, IdentitySequence)

    def forward(self, x, mask, rotary, task, token_mask, cond_mask, features, past=None,
                context=None):
        """x (B, L, D) -> x, (keys, values), aux, the sequence slot's input (B, L, D).

        `context` = (rows, mask) of earlier conditioning rows at the sequence slot's input."""
        h, kv = self.attn(self.norm_attn(x), mask, rotary, past)
        x = x + self.drop(h)
        h, aux_ffn = self.ffn(self.norm_ffn(x), task, token_mask)
        x = x + self.drop(h)
        slot_in = x
        if context is not None:      # cached decoding: let the router see the cached condition
            n_ctx = context[0].shape[1]
            y, aux_seq = self.seq(torch.cat([context[0], x], 1), task,
                                  torch.cat([context[1], cond_mask], 1), features)
            x = y[:, n_ctx:]
        else:
            x, aux_seq = self.seq(x, task, cond_mask, features)
        return x, kv, {"ffn": aux_ffn, "sequence": aux_seq}, slot_in


class UniFace(nn.Module):
    """The unified understanding + generation transformer over one Vocabulary."""

    def __init__(self, config: ModelConfig, vocab: Vocabulary,
                 image_codebook: Tensor | None = None):
        """image_codebook (K, D): the codebook for config.image_embed_init "codebook:<profile>";
        None loads that profile's image tokenizer from the artifact cache."""
        super().__init__()
        if config.vocab_size is None:
            config = config.for_vocab(vocab)
        if config.vocab_size != vocab.size:
            raise ValueError(f"config.vocab_size {config.vocab_size} != vocabulary size "
                             f"{vocab.size}; use config.for_vocab(vocab)")
        self.config, self.vocab = config, vocab
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embed = nn.Embedding(config.max_len, config.d_model) \
            if config.positions == "learned" else None
        self.rotary = RotaryEmbedding(config.head_dim, config.max_len, config.rope_theta) \
            if config.positions == "rope" else None
        self.image_pos_embed = nn.Embedding(config.image_positions, config.d_model) \
            if config.image_positions else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model, eps=config.norm_eps)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self._init_weights()
        if config.codebook_profile is not None:
            self._init_image_rows(image_codebook if image_codebook is not None
                                  else profile_codebook(config.codebook_profile))
        if config.tie_embeddings:
            self.head.weight = self.embed.weight

    def _init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02), and residual output projections scaled by 1/sqrt(2 n_layers)
        so the stream's variance does not grow with depth. A token MoE gets the same two scales
        (its `reset_parameters`), so the dense-vs-MoE ablation starts from comparable streams."""
        std = self.config.init_std
        residual_std = std / (2 * self.config.n_layers) ** 0.5
        for module in [self.embed, self.pos_embed, self.image_pos_embed, self.head]:
            if module is not None:
                nn.init.normal_(module.weight, std=std)
        for block in self.blocks:
            linears = [(block.attn.qkv, std), (block.attn.out, residual_std)]
            if isinstance(block.ffn, DenseFFN):
                linears += [(block.ffn.up, std), (block.ffn.down, residual_std)]
            elif hasattr(block.ffn, "reset_parameters"):
                block.ffn.reset_parameters(std=std, out_std=residual_std)
            for linear, s in linears:
                nn.init.normal_(linear.weight, std=s)
                nn.init.zeros_(linear.bias)

    @torch.no_grad()
    def _init_image_rows(self, codebook: Tensor) -> None:
        """Image-code rows of the embedding and of the output layer := codebook_embedding."""
        vocab = self.vocab
        if codebook.dim() != 2 or codebook.shape[0] != vocab.n_image_codes:
            raise ValueError(f"image_embed_init {self.config.image_embed_init!r}: the codebook "
                             f"has shape {tuple(codebook.shape)}, the vocabulary "
                             f"{vocab.n_image_codes} image codes")
        rows = codebook_embedding(codebook, self.config.d_model, self.config.init_std)
        image = slice(vocab.image_offset, vocab.image_offset + vocab.n_image_codes)
        self.embed.weight[image] = rows
        self.head.weight[image] = rows

    def _image_position_embedding(self, ids: Tensor) -> Tensor:
        """(B, L, D): image_pos_embed[index inside the image] on image rows, zero elsewhere."""
        index = image_position_ids(ids, self.vocab)                                # (B, L)
        if int(index.max()) >= self.config.image_positions:
            raise ValueError(f"an image segment holds {int(index.max()) + 1} tokens; the model "
                             f"has positions for {self.config.image_positions} "
                             f"(ModelConfig.image_positions)")
        return self.image_pos_embed(index.clamp(min=0)) * (index >= 0).unsqueeze(-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- forward -------------------------------------------------------------------------------
    def _check_inputs(self, input_ids: Tensor, past: KVCache | None) -> None:
        if not isinstance(input_ids, Tensor) or input_ids.dim() != 2 or \
                input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise ValueError(f"input_ids must be an integer tensor of shape (B, L), got "
                             f"{getattr(input_ids, 'dtype', type(input_ids))} "
                             f"{tuple(getattr(input_ids, 'shape', ()))}")
        if input_ids.shape[1] == 0:
            raise ValueError("input_ids is empty (L = 0)")
        self.vocab.check_ids(input_ids)
        if past is not None:
            if past.input_ids.shape[0] != input_ids.shape[0]:
                raise ValueError(f"batch size {input_ids.shape[0]} differs from the cache's "
                                 f"{past.input_ids.shape[0]}")
            if open_image_segment(past.input_ids, self.vocab).any():
                raise ValueError("the cached prefix ends inside an image segment: a KV cache "
                                 "only continues causal text (close the image with <|eoi|>)")

    def forward(self, input_ids: Tensor, features: dict[str, Tensor] | None = None,
                past_key_values: KVCache | None = None, use_cache: bool = False,
                logits_mask: Tensor | None = None) -> UniFaceOutput:
        """Logits for `input_ids` (B, L); with `past_key_values`, ids continue the cached ones.

        features: {"clip": (B, N, D_f), "face": ...} for a sequence-level MoE (mmu rows); kept in
        the cache, so decoding steps need not pass them again.
        logits_mask: (B, L) bool, training only: logits are then (N, V) for the True positions in
        row-major order. The output layer is ~20% of the model's matmuls at quick size, and the
        losses read only a third of the positions."""
        past = past_key_values
        self._check_inputs(input_ids, past)
        batch, length = input_ids.shape
        all_ids = input_ids if past is None else torch.cat([past.input_ids, input_ids], 1)
        task = task_from_ids(input_ids, self.vocab) if past is None else past.task
        if features is None and past is not None:
            features = past.features
        self._check_features(features, batch)

        positions = position_ids(all_ids, self.vocab)[:, -length:]                # (B, L)
        if int(positions.max()) >= self.config.max_len:
            raise ValueError(f"sequence has {int(positions.max()) + 1} real tokens; the model "
                             f"addresses at most max_len = {self.config.max_len}")
        mask = omni_attention_mask(all_ids, self.vocab)[:, None, -length:]       # (B, 1, L, S)
        token_mask = input_ids != self.vocab.pad_id                               # (B, L)
        cond = condition_mask(all_ids, task, self.vocab)[:, -length:]             # (B, L)

        x = self.embed(input_ids)                                                 # (B, L, D)
        if self.image_pos_embed is not None:   # a cached prefix never ends inside an image
            x = x + self._image_position_embedding(input_ids)
        rotary = None
        if self.pos_embed is not None:
            x = x + self.pos_embed(positions)
        else:
            rotary = self.rotary(positions, x.dtype)
        x = self.drop(x)

        keys, values, contexts, aux = [], [], [], []
        aux_loss = x.new_zeros(())
        for i, block in enumerate(self.blocks):
            layer_past = None if past is None else (past.keys[i], past.values[i])
            context = None if past is None or not past.context else past.context[i]
            x, (k, v), layer_aux, slot_in = block(x, mask, rotary, task, token_mask, cond,
                                                  features, layer_past, context)
            for part in layer_aux.values():
                if "balance_loss" in part:
                    aux_loss = aux_loss + part["balance_loss"]
            aux.append(layer_aux)
            if use_cache:
                keys.append(k)
                values.append(v)
                contexts.append(self._grow_context(context, slot_in, cond)
                                if block.pools_sequence else None)
        if logits_mask is not None:
            if logits_mask.shape != input_ids.shape or logits_mask.dtype != torch.bool:
                raise ValueError(f"logits_mask must be a bool tensor of shape "
                                 f"{tuple(input_ids.shape)}")
            rows = logits_mask.flatten().nonzero().squeeze(1)
            x = x.flatten(0, 1).index_select(0, rows)                             # (N, D)
        logits = self.head(self.norm(x))                                          # (B, L, V)
        cache = KVCache(keys, values, all_ids, task, features, contexts) if use_cache else None
        return UniFaceOutput(logits, aux_loss, aux, cache)

    @staticmethod
    def _grow_context(context, slot_in: Tensor, cond: Tensor):
        """Keep the sequence slot's input rows up to the last conditioning token (the router
        pools over them); rows after the condition are never needed again."""
        if not cond.any():
            return context
        last = int(cond.any(0).nonzero().max()) + 1
        rows, mask = slot_in[:, :last].detach(), cond[:, :last]
        if context is None:
            return rows, mask
        return torch.cat([context[0], rows], 1), torch.cat([context[1], mask], 1)

    @staticmethod
    def _check_features(features, batch: int) -> None:
        if features is None:
            return
        if not isinstance(features, dict):
            raise ValueError(f"features must be a dict of name -> (B, N, D) tensors, got "
                             f"{type(features).__name__}")
        for name, f in features.items():
            if not isinstance(f, Tensor) or f.dim() != 3 or f.shape[0] != batch:
                raise ValueError(f"features[{name!r}] must be a ({batch}, N, D) tensor, got "
                                 f"{tuple(getattr(f, 'shape', ()))}")

    # --- save / load ---------------------------------------------------------------------------
    def _description(self) -> dict:
        return {"format": FORMAT, "version": FORMAT_VERSION, "model_config": self.config.to_dict(),
                "vocabulary": self.vocab.to_dict()}

    def save_pretrained(self, directory) -> Path:
        """Write config.json and model.safetensors (atomically) into `directory`."""
        directory = Path(directory)
        state = {k: v for k, v in self.state_dict().items()
                 if not (self.config.tie_embeddings and k == "head.weight")}   # shared storage
        runtime.save_safetensors(state, directory / WEIGHTS_NAME, {"uniface": self._description()})
        runtime.atomic_write_bytes(directory / CONFIG_NAME,
                                   json.dumps(self._description(), indent=1).encode())
        return directory

    @classmethod
    def from_pretrained(cls, directory, config: ModelConfig | None = None,
                        vocab: Vocabulary | None = None, device="cpu") -> "UniFace":
        """Load a saved model; `config` / `vocab`, if given, must match what was saved."""
        directory = Path(directory)
        desc = read_description(directory)
        saved_config = ModelConfig.from_dict(desc["model_config"])
        saved_vocab = Vocabulary.from_dict(desc["vocabulary"])
        if config is not None:
            wanted = config if config.vocab_size is not None else config.for_vocab(saved_vocab)
            diffs = saved_config.differences(wanted)
            if diffs:
                text = ", ".join(f"{k}: saved {a!r} vs requested {b!r}" for k, (a, b) in
                                 diffs.items())
                raise ValueError(f"checkpoint {directory} was saved with a different model "
                                 f"config ({text})")
        if vocab is not None and vocab != saved_vocab:
            raise ValueError(f"checkpoint {directory} was saved for vocabulary "
                             f"{saved_vocab.to_dict()}, not {vocab.to_dict()}")
        tensors, meta = runtime.load_safetensors(directory / WEIGHTS_NAME)
        if meta.get("uniface", {}).get("model_config") != desc["model_config"]:
            raise ValueError(f"{directory}: {WEIGHTS_NAME} and {CONFIG_NAME} describe different "
                             f"models (mixed-up files?)")
        # every weight is loaded next: skip the codebook lookup of image_embed_init
        model = cls(saved_config.replace(image_embed_init="normal"), saved_vocab)
        model.config = saved_config
        load_state(model, tensors, str(directory / WEIGHTS_NAME))
        return model.to(device)


def codebook_embedding(codebook: Tensor, d_model: int, std: float, seed: int = 0) -> Tensor:
    """(K, D) codebook vectors -> (K, d_model) embedding rows: centred, through a fixed (seeded)
    orthonormal map R^D -> R^d_model (D <= d_model: distances between codes are kept up to one
    scale), then scaled to the overall std `std` of the normal init."""
    cb = codebook.detach().float().cpu()
    if cb.shape[1] > d_model:
        raise ValueError(f"codebook vectors have {cb.shape[1]} dims, more than d_model {d_model}")
    cb = cb - cb.mean(0)
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(d_model, cb.shape[1], generator=g))[0]     # (d, D) orthonormal
    rows = cb @ q.T                                                            # (K, d)
    return rows * (std / rows.std().clamp(min=1e-12))


def profile_codebook(profile: str) -> Tensor:
    """The (K, D) codebook of a profile's image tokenizer (from the cache; trained if missing)."""
    from ..tokenizers.cache import load_or_train_image_tokenizer

    tokenizer, _ = load_or_train_image_tokenizer(profile)
    return tokenizer.codebook.detach().float().cpu()


def read_description(directory) -> dict:
    """config.json of a saved UniFace, checked: FileNotFoundError / ValueError when it is not."""
    file = Path(directory) / CONFIG_NAME
    if not file.is_file():
        raise FileNotFoundError(f"no saved UniFace model in {directory} (missing {CONFIG_NAME})")
    try:
        desc = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt {file}: {err}") from err
    if not isinstance(desc, dict) or desc.get("format") != FORMAT:
        raise ValueError(f"{file} is not a UniFace config (format {FORMAT!r} expected)")
    if desc.get("version") != FORMAT_VERSION:
        raise ValueError(f"{file} has format version {desc.get('version')}, this code reads "
                         f"{FORMAT_VERSION}")
    return desc


def load_state(model: nn.Module, tensors: dict[str, Tensor], source: str) -> None:
    """load_state_dict with a ValueError naming missing / unexpected / mis-shaped tensors."""
    expected = model.state_dict()
    if getattr(model, "config", None) is not None and model.config.tie_embeddings:
        expected.pop("head.weight", None)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = [f"{k}: saved {tuple(tensors[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in tensors and tensors[k].shape != v.shape]
    if missing or unexpected or shapes:
        raise ValueError(f"{source} does not fit this model: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}, shape mismatches {shapes[:5]}")
    model.load_state_dict(tensors, strict=False)
