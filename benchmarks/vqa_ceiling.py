"""How much VQA accuracy do the image tokens support? (context for issue 5's VQA target)

    .venv/bin/python benchmarks/vqa_ceiling.py                  # quick profile
    .venv/bin/python benchmarks/vqa_ceiling.py --profile cpu

Answers every validation question with `evaluate.answer_from_attributes` from the attributes the
profile's oracle reads off (a) the original faces and (b) the image tokenizer's reconstructions,
which carry exactly the information the unified model receives as image tokens. Beside them: the
true attributes (must give 1.0) and the majority answer. The oracle is a CNN trained on every
attribute label of ~15,000 faces, so (b) is what a strong dedicated reader of the decoded tokens
reaches, a yardstick for the unified model's VQA (not a hard upper bound). Reported for the first
64 faces (what notebook 08 scores) and for all of them. Results merge into
benchmarks/results/vqa_ceiling.json, keyed by profile.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unif2ace_mini import profiles, runtime
from unif2ace_mini.data.build import build_or_load
from unif2ace_mini.data.dataset import load_split, load_tensors, to_unit_range
from unif2ace_mini.data.oracle import load_or_train_oracle
from unif2ace_mini.evaluate import (answer_from_attributes, majority_answers, majority_predict,
                                    vqa_scores)
from unif2ace_mini.tokenizers import load_or_train_image_tokenizer

RESULTS = Path(__file__).parent / "results" / "vqa_ceiling.json"


def readers_vqa(records, readers: dict[str, list[dict]], majority: dict, n: int) -> dict:
    """{reader: vqa_scores} on the questions of the first n records."""
    pairs = [(i, q) for i, r in enumerate(records[:n]) for q in r["vqa"]]
    answers, types = [q["answer"] for _, q in pairs], [q["type"] for _, q in pairs]
    out = {name: vqa_scores([answer_from_attributes(q, attrs[i]) for i, q in pairs], answers,
                            types) for name, attrs in readers.items()}
    out["majority answer"] = vqa_scores(majority_predict(majority, [q["question"] for _, q in pairs],
                                                         types), answers, types)
    return {"n_images": min(n, len(records)), "n_questions": len(pairs), **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args()
    profile = profiles.get_profile(args.profile)
    runtime.setup(0, threads=profile.threads)
    path = build_or_load(profile.data)
    records = load_split(path, "validation")
    faces = to_unit_range(load_tensors(path, "validation")["images"])   # (N, 3, H, W)
    oracle, _ = load_or_train_oracle(profile)
    tokenizer, _ = load_or_train_image_tokenizer(profile)
    reconstructions = tokenizer.reconstruct(faces)                     # batched, no grad
    readers = {"true attributes": [r["attributes"] for r in records],
               "oracle on originals": oracle.predict(faces),
               "oracle on reconstructions": oracle.predict(reconstructions)}
    majority = majority_answers(load_split(path, "train"))
    result = {f"first {n}" if n < len(records) else "all": readers_vqa(records, readers, majority, n)
              for n in (64, len(records))}
    assert all(r["true attributes"]["accuracy"] == 1.0 for r in result.values())
    for key, r in result.items():
        print(f"{args.profile}, {key}: {r['n_images']} faces, {r['n_questions']} questions")
        for name in ("oracle on originals", "oracle on reconstructions", "majority answer"):
            per_type = ", ".join(f"{t} {v:.2f}" for t, v in sorted(r[name]["per_type"].items()))
            print(f"  {name:26s} {r[name]['accuracy']:.3f}   ({per_type})")
    runtime.merge_json(RESULTS, args.profile, result)


if __name__ == "__main__":
    main()
