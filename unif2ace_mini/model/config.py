"""ModelConfig: the size and the slot choices of the unified transformer, per profile.

`vocab_size` depends on the trained tokenizers, so the per-profile entries of MODEL_CONFIGS leave
it unset and `config.for_vocab(vocab)` fills it in. `max_len` is both the training sequence
length (every example is padded to it) and the number of positions the model can address.

Slots (see slots.py and the contract in DESIGN §8):
    ffn       "dense"     one GELU MLP                       | "token_moe"     grouped token MoE
    sequence  "identity"  nothing (a plain transformer)      | "sequence_moe"  grouped sequence MoE
`moe` / `seq_moe` hold the MoE settings (moe_config.TokenMoEConfig / SequenceMoEConfig); None
means that class's defaults when the slot is a MoE.

image_embed_init: "normal" draws the image-code rows of the embedding (and of an untied output
layer) from N(0, init_std) like every other row. "codebook:<profile>" starts them from that
profile's image tokenizer codebook (K, D) through a fixed orthonormal projection to d_model,
rescaled to init_std: codes that look alike start alike, instead of 512 unrelated vectors the
model must sort out from scratch (transformer.codebook_embedding).

image_positions: N > 0 adds a learned vector per index 0..N-1 inside an image segment to the
image rows' embeddings (N = the tokenizer's tokens per image). Rotary positions only say how far
apart two tokens are, and a t2i image starts wherever its caption ends, so without this a MASK
token must infer which grid cell it is from distances to <|soi|>, and a question must find a face
region by distance from itself. Rotary positions stay for everything else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

POSITIONS = ("rope", "learned")
FFN_SLOTS = ("dense", "token_moe")
SEQUENCE_SLOTS = ("identity", "sequence_moe")
IMAGE_EMBED_CODEBOOK = "codebook:"


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int | None = None   # Vocabulary.size: text + specials + image codes + MASK
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512
    max_len: int = 128              # padded sequence length = positions the model addresses
    dropout: float = 0.0            # attention-probability and residual dropout
    positions: str = "rope"         # "rope" (rotary, relative) | "learned" (absolute table)
    rope_theta: float = 10000.0
    ffn: str = "dense"
    sequence: str = "identity"
    moe: Any = None                 # TokenMoEConfig | None
    seq_moe: Any = None             # SequenceMoEConfig | None
    tie_embeddings: bool = False    # share the input embedding with the output layer
    norm_eps: float = 1e-5
    init_std: float = 0.02
    image_embed_init: str = "normal"   # "normal" | "codebook:<profile>" (see below)
    image_positions: int = 0        # > 0: a learned embedding per index inside an image (see below)

    def __post_init__(self):
        if self.vocab_size is not None and self.vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {self.vocab_size}")
        if self.image_positions < 0:
            raise ValueError(f"image_positions must be >= 0, got {self.image_positions}")
        for name in ("d_model", "n_layers", "n_heads", "d_ff", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.positions not in POSITIONS:
            raise ValueError(f"unknown positions {self.positions!r}; choose one of {POSITIONS}")
        if self.positions == "rope" and (self.d_model // self.n_heads) % 2:
            raise ValueError(f"rotary positions need an even head size, got "
                             f"{self.d_model // self.n_heads}")
        if self.ffn not in FFN_SLOTS:
            raise ValueError(f"unknown ffn slot {self.ffn!r}; choose one of {FFN_SLOTS}")
        if self.sequence not in SEQUENCE_SLOTS:
            raise ValueError(f"unknown sequence slot {self.sequence!r}; choose one of "
                             f"{SEQUENCE_SLOTS}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.image_embed_init != "normal" and not (
                self.image_embed_init.startswith(IMAGE_EMBED_CODEBOOK)
                and len(self.image_embed_init) > len(IMAGE_EMBED_CODEBOOK)):
            raise ValueError(f"image_embed_init must be 'normal' or '{IMAGE_EMBED_CODEBOOK}"
                             f"<profile>', got {self.image_embed_init!r}")

    @property
    def codebook_profile(self) -> str | None:
        """The profile whose image tokenizer's codebook initialises the image-code rows."""
        if self.image_embed_init.startswith(IMAGE_EMBED_CODEBOOK):
            return self.image_embed_init[len(IMAGE_EMBED_CODEBOOK):]
        return None

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def check_image_tokens(self, n_image_tokens: int) -> None:
        """A clear error when image_positions does not match the tokens per image."""
        if self.image_positions and self.image_positions != n_image_tokens:
            raise ValueError(f"ModelConfig.image_positions = {self.image_positions}, but the image "
                             f"tokenizer gives {n_image_tokens} tokens per image; set "
                             f"image_positions={n_image_tokens} (or 0)")

    def for_vocab(self, vocab) -> "ModelConfig":
        """This config with vocab_size = vocab.size (a Vocabulary or an int)."""
        size = vocab if isinstance(vocab, int) else vocab.size
        return dataclasses.replace(self, vocab_size=size)

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict_without_defaults(self, _OMIT_WHEN_DEFAULT)   # MoE configs become dicts

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        d = dict(d)
        if isinstance(d.get("moe"), dict):
            from .moe_config import TokenMoEConfig
            d["moe"] = _from_dict(TokenMoEConfig, d["moe"])
        if isinstance(d.get("seq_moe"), dict):
            from .moe_config import SequenceMoEConfig
            d["seq_moe"] = _from_dict(SequenceMoEConfig, d["seq_moe"])
        return cls(**d)

    def differences(self, other: "ModelConfig") -> dict[str, tuple]:
        """{field: (self's value, other's value)} where the two configs differ."""
        a, b = dataclasses.asdict(self), dataclasses.asdict(other)
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


_OMIT_WHEN_DEFAULT = {"image_embed_init": "normal", "image_positions": 0}


def asdict_without_defaults(config, omit_when_default: dict) -> dict:
    """dataclasses.asdict(config) without the given fields where they hold these defaults: fields
    added later leave the dicts (and the model cache's keys) of configs from before them
    byte-identical."""
    d = dataclasses.asdict(config)
    for name, default in omit_when_default.items():
        if d[name] == default:
            del d[name]
    return d


def _from_dict(cls, d: dict):
    if hasattr(cls, "from_dict"):
        return cls.from_dict(d)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# Sizes per profile (vocab_size comes from the tokenizers: `MODEL_CONFIGS[p].for_vocab(vocab)`).
# max_len = image tokens + 5 specials + the text budget (captions are cut at a sentence end).
MODEL_CONFIGS: dict[str, ModelConfig] = {
    # 64 image tokens + 59 text tokens. Image-code rows start from the image tokenizer's
    # codebook: at equal steps the change that most made generation read its prompt
    # (image-token bits, true vs shuffled caption, 0.35 apart at 250 steps, 0.00 with the
    # normal init). A learned embedding per grid cell (image_positions) on top: at 450 steps
    # MGM 4.71 -> 4.47, image-token bits 7.52 -> 7.33, VQA 0.542 -> 0.565 (majority 0.542;
    # benchmarks/quick_recipe.py, results "landed_before_imgpos" vs "imgpos").
    "quick": ModelConfig(d_model=128, n_layers=4, n_heads=4, d_ff=512, max_len=128,
                         image_embed_init="codebook:quick", image_positions=64),
    # 64 image tokens + up to 155 text tokens: SynthFaces' longest captions fit whole.
    "cpu": ModelConfig(d_model=256, n_layers=6, n_heads=8, d_ff=1024, max_len=224,
                       image_positions=64),
    # 16x16 = 256 image tokens + 187 text tokens.
    "gpu": ModelConfig(d_model=512, n_layers=12, n_heads=8, d_ff=2048, max_len=448,
                       dropout=0.0, image_positions=256),
    # Phi-1.5 scale (Show-o's LLM): 24 layers, d=2048, 32 heads; 256 image tokens + 251 text.
    "paper": ModelConfig(d_model=2048, n_layers=24, n_heads=32, d_ff=8192, max_len=512),
}


def get_model_config(profile: str) -> ModelConfig:
    """The profile's ModelConfig (vocab_size still unset)."""
    name = getattr(profile, "name", profile)
    try:
        return MODEL_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(MODEL_CONFIGS)}") \
            from None
