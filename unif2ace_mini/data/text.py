"""Captions, the caption parser and VQA pairs, all from the taxonomy's phrases and templates.

Captions are long and varied (several sentence templates, synonyms, random order, a random
number of attributes per caption) but gender-neutral and *exact*: they state only true
attributes, and `parse_caption` maps a caption back to exactly the (group -> value) it states.
That parser is also the Desc-score analogue later: it reads generated captions the same way.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Mapping

import numpy as np

from .groups import TAXONOMY
from .taxonomy import Taxonomy, count_answer

OPENERS = ("", "A portrait of a person.", "A close-up portrait of someone.",
           "A headshot of a person.", "A digital portrait.", "An illustrated portrait.")
SUBJECTS = ("The person", "This person", "The individual", "The subject")
VERBS = {  # frame -> (singular verb, plural verb) options; "They" takes the plural
    "has": (("has", "have"),),
    "wears": (("wears", "wear"), ("is wearing", "are wearing")),
    "is": (("is", "are"),),
    "looks": (("looks", "look"), ("seems", "seem"), ("appears", "appear")),
}
BACKGROUND_TEMPLATES = ("{S} {is} pictured against {x}.", "Behind them is {x}.",
                        "The portrait has {x}.", "The photo shows {x} behind them.")
HAIR_GROUPS = ("hair_length", "hair_type", "hair_color")   # adjective order in "long curly red hair"
VERIFY = {"has": "Does the person have {x}?", "wears": "Is the person wearing {x}?",
          "is": "Is the person {x}?", "looks": "Does the person look {x}?",
          "bg": "Is the person pictured against {x}?", "hair": "Does the person have {x} hair?"}
QTYPE_WEIGHTS = {"which_kind": 0.3, "what_color": 0.2, "yes_no": 0.25, "is_there": 0.15,
                 "counting": 0.1}


def _join(items: list[str], rng) -> str:
    if len(items) == 1:
        return items[0]
    sep = ", and " if rng.random() < 0.3 and len(items) > 2 else " and "
    return ", ".join(items[:-1]) + sep + items[-1]


def make_caption(attrs: Mapping[str, str], rng: np.random.Generator, mean_attrs: float = 17.7,
                 std_attrs: float = 4.0, min_attrs: int = 4,
                 taxonomy: Taxonomy = TAXONOMY) -> tuple[str, dict[str, str]]:
    """A caption stating a random subset of the true attributes; returns (caption, stated)."""
    taxonomy.validate(attrs)
    sayable = [g for g in taxonomy.groups if taxonomy.group(g.name).phrases.get(attrs[g.name])]
    k = int(np.clip(round(rng.normal(mean_attrs, std_attrs)), min(min_attrs, len(sayable)),
                    len(sayable)))
    # "Nothing there" is mentioned less often than what is there, as people describe faces.
    w = np.array([0.35 if attrs[g.name] == g.absent else 1.0 for g in sayable])
    chosen = [sayable[i] for i in sorted(rng.choice(len(sayable), size=k, replace=False, p=w / w.sum()))]
    stated = {g.name: attrs[g.name] for g in chosen}

    pick = lambda g: g.phrases[attrs[g.name]][rng.integers(len(g.phrases[attrs[g.name]]))]
    by_frame: dict[str, list[str]] = {}
    hair = [g for g in chosen if g.frame == "hair"]
    if hair:
        hair.sort(key=lambda g: HAIR_GROUPS.index(g.name))
        sep = ", " if rng.random() < 0.4 else " "
        by_frame.setdefault("has", []).append(sep.join(pick(g) for g in hair) + " hair")
    for g in chosen:
        if g.frame != "hair":
            by_frame.setdefault(g.frame, []).append(pick(g))

    sentences = []
    for frame, items in by_frame.items():
        rng.shuffle(items)
        chunks = [items[i:i + 4] for i in range(0, len(items), 4)]
        for chunk in chunks:
            sentences.append((frame, chunk))
    rng.shuffle(sentences)
    out = [OPENERS[rng.integers(len(OPENERS))]]
    for i, (frame, chunk) in enumerate(sentences):
        plural = i > 0 and rng.random() < 0.6        # "They have ..." after the first sentence
        subject = "They" if plural else SUBJECTS[rng.integers(len(SUBJECTS))]
        if frame == "bg":
            t = BACKGROUND_TEMPLATES[rng.integers(len(BACKGROUND_TEMPLATES))]
            out.append(t.format(S=subject, x=_join(chunk, rng), **{"is": "are" if plural else "is"}))
            continue
        options = VERBS[frame]
        verb = options[rng.integers(len(options))][1 if plural else 0]
        out.append(f"{subject} {verb} {_join(chunk, rng)}.")
    return " ".join(s for s in out if s), stated


@lru_cache(maxsize=8)
def _phrase_table(taxonomy: Taxonomy):
    table, adjectives = {}, {}
    for g in taxonomy.groups:
        for value, phrases in g.phrases.items():
            for p in phrases:
                target = adjectives if g.frame == "hair" else table
                if p.lower() in target and target[p.lower()] != (g.name, value):
                    raise ValueError(f"ambiguous caption phrase {p!r}: {target[p.lower()]} and "
                                     f"{(g.name, value)}")
                target[p.lower()] = (g.name, value)
    alt = lambda keys: "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    adj = alt(adjectives)
    hair_re = re.compile(rf"\b((?:{adj})(?:,? (?:{adj}))*) hair\b")
    adj_re = re.compile(rf"\b({adj})\b")
    phrase_re = re.compile(rf"\b({alt(table)})(?![\w-])")
    return table, adjectives, hair_re, adj_re, phrase_re


def parse_caption(caption: str, taxonomy: Taxonomy = TAXONOMY) -> dict[str, str]:
    """Map a caption to the attributes it states (the first mention wins on a contradiction)."""
    table, adjectives, hair_re, adj_re, phrase_re = _phrase_table(taxonomy)
    text = caption.lower()
    found: dict[str, str] = {}
    for m in hair_re.finditer(text):
        for a in adj_re.findall(m.group(1)):
            group, value = adjectives[a]
            found.setdefault(group, value)
    text = hair_re.sub(" ", text)   # so "red" in "red hair" cannot be read again elsewhere
    for m in phrase_re.finditer(text):
        group, value = table[m.group(1)]
        found.setdefault(group, value)
    return found


def make_vqa(attrs: Mapping[str, str], rng: np.random.Generator, n: int = 8,
             taxonomy: Taxonomy = TAXONOMY) -> list[dict[str, str]]:
    """n question/answer pairs about distinct groups, mixing question types; short exact answers."""
    taxonomy.validate(attrs)
    makers = {t: [] for t in QTYPE_WEIGHTS}
    for g in taxonomy.groups:
        value = attrs[g.name]
        if g.question and not (value == g.absent and g.presence is None and g.qtype != "yes_no"):
            makers[g.qtype].append((g.name, lambda g=g, v=value: (g.question, v)))
        if g.presence:
            makers["is_there"].append(
                (g.name, lambda g=g, v=value: (g.presence, "no" if v == g.absent else "yes")))
        if g.count:
            makers["counting"].append((g.name, lambda g=g, v=value: (g.count, count_answer(g.name, v))))
        if g.qtype != "yes_no":
            makers["yes_no"].append((g.name, lambda g=g, v=value: _verify(g, v, rng)))
    qa, used = [], set()
    types = list(QTYPE_WEIGHTS)
    p = np.array([QTYPE_WEIGHTS[t] for t in types])
    for _ in range(20 * n):
        if len(qa) == n:
            break
        t = types[rng.choice(len(types), p=p / p.sum())]
        options = [(name, make) for name, make in makers[t] if name not in used]
        if not options:
            continue
        name, make = options[rng.integers(len(options))]
        q = make()
        if q is None:
            continue
        used.add(name)
        qa.append({"question": q[0], "answer": q[1], "group": name, "type": t})
    return qa


def _verify(g, value: str, rng) -> tuple[str, str] | None:
    """'Does the person have curly hair?': half the time about the true value, else a false one.
    Never asked when the image hides the answer (closed eyes, a masked mouth)."""
    options = [v for v in g.values if v != g.absent and g.phrases.get(v)]
    if not options or (value != g.absent and not g.phrases.get(value)):
        return None
    ask_true = value in options and rng.random() < 0.5
    choice = value if ask_true else options[rng.integers(len(options))]
    phrase = g.phrases[choice][rng.integers(len(g.phrases[choice]))]
    return VERIFY[g.frame].format(x=phrase), "yes" if choice == value else "no"
