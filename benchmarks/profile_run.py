"""A profile's unified model, trained by its own recipe (or that recipe cut to fewer steps) and
evaluated on validation and the compositional split: issue 5's cpu-profile numbers.

    .venv/bin/python benchmarks/profile_run.py --profile cpu                    # the full recipe
    .venv/bin/python benchmarks/profile_run.py --profile cpu --max-steps 2000   # a shorter one
    .venv/bin/python benchmarks/profile_run.py --profile cpu --max-steps 2000 \
        --splits validation --parts generation --guidance 4     # the same model, other settings
    .venv/bin/python benchmarks/profile_run.py --table

The run trains with the package's `training.train` into the artifact cache (the folder that
`load_or_train_model` uses for the same recipe, so the CLI's `evaluate --profile cpu` reuses a
full-recipe run), resuming an interrupted attempt. `--max-steps N` keeps every other setting of
the recipe and gives its cosine schedule N steps, so a session too short for the recipe still
trains one complete schedule. `--max-seconds` overrides the time limit: a run it stops is
evaluated as it stands, and the results say so ("stop_reason": "time").
`--caption-no-repeat-ngram 4` decodes the captions without repeating any 4 tokens (greedy
captions of a weak model loop on one phrase).

Each split is scored by `evaluate.evaluate` (VQA, caption attribute F1, generation accuracy by the
profile's oracle, with their baselines) on its first `--n` faces. Results merge into
benchmarks/results/profile_run.json, keyed "<profile>@<steps>" and then by split (and guidance,
when `--guidance` or `--caption-no-repeat-ngram` is given); the markdown tables are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from unif2ace_mini import profiles, runtime
from unif2ace_mini.evaluate import evaluate, format_table

RESULTS = Path(__file__).parent / "results" / "profile_run.json"


def train_profile(profile, max_steps: int | None, max_seconds: float | None):
    """(TrainResult, TrainingData) of the profile's recipe, max_steps / max_seconds overridden."""
    from unif2ace_mini.model.cache import model_cache_dir
    from unif2ace_mini.model.config import get_model_config
    from unif2ace_mini.training import get_train_config, load_training_data, train
    from unif2ace_mini.training.data import with_model_features

    data = load_training_data(profile)
    mc = get_model_config(profile).for_vocab(data.vocab)
    data = with_model_features(data, profile, mc)
    tc = get_train_config(profile)
    if max_steps is not None:
        tc = tc.replace(max_steps=max_steps)
    if max_seconds is not None:
        tc = tc.replace(max_seconds=max_seconds)
    out = model_cache_dir(profile.name, mc, tc, data.key)
    result = train(profile, out_dir=out, resume=True, model_config=mc, train_config=tc,
                   data=data)
    return result, data


def training_summary(result) -> dict:
    last = result.history[-1] if result.history else {}
    first = result.history[0] if result.history else {}
    return {"steps": result.step, "stop_reason": result.stop_reason,
            "train_seconds": round(result.seconds, 1), "out_dir": str(result.out_dir),
            "t2i_first": first.get("t2i"), "t2i_last": last.get("t2i"),
            "mmu_first": first.get("mmu"), "mmu_last": last.get("mmu"),
            "ema": result.ema_model is not None}


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--max-steps", type=int, default=None, help="the recipe's steps if unset")
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--n", type=int, default=128, help="faces evaluated per split")
    parser.add_argument("--splits", default="validation,compositional")
    parser.add_argument("--parts", default="vqa,caption,generation", help="what evaluate scores")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance of the generations (generate's default if "
                             "unset); results are stored under '<split>, guidance <w>'")
    parser.add_argument("--caption-no-repeat-ngram", type=int, default=0,
                        help="decode captions without repeating any n tokens (0: plain greedy); "
                             "stored under '<split>, captions without repeated <n>-grams'")
    parser.add_argument("--table", action="store_true", help="print the stored results only")
    args = parser.parse_args()
    if args.table:
        for key, entry in load_results().items():
            print(f"## {key}: {json.dumps(entry['training'])}")
            for split, result in entry["splits"].items():
                print(f"\n### {split}\n\n{format_table(result)}\n")
        return
    profile = profiles.get_profile(args.profile)
    runtime.setup(threads=profile.threads, device=profile.device)
    from unif2ace_mini.generate import Pipeline, builder_for
    from unif2ace_mini.tokenizers.cache import load_or_train_image_tokenizer

    result, data = train_profile(profile, args.max_steps, args.max_seconds)
    image_tok, _ = load_or_train_image_tokenizer(profile)
    model = result.best_model.eval()
    pipe = Pipeline(model, image_tok, data.text_tokenizer,
                    builder_for(model, data.text_tokenizer, image_tok), profile)
    key = f"{profile.name}@{result.step}"
    entry = load_results().get(key, {"splits": {}})     # other splits / guidances stay
    entry.update({"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "machine": runtime.machine_name(),
                  "training": training_summary(result), "n": args.n})
    for split in args.splits.split(","):
        tick = time.perf_counter()
        scores = evaluate(profile, pipeline=pipe, split=split, n=args.n,
                          parts=args.parts.split(","), guidance=args.guidance,
                          caption_no_repeat_ngram=args.caption_no_repeat_ngram)
        scores["seconds"] = round(time.perf_counter() - tick, 1)
        name = split
        if args.guidance is not None:
            name += f", guidance {args.guidance:g}"
        if args.caption_no_repeat_ngram:
            name += f", captions without repeated {args.caption_no_repeat_ngram}-grams"
        entry["splits"][name] = scores
        entry["loadavg_end"] = os.getloadavg()
        runtime.merge_json(RESULTS, key, entry)
        print(f"\n### {key}, {name}\n\n{format_table(scores)}\n", flush=True)


if __name__ == "__main__":
    main()
