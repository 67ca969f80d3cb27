"""Face verification on held-out people: same person or not, from the cosine of two embeddings.

Protocol (LFW-style, two folds with disjoint people):
  - the held-out identities are split at random into two folds;
  - in each fold, positive pairs are images of the same person and negative pairs are images of
    two different people of that fold, as many as positives (so chance is 50%);
  - the threshold that is best on one fold is applied to the other, and the reported accuracy
    is the mean of the two; ROC AUC over all pairs needs no threshold at all.
"""

from __future__ import annotations

import numpy as np
import torch


def verification_pairs(identity_ids: torch.Tensor, max_pairs: int, seed: int) -> dict:
    """Balanced pairs: {"i", "j" (P,) image indices, "same" (P,) bool, "fold" (P,) 0/1}."""
    ids = identity_ids.numpy()
    rng = np.random.default_rng([seed, 31337])
    people = rng.permutation(np.unique(ids))
    fold_of = {int(p): k % 2 for k, p in enumerate(people)}
    out = {"i": [], "j": [], "same": [], "fold": []}
    per_fold = max_pairs // 4                       # positives per fold (as many negatives)
    for fold in (0, 1):
        members = np.flatnonzero([fold_of[int(p)] == fold for p in ids])
        groups = [members[ids[members] == p] for p in np.unique(ids[members])]
        pos = np.array([(a, b) for g in groups for x, a in enumerate(g) for b in g[x + 1:]],
                       dtype=np.int64).reshape(-1, 2)
        if len(pos) == 0 or len(groups) < 2:
            raise ValueError(f"verification fold {fold} has no same-person pair or fewer than two "
                             "people: hold out more identities or use more images")
        pos = pos[rng.permutation(len(pos))[:per_fold]]
        neg = []
        while len(neg) < len(pos):                  # rejection sampling: different people only
            a, b = rng.choice(members, size=2, replace=False)
            if ids[a] != ids[b]:
                neg.append((a, b))
        for pairs, same in ((pos, True), (np.array(neg), False)):
            out["i"].append(pairs[:, 0])
            out["j"].append(pairs[:, 1])
            out["same"].append(np.full(len(pairs), same))
            out["fold"].append(np.full(len(pairs), fold))
    return {k: torch.from_numpy(np.concatenate(v)) for k, v in out.items()}


def best_threshold(scores: torch.Tensor, same: torch.Tensor) -> tuple[float, float]:
    """The cosine threshold (predict "same" when score > t) with the best accuracy: (t, acc)."""
    order = torch.argsort(scores)
    s, y = scores[order], same[order].float()
    # Threshold just below position k: the first k pairs are called "different".
    neg_below = torch.cat([torch.zeros(1), torch.cumsum(1 - y, 0)])          # (P+1,)
    pos_above = y.sum() - torch.cat([torch.zeros(1), torch.cumsum(y, 0)])
    acc = (neg_below + pos_above) / len(s)
    k = int(acc.argmax())
    lo = s[k - 1] if k > 0 else s[0] - 1
    hi = s[k] if k < len(s) else s[-1] + 1
    return float((lo + hi) / 2), float(acc[k])


def roc_auc(scores: torch.Tensor, same: torch.Tensor) -> float:
    """Probability that a random positive pair scores above a random negative one (ties: 1/2)."""
    pos, neg = scores[same], scores[~same]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("ROC AUC needs both positive and negative pairs")
    neg = torch.sort(neg).values
    below = torch.searchsorted(neg, pos, right=False).double()      # negatives strictly below
    ties = torch.searchsorted(neg, pos, right=True).double() - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def verification_report(emb: torch.Tensor, identity_ids: torch.Tensor, max_pairs: int,
                        seed: int) -> dict:
    """Two-fold verification accuracy and ROC AUC of normalised embeddings (N, D)."""
    if len(emb) != len(identity_ids):
        raise ValueError(f"{len(emb)} embeddings but {len(identity_ids)} identity ids")
    pairs = verification_pairs(identity_ids, max_pairs, seed)
    scores = (emb[pairs["i"]] * emb[pairs["j"]]).sum(-1)                     # (P,) cosines
    accs, thresholds = [], []
    for fit in (0, 1):
        t, _ = best_threshold(scores[pairs["fold"] == fit], pairs["same"][pairs["fold"] == fit])
        test = pairs["fold"] != fit
        accs.append(float(((scores[test] > t) == pairs["same"][test]).float().mean()))
        thresholds.append(t)
    same = pairs["same"]
    return {"accuracy": sum(accs) / 2, "fold_accuracy": accs, "thresholds": thresholds,
            "roc_auc": roc_auc(scores, same), "n_pairs": len(scores),
            "n_people": int(len(torch.unique(identity_ids))), "n_images": len(emb),
            "mean_cos_same": float(scores[same].mean()), "mean_cos_diff": float(scores[~same].mean())}


def pixel_embeddings(images: torch.Tensor) -> torch.Tensor:
    """The baseline an identity encoder must beat: centred raw pixels, L2-normalised. (N, 3*H*W)"""
    x = images.float().flatten(1)
    return torch.nn.functional.normalize(x - x.mean(0), dim=-1)
