"""`python -m unif2ace_mini generate | answer | evaluate ...`: the trained model from the shell.

    generate --prompt "A portrait of a person. They have red hair." --out face.png
    generate --attributes '{"hair_color": "red", "glasses": "round"}' --out face.png
    answer   --image face.png --question "What colour is the person's hair?"
    answer   --image face.png --caption
    evaluate --profile quick [--split validation --n 128]   -> runs/<profile>/evaluate-<split>.*

The package's __main__ owns the parser; it calls `add_cli(subparsers)` and then `args.func(args)`,
and turns ValueError / FileNotFoundError into a one-line error with exit code 2. Inputs are
checked *before* the model is loaded (or trained, which the command announces on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_cli(subparsers) -> None:
    g = subparsers.add_parser("generate", help="generate a face from a caption or attributes")
    g.add_argument("--prompt", help="a caption")
    g.add_argument("--attributes", help='instead of --prompt: JSON attributes, e.g. '
                                        '\'{"hair_color": "red"}\'')
    g.add_argument("--unconditional", action="store_true", help="generate with an empty prompt")
    g.add_argument("--out", required=True, help="output PNG path")
    g.add_argument("--profile", default="quick", help="quick | cpu | gpu | paper (default: quick)")
    g.add_argument("--steps", type=int, default=None, help="sampler steps")
    g.add_argument("--guidance", type=float, default=None, help="classifier-free guidance w")
    g.add_argument("--sampler", default="maskgit", choices=["maskgit", "ancestral"])
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--upscale", type=int, default=1, help="nearest-neighbour zoom of the PNG")
    g.set_defaults(func=run_generate)

    a = subparsers.add_parser("answer", help="answer a question about a face image, or caption it")
    a.add_argument("--image", required=True, help="an RGB image of the profile's size (PNG, ...)")
    what = a.add_mutually_exclusive_group(required=True)
    what.add_argument("--question", help="the question (a non-empty string)")
    what.add_argument("--caption", action="store_true", help="describe the image instead")
    a.add_argument("--profile", default="quick", help="quick | cpu | gpu | paper (default: quick)")
    a.add_argument("--decoding", default="greedy", choices=["greedy", "top-k"])
    a.add_argument("--top-k", type=int, default=5)
    a.add_argument("--temperature", type=float, default=1.0)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--max-new-tokens", type=int, default=None)
    a.add_argument("--no-repeat-ngram", type=int, default=0,
                   help="never repeat any n tokens (e.g. 4: stops caption loops; default 0: off)")
    a.set_defaults(func=run_answer)

    e = subparsers.add_parser("evaluate", help="VQA / caption / generation metrics beside "
                                                "baselines; writes JSON + markdown")
    e.add_argument("--profile", default="quick", help="quick | cpu | gpu | paper (default: quick)")
    e.add_argument("--split", default="validation",
                   help="validation | test | compositional (default: validation)")
    e.add_argument("--n", type=int, default=128, help="images evaluated (default 128)")
    e.add_argument("--parts", default="vqa,caption,generation", help="comma-separated subset")
    e.add_argument("--steps", type=int, default=None)
    e.add_argument("--guidance", type=float, default=None)
    e.add_argument("--sampler", default="maskgit", choices=["maskgit", "ancestral"])
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--caption-no-repeat-ngram", type=int, default=0,
                   help="decode captions without repeating any n tokens (default 0: greedy)")
    e.add_argument("--out", default=None, help="output folder (default runs/<profile>)")
    e.set_defaults(func=run_evaluate)


def _announce(message: str) -> None:
    print(f"[unif2ace_mini] {message}", file=sys.stderr, flush=True)


def prompt_from_args(args) -> str | dict | None:
    if args.prompt is not None and args.attributes is not None:
        raise ValueError("give --prompt or --attributes, not both")
    if args.unconditional and (args.prompt is not None or args.attributes is not None):
        raise ValueError("--unconditional takes no --prompt / --attributes")
    if args.attributes is not None:
        try:
            attrs = json.loads(args.attributes)
        except json.JSONDecodeError as err:
            raise ValueError(f"--attributes is not valid JSON: {err}") from None
        from .generate import attributes_caption
        attributes_caption(attrs)             # checks groups and values before any loading
        return attrs
    if args.prompt is not None:
        if not args.prompt.strip():
            raise ValueError("--prompt is empty; use --unconditional for an unconditional face")
        return args.prompt
    if not args.unconditional:
        raise ValueError("give --prompt, --attributes or --unconditional")
    return None


def run_generate(args) -> int:
    from PIL import Image

    from .generate import DEFAULT_GUIDANCE, DEFAULT_STEPS, generate, load_pipeline
    from .tokenizers.image import images_to_uint8

    prompt = prompt_from_args(args)
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must be a .png path, got {out}")
    if args.upscale < 1:
        raise ValueError(f"--upscale must be >= 1, got {args.upscale}")
    pipe = load_pipeline(args.profile, announce=_announce)
    result = generate(pipe.model, [prompt], image_tokenizer=pipe.image_tokenizer,
                      builder=pipe.builder,
                      steps=DEFAULT_STEPS if args.steps is None else args.steps,
                      guidance=DEFAULT_GUIDANCE if args.guidance is None else args.guidance,
                      sampler=args.sampler, temperature=args.temperature, seed=args.seed)
    image = Image.fromarray(images_to_uint8(result.images)[0])
    if args.upscale > 1:
        image = image.resize((image.width * args.upscale, image.height * args.upscale),
                             Image.NEAREST)
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out)
    print(json.dumps({"out": str(out), "caption": result.captions[0],
                      "network_calls": result.network_calls}))
    return 0


def load_image(path, image_size: int):
    """A (1, 3, S, S) float tensor in [-1, 1] from an image file; clear errors for a missing,
    unreadable or wrongly sized file (other modes such as RGBA or grey are converted to RGB)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from .tokenizers.image import images_from_uint8

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file {path}")
    try:
        with Image.open(path) as im:
            pixels = np.array(im.convert("RGB"))            # writable copy
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read {path} as an image: {err}") from None
    if pixels.shape[:2] != (image_size, image_size):
        raise ValueError(f"{path} is {pixels.shape[1]}x{pixels.shape[0]} pixels; this profile's "
                         f"model reads {image_size}x{image_size}")
    return images_from_uint8(pixels[None])


def image_features(profile, model_config, images) -> dict | None:
    """Encoder features of `images` when the model reads any (a sequence-level MoE with CLIP /
    face experts: the profile's encoders, trained first if missing), else None."""
    from .model.moe_config import feature_kinds

    kinds = feature_kinds(model_config)
    if not kinds:
        return None
    from .encoders import load_feature_extractors

    extractors = load_feature_extractors(profile)
    return {k: extractors[k](images).cpu() for k in kinds}


def run_answer(args) -> int:
    from . import profiles
    from .generate import load_pipeline
    from .understand import answer, caption, check_no_repeat_ngram

    profile = profiles.get_profile(args.profile)
    if args.question is not None and not args.question.strip():
        raise ValueError("--question is empty")
    check_no_repeat_ngram(args.no_repeat_ngram)
    image = load_image(args.image, profile.data.image_size)      # checked before loading
    pipe = load_pipeline(profile, announce=_announce)
    kw = dict(image_tokenizer=pipe.image_tokenizer, builder=pipe.builder,
              decoding=args.decoding, top_k=args.top_k, temperature=args.temperature,
              seed=args.seed, max_new_tokens=args.max_new_tokens,
              no_repeat_ngram=args.no_repeat_ngram,
              features=image_features(profile, pipe.model.config, image))
    if args.caption:
        text = caption(pipe.model, image, **kw)[0]
    else:
        text = answer(pipe.model, image, [args.question], **kw)[0]
    print(text)
    return 0


def run_evaluate(args) -> int:
    from . import profiles, runtime
    from .data.build import SPLITS
    from .evaluate import PARTS, evaluate, format_table
    from .generate import load_pipeline
    from .understand import check_no_repeat_ngram

    profile = profiles.get_profile(args.profile)
    if args.split not in SPLITS or args.split == "train":
        raise ValueError(f"--split must be one of {[s for s in SPLITS if s != 'train']}")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - set(PARTS):
        raise ValueError(f"--parts must be a comma-separated subset of {PARTS}")
    check_no_repeat_ngram(args.caption_no_repeat_ngram)
    pipe = load_pipeline(profile, announce=_announce)
    results = evaluate(profile, pipeline=pipe, split=args.split, n=args.n, parts=parts,
                       steps=args.steps, guidance=args.guidance, sampler=args.sampler,
                       seed=args.seed, caption_no_repeat_ngram=args.caption_no_repeat_ngram)
    out = Path(args.out or f"runs/{profile.name}")
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"evaluate-{args.split}"
    runtime.atomic_write_bytes(stem.with_suffix(".json"), json.dumps(results, indent=1).encode())
    runtime.atomic_write_bytes(stem.with_suffix(".md"), format_table(results).encode())
    print(format_table(results))
    print(f"[unif2ace_mini] wrote {stem}.json and {stem}.md", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (tests, or before the lead wires `add_cli` into __main__)."""
    parser = argparse.ArgumentParser(prog="unif2ace_mini")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
