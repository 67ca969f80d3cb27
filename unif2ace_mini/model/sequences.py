"""Show-o sequences (DESIGN §5): token layout, labels, caption truncation, a mixed Dataset.

    t2i  [pad ...] <|t2i|> <|sot|> caption <|eot|> <|soi|> image (N) <|eoi|>     left-padded
    mmu  <|mmu|> <|soi|> image (N) <|eoi|> <|sot|> question answer <|eot|> [pad ...]  right-padded

Left-padding t2i (as Show-o does) puts the N image tokens at the same columns in every row,
L-1-N .. L-2, which is what the MaskGIT sampler fills; right-padding mmu puts the image at
columns 2 .. N+1 and leaves room for the answer. Positions count real tokens only, so the
padding side does not matter to the model (attention.position_ids).

Question vs answer: no separator token. The question is the text as written (SynthFaces
questions end in "?"), the answer is tokenised as " " + answer (a new word), and only the answer
tokens and <|eot|> carry loss. Captioning is an mmu example with an empty question
(CAPTION_QUESTION): the text right after <|sot|> is the caption, and all of it carries loss.
A VQA row may go on with more turns about the same image, `<|sot|> question answer <|eot|>` each
(`mmu_dialogue`, TrainConfig.vqa_turns); its first turn is laid out exactly as a single question.

Labels are aligned with the logits (labels[i] is what logits[i] should predict; IGNORE = -100):
    t2i  image columns hold the clean image ids x0 (unshifted: the trainer masks some of them
         in the input and the D3Diff loss reads the masked ones);
    mmu  labels[i] = input_ids[i + 1] where input_ids[i + 1] is an answer token or <|eot|>
         (next-token prediction, already shifted).

Captions longer than the text budget keep their longest prefix of whole sentences that fits
(SynthFaces states attributes in random order, so a cut drops some attributes but never leaves
half of one); `truncate_caption` returns the kept text, e.g. to score what a prompt asked for.
Caption dropout (10%, seeded) makes the caption empty: the unconditional prompt for CFG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .tasks import MMU, T2I

IGNORE = -100
CAPTION_QUESTION = ""            # an mmu example with an empty question is a captioning example
N_SPECIAL_PER_SEQUENCE = 5       # t2i: t2i sot eot soi eoi; mmu: mmu soi eoi sot eot
SENTENCE_ENDS = (".", "!", "?")


def encode_text(tokenizer, text: str) -> list[int]:
    """Text -> ids without any special tokens (BOS/EOS are Show-o's job, not the tokenizer's)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def truncate_caption(tokenizer, caption: str, max_tokens: int) -> tuple[list[int], str]:
    """(ids, kept text): the longest prefix of whole sentences with <= max_tokens tokens; if even
    the first sentence is longer, its first max_tokens tokens."""
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    enc = tokenizer(caption, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    if len(ids) <= max_tokens:
        return ids, caption
    cut = 0
    for n in range(max_tokens, 0, -1):           # n tokens kept; does token n-1 end a sentence?
        if caption[:offsets[n - 1][1]].rstrip().endswith(SENTENCE_ENDS):
            cut = n
            break
    cut = cut or max_tokens
    return ids[:cut], caption[:offsets[cut - 1][1]] if cut else ""


@dataclass(frozen=True)
class Example:
    input_ids: Tensor    # (L,)
    labels: Tensor       # (L,) aligned with the logits, IGNORE where no loss
    task: int            # MMU or T2I


class SequenceBuilder:
    """Turns captions / questions / image ids into fixed-length Show-o sequences."""

    def __init__(self, tokenizer, vocab, max_len: int, n_image_tokens: int):
        self.tokenizer, self.vocab = tokenizer, vocab
        self.max_len, self.n_image_tokens = int(max_len), int(n_image_tokens)
        if self.text_budget < 1:
            raise ValueError(f"max_len {max_len} leaves no room for text next to "
                             f"{n_image_tokens} image tokens and {N_SPECIAL_PER_SEQUENCE} "
                             f"special tokens")
        self.ids = {name: vocab.special_id(name) for name in
                    ("t2i", "mmu", "soi", "eoi", "sot", "eot", "pad")}

    @property
    def text_budget(self) -> int:
        """Text tokens (caption, or question + answer) that fit next to the image."""
        return self.max_len - self.n_image_tokens - N_SPECIAL_PER_SEQUENCE

    @property
    def t2i_image_columns(self) -> slice:
        """Columns of the image tokens in every t2i sequence (fixed by the left padding)."""
        return slice(self.max_len - 1 - self.n_image_tokens, self.max_len - 1)

    @property
    def mmu_image_columns(self) -> slice:
        return slice(2, 2 + self.n_image_tokens)

    def _image(self, image_ids) -> list[int]:
        """Image token ids (N,) -> list; None -> N MASK tokens (a generation prompt)."""
        if image_ids is None:
            return [self.vocab.mask_id] * self.n_image_tokens
        ids = torch.as_tensor(image_ids).reshape(-1)
        if ids.numel() != self.n_image_tokens:
            raise ValueError(f"expected {self.n_image_tokens} image tokens, got {ids.numel()}")
        if not self.vocab.is_image(ids).all():
            raise ValueError("image_ids must be image token ids (vocab.image_ids(codes))")
        return ids.tolist()

    def caption_ids(self, caption: str | None) -> list[int]:
        return truncate_caption(self.tokenizer, caption, self.text_budget)[0] if caption else []

    def t2i(self, caption: str | None, image_ids=None) -> Example:
        """A t2i example; caption None / "" is the unconditional (dropped-caption) prompt, and
        image_ids None gives an all-MASK image (what generation starts from)."""
        s = self.ids
        text = [s["t2i"], s["sot"]] + self.caption_ids(caption) + [s["eot"]]
        image = self._image(image_ids)
        seq = [s["pad"]] * (self.max_len - len(text) - len(image) - 2) + text \
            + [s["soi"]] + image + [s["eoi"]]
        labels = [IGNORE] * len(seq)
        if image_ids is not None:
            labels[self.t2i_image_columns] = image
        return Example(torch.tensor(seq), torch.tensor(labels), T2I)

    def mmu_prompt(self, image_ids, question: str = CAPTION_QUESTION) -> list[int]:
        """<|mmu|> <|soi|> image <|eoi|> <|sot|> question: what answer decoding continues."""
        s = self.ids
        return [s["mmu"], s["soi"]] + self._image(image_ids) + [s["eoi"], s["sot"]] \
            + encode_text(self.tokenizer, question)

    def _answer_ids(self, question: str, answer: str) -> list[int]:
        if question == CAPTION_QUESTION:
            return truncate_caption(self.tokenizer, answer, self.text_budget)[0]
        return encode_text(self.tokenizer, " " + answer.strip())

    def mmu(self, image_ids, question: str, answer: str) -> Example:
        """An mmu example; question "" (CAPTION_QUESTION) makes `answer` a caption, truncated."""
        question_ids = encode_text(self.tokenizer, question)
        answer_ids = self._answer_ids(question, answer)
        if len(question_ids) + len(answer_ids) > self.text_budget:
            raise ValueError(f"question + answer need {len(question_ids) + len(answer_ids)} "
                             f"tokens, only {self.text_budget} fit: {question!r} {answer!r}")
        return self._mmu_example(image_ids, [(question_ids, answer_ids)])

    def mmu_dialogue(self, image_ids, turns: list[tuple[str, str]]) -> Example:
        """Several questions about one image, `<|sot|> question answer <|eot|>` each, as many of
        `turns` as fit (the first always). The first turn is laid out exactly as `mmu`'s, so
        answering one question is unchanged, while a row supervises several answers for the
        price of one image (LLaVA-style multi-turn data, as Show-o's mmu training reads)."""
        if not turns:
            raise ValueError("mmu_dialogue needs at least one (question, answer) turn")
        first = self.mmu(image_ids, *turns[0])          # checks the first turn fits
        kept = [(encode_text(self.tokenizer, q), self._answer_ids(q, a)) for q, a in turns]
        room = self.text_budget - len(kept[0][0]) - len(kept[0][1])
        n = 1
        for q_ids, a_ids in kept[1:]:
            cost = len(q_ids) + len(a_ids) + 2           # + its own <|sot|> and <|eot|>
            if cost > room:
                break
            room, n = room - cost, n + 1
        return first if n == 1 else self._mmu_example(image_ids, kept[:n])

    def _mmu_example(self, image_ids, turns: list[tuple[list[int], list[int]]]) -> Example:
        """<|mmu|> <|soi|> image <|eoi|> then per turn <|sot|> question answer <|eot|>; labels on
        each answer and its <|eot|> (the logits one column earlier predict them)."""
        if image_ids is None:
            raise ValueError("an mmu example needs the image's token ids")
        s = self.ids
        seq = [s["mmu"], s["soi"]] + self._image(image_ids) + [s["eoi"]]
        labels = [IGNORE] * self.max_len
        for question_ids, answer_ids in turns:
            seq += [s["sot"]] + question_ids
            target = answer_ids + [s["eot"]]
            labels[len(seq) - 1:len(seq) - 1 + len(target)] = target
            seq += target
        seq += [s["pad"]] * (self.max_len - len(seq))
        return Example(torch.tensor(seq), torch.tensor(labels), MMU)

    def t2i_batch(self, captions: list[str | None]) -> Tensor:
        """(B, L) generation prompts with all-MASK images at `t2i_image_columns`."""
        return torch.stack([self.t2i(c).input_ids for c in captions])

    def mmu_prompt_batch(self, image_ids: Tensor, questions: list[str]) -> Tensor:
        """(B, P) mmu prompts left-padded to the longest, so every row decodes at column P."""
        if len(image_ids) != len(questions):
            raise ValueError(f"{len(image_ids)} images but {len(questions)} questions")
        prompts = [self.mmu_prompt(img, q) for img, q in zip(image_ids, questions)]
        width = max(len(p) for p in prompts)
        return torch.tensor([[self.ids["pad"]] * (width - len(p)) + p for p in prompts])


def collate(examples: list[Example]) -> dict[str, Tensor]:
    """Examples -> {"input_ids": (B, L), "labels": (B, L), "task": (B,)}."""
    if not examples:
        raise ValueError("collate needs at least one example")
    return {"input_ids": torch.stack([e.input_ids for e in examples]),
            "labels": torch.stack([e.labels for e in examples]),
            "task": torch.tensor([e.task for e in examples], dtype=torch.long)}


class UniFaceDataset(torch.utils.data.Dataset):
    """Mixed t2i / mmu examples of SynthFaces records: item 2r is record r as a t2i example,
    item 2r + 1 record r as an mmu example (a caption with probability `mmu_caption_prob`,
    otherwise one of its VQA pairs). Random choices are drawn from (seed, record, task, draw);
    `draw` is the epoch for __getitem__ (`set_epoch`), so each epoch sees other choices.
    With vqa_turns > 1 a VQA example asks up to that many of the record's questions, in a random
    order, as many as fit (`SequenceBuilder.mmu_dialogue`)."""

    def __init__(self, records: list[dict], image_codes: Tensor, builder: SequenceBuilder,
                 seed: int = 0, caption_dropout: float = 0.1, mmu_caption_prob: float = 0.25,
                 vqa_turns: int = 1):
        if vqa_turns < 1:
            raise ValueError(f"vqa_turns must be >= 1, got {vqa_turns}")
        if len(records) != len(image_codes):
            raise ValueError(f"{len(records)} records but {len(image_codes)} image code rows")
        if not 0.0 <= caption_dropout <= 1.0 or not 0.0 <= mmu_caption_prob <= 1.0:
            raise ValueError("caption_dropout and mmu_caption_prob must lie in [0, 1]")
        self.records, self.builder, self.seed = records, builder, seed
        self.image_ids = builder.vocab.image_ids(image_codes.reshape(len(records), -1))  # (N, n)
        self.caption_dropout, self.mmu_caption_prob = caption_dropout, mmu_caption_prob
        self.vqa_turns = int(vqa_turns)
        self.epoch = 0

    def __len__(self) -> int:
        return 2 * len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> Example:
        return self.example(i // 2, T2I if i % 2 == 0 else MMU, self.epoch)

    def example(self, record: int, task: int, draw: int = 0) -> Example:
        r = self.records[record]
        rng = np.random.default_rng([self.seed, record, task, draw])
        if task == T2I:
            dropped = rng.random() < self.caption_dropout
            return self.builder.t2i(None if dropped else r["caption"], self.image_ids[record])
        if not r.get("vqa") or rng.random() < self.mmu_caption_prob:
            return self.builder.mmu(self.image_ids[record], CAPTION_QUESTION, r["caption"])
        if self.vqa_turns == 1:
            qa = r["vqa"][int(rng.integers(len(r["vqa"])))]
            return self.builder.mmu(self.image_ids[record], qa["question"], qa["answer"])
        order = rng.permutation(len(r["vqa"]))[:self.vqa_turns]
        return self.builder.mmu_dialogue(self.image_ids[record], [
            (r["vqa"][i]["question"], r["vqa"][i]["answer"]) for i in order])
