"""The unified transformer of UniF2ace (DESIGN §5, §8): sequences, omni-attention, slots, model.

    tasks        MMU = 0 / T2I = 1 and the task of a sequence from its first token
    config       ModelConfig and MODEL_CONFIGS per profile
    sequences    Show-o t2i / mmu layouts, labels, caption truncation, a mixed Dataset
    attention    omni-attention mask from the ids, rotary positions, attention with a KV cache
    slots        the FFN slot (dense | token MoE) and the sequence slot (identity | sequence MoE)
    transformer  UniFace: forward, KV cache, save_pretrained / from_pretrained
    cache        load_or_train_model(profile): train once, then load from the artifact cache
"""

from .attention import KVCache, omni_attention_mask, position_ids
from .cache import load_or_train_model
from .config import MODEL_CONFIGS, ModelConfig, get_model_config
from .sequences import (CAPTION_QUESTION, IGNORE, Example, SequenceBuilder, UniFaceDataset,
                        collate, encode_text, truncate_caption)
from .slots import (DenseFFN, IdentitySequence, build_ffn_slot, build_sequence_slot,
                    condition_mask)
from .tasks import MMU, T2I, task_from_ids
from .transformer import UniFace, UniFaceOutput

__all__ = [
    "MMU", "T2I", "task_from_ids", "ModelConfig", "MODEL_CONFIGS", "get_model_config",
    "SequenceBuilder", "UniFaceDataset", "Example", "collate", "encode_text", "truncate_caption",
    "IGNORE", "CAPTION_QUESTION", "omni_attention_mask", "position_ids", "DenseFFN",
    "IdentitySequence", "build_ffn_slot", "build_sequence_slot", "UniFace", "UniFaceOutput",
    "KVCache", "condition_mask", "load_or_train_model",
]
