"""One vocabulary for text and image tokens, laid out as in Show-o (DESIGN §5):

    [ text tokens | special tokens | image codes | MASK ]
      0 .. T-1      T .. T+S-1       O .. O+K-1    O+K  (= size - 1)

with O = T + S the image offset: `image_id = code + O`. The transformer has one embedding table
and one output layer over all `size` ids; MASK is the absorbing state of discrete diffusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .text import SPECIAL_TOKENS, special_ids


def _as_long(ids, what: str) -> torch.Tensor:
    t = torch.as_tensor(ids)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{what} must be integers, got dtype {t.dtype}")
    return t.long()


@dataclass(frozen=True)
class Vocabulary:
    n_text: int                                      # the text tokenizer's ids before the specials
    n_image_codes: int                               # K, the image tokenizer's codebook size
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS

    def __post_init__(self):
        if self.n_text < 1 or self.n_image_codes < 1:
            raise ValueError(f"need n_text >= 1 and n_image_codes >= 1, got {self.n_text}, "
                             f"{self.n_image_codes}")
        if len(set(self.special_tokens)) != len(self.special_tokens):
            raise ValueError(f"duplicate special tokens: {self.special_tokens}")
        object.__setattr__(self, "special_tokens", tuple(self.special_tokens))

    @classmethod
    def from_tokenizers(cls, text_tokenizer, n_image_codes: int) -> "Vocabulary":
        """Build from a text tokenizer whose last ids are SPECIAL_TOKENS (text.add_special_tokens)
        and an image codebook size (an int, or an ImageTokenizer)."""
        special_ids(text_tokenizer)  # raises unless the specials are the last ids, in order
        k = n_image_codes if isinstance(n_image_codes, int) else n_image_codes.codebook_size
        return cls(n_text=len(text_tokenizer) - len(SPECIAL_TOKENS), n_image_codes=k)

    # --- layout --------------------------------------------------------------------------------
    @property
    def n_special(self) -> int:
        return len(self.special_tokens)

    @property
    def image_offset(self) -> int:
        return self.n_text + self.n_special

    @property
    def mask_id(self) -> int:
        return self.image_offset + self.n_image_codes

    @property
    def size(self) -> int:
        return self.mask_id + 1

    def __len__(self) -> int:
        return self.size

    @property
    def special_ids(self) -> dict[str, int]:
        return {t: self.n_text + i for i, t in enumerate(self.special_tokens)}

    def special_id(self, token: str) -> int:
        """Id of a special token, given as "<|soi|>" or just "soi"."""
        name = token if token.startswith("<|") else f"<|{token}|>"
        try:
            return self.special_ids[name]
        except KeyError:
            raise ValueError(f"unknown special token {token!r}; known: "
                             f"{list(self.special_tokens)}") from None

    @property
    def pad_id(self) -> int:
        return self.special_id("pad")

    # --- conversions ---------------------------------------------------------------------------
    def image_ids(self, codes):
        """Image codes in [0, K) -> token ids (same shape). An int gives an int."""
        t = _as_long(codes, "image codes")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.n_image_codes):
            raise ValueError(f"image codes must lie in [0, {self.n_image_codes}), got "
                             f"[{int(t.min())}, {int(t.max())}]")
        out = t + self.image_offset
        return int(out) if isinstance(codes, int) else out

    def image_codes(self, ids):
        """Token ids of image tokens -> codes in [0, K). MASK or text ids are an error."""
        t = _as_long(ids, "token ids")
        if t.numel() and not self.is_image(t).all():
            bad = t[~self.is_image(t)].flatten()[:5].tolist()
            raise ValueError(f"ids {bad} are not image tokens (image ids are "
                             f"[{self.image_offset}, {self.mask_id}); MASK is {self.mask_id})")
        out = t - self.image_offset
        return int(out) if isinstance(ids, int) else out

    def check_text_ids(self, ids, allow_special: bool = True):
        """Validate ids from the text tokenizer: [0, n_text) (+ specials). Returns them as is."""
        t = _as_long(ids, "text ids")
        hi = self.image_offset if allow_special else self.n_text
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= hi):
            raise ValueError(f"text ids must lie in [0, {hi}), got [{int(t.min())}, "
                             f"{int(t.max())}]")
        return ids

    def check_ids(self, ids):
        """Validate ids of the joint vocabulary: [0, size). Returns them as is."""
        t = _as_long(ids, "token ids")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.size):
            raise ValueError(f"token ids must lie in [0, {self.size}), got [{int(t.min())}, "
                             f"{int(t.max())}]")
        return ids

    def is_text(self, ids) -> torch.Tensor:
        t = _as_long(ids, "token ids")
        return (t >= 0) & (t < self.n_text)

    def is_special(self, ids) -> torch.Tensor:
        t = _as_long(ids, "token ids")
        return (t >= self.n_text) & (t < self.image_offset)

    def is_image(self, ids) -> torch.Tensor:
        t = _as_long(ids, "token ids")
        return (t >= self.image_offset) & (t < self.mask_id)

    # --- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"n_text": self.n_text, "n_image_codes": self.n_image_codes,
                "special_tokens": list(self.special_tokens)}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocabulary":
        unknown = set(d) - {"n_text", "n_image_codes", "special_tokens"}
        if unknown:
            raise ValueError(f"unknown Vocabulary fields: {sorted(unknown)}")
        return cls(n_text=int(d["n_text"]), n_image_codes=int(d["n_image_codes"]),
                   special_tokens=tuple(d.get("special_tokens", SPECIAL_TOKENS)))

    def describe(self) -> str:
        """One line per segment, for notebooks."""
        return "\n".join([
            f"text     [0, {self.n_text})",
            f"special  [{self.n_text}, {self.image_offset})  "
            + " ".join(f"{t}={i}" for t, i in self.special_ids.items()),
            f"image    [{self.image_offset}, {self.mask_id})  "
            f"image_id = code + {self.image_offset}",
            f"MASK     {self.mask_id}  (size {self.size})",
        ])
