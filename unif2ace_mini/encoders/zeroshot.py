"""Zero-shot attribute retrieval and caption retrieval: how much the CLIP embedding space knows.

Zero-shot, as in the CLIP paper: for each attribute group, write one prompt per value from the
taxonomy's own caption phrases in the caption's sentence frame ("The person is wearing round
glasses."), average the text embeddings of a value's synonyms (prompt ensembling), and label each
image with the value whose prompt is nearest. No classifier is trained.

Values without a caption phrase (hair colour "none" on a bald head, mouth "covered" by a mask)
cannot be prompted; images showing them are left out of that group's score. Next to each accuracy
we report chance (1 / number of prompted values) and the majority rate (always answering the most
common value), because several groups are skewed (80% of faces wear no mask).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..data.groups import TAXONOMY
from ..data.taxonomy import Taxonomy

FRAME_TEMPLATES = {
    "has": "The person has {x}.",
    "wears": "The person is wearing {x}.",
    "is": "The person is {x}.",
    "looks": "The person looks {x}.",
    "bg": "The person is pictured against {x}.",
    "hair": "The person has {x} hair.",
}


def attribute_prompts(group: str, taxonomy: Taxonomy = TAXONOMY) -> dict[str, list[str]]:
    """{value: [one prompt per caption phrase]} for the group's values that have phrases."""
    g = taxonomy.group(group)
    template = FRAME_TEMPLATES[g.frame]
    return {v: [template.format(x=p) for p in g.phrases[v]] for v in g.values if g.phrases.get(v)}


def zero_shot_accuracy(image_emb: torch.Tensor, labels: torch.Tensor,
                       encode_texts: Callable[[list[str]], torch.Tensor],
                       taxonomy: Taxonomy = TAXONOMY) -> dict:
    """Per-group zero-shot accuracy of normalised image embeddings (N, D) against labels (N, G).

    encode_texts(list of prompts) -> normalised text embeddings (T, D).
    Returns {"per_group": {group: {accuracy, chance, majority, n_values, n_images}},
             "mean", "chance_mean", "majority_mean"} (means over the scored groups).
    """
    if image_emb.ndim != 2 or labels.shape != (len(image_emb), len(taxonomy)):
        raise ValueError(f"need image embeddings (N, D) and labels (N, {len(taxonomy)}), got "
                         f"{tuple(image_emb.shape)} and {tuple(labels.shape)}")
    per_group = {}
    for gi, g in enumerate(taxonomy.groups):
        prompts = attribute_prompts(g.name, taxonomy)
        if len(prompts) < 2:
            continue
        values = list(prompts)
        texts = [p for v in values for p in prompts[v]]
        emb = encode_texts(texts)                                             # (T, D)
        owner = torch.tensor([k for k, v in enumerate(values) for _ in prompts[v]])
        classes = torch.zeros(len(values), emb.shape[1]).index_add_(0, owner, emb)
        classes = torch.nn.functional.normalize(classes, dim=-1)              # (V, D)
        value_index = torch.tensor([g.index(v) for v in values])
        true = labels[:, gi]
        scored = torch.isin(true, value_index)
        if not scored.any():
            continue
        pred = value_index[(image_emb[scored] @ classes.T).argmax(1)]
        counts = torch.bincount(true[scored], minlength=len(g.values))
        per_group[g.name] = {"accuracy": float((pred == true[scored]).float().mean()),
                             "chance": 1.0 / len(values),
                             "majority": float(counts.max() / scored.sum()),
                             "n_values": len(values), "n_images": int(scored.sum())}
    mean = lambda key: sum(r[key] for r in per_group.values()) / max(len(per_group), 1)
    return {"per_group": per_group, "mean": mean("accuracy"), "chance_mean": mean("chance"),
            "majority_mean": mean("majority")}


def retrieval_recall(image_emb: torch.Tensor, text_emb: torch.Tensor,
                     ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Recall@k of matching image i with caption i among all N captions, both directions."""
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"need one caption per image, got {tuple(image_emb.shape)} images and "
                         f"{tuple(text_emb.shape)} captions")
    sim = image_emb @ text_emb.T                                              # (N, N)
    target = torch.arange(len(sim))
    out = {}
    for name, s in (("image_to_text", sim), ("text_to_image", sim.T)):
        rank = (s > s[target, target].unsqueeze(1)).sum(1)   # how many beat the true partner
        for k in ks:
            out[f"{name}_r@{k}"] = float((rank < k).float().mean())
    out["chance_r@1"] = 1.0 / len(sim)
    return out
