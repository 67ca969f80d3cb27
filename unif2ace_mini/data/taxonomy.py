"""Taxonomy mechanics: attribute groups, consistency rules, validation, label encoding, JSON.

The table itself (which groups, values, phrases and rules exist) lives in `groups.py`; this file
only says what a group and a rule are and how attributes are checked, sampled and encoded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

FAMILIES = ("appearance", "emotion", "action")
FRAMES = ("has", "wears", "is", "looks", "bg", "hair")


@dataclass(frozen=True)
class Group:
    """One attribute group: a categorical variable with caption phrases and VQA templates."""
    name: str
    family: str                       # appearance | emotion | action
    values: tuple[str, ...]
    weights: tuple[float, ...]        # sampling prior (renormalised over the allowed values)
    phrases: dict = field(compare=False)  # value -> tuple of caption phrases (synonyms)
    frame: str = "has"                # how phrases sit in a caption sentence (see groups.py)
    question: str = ""                # the what / which question; its answer is the value
    qtype: str = "which_kind"         # what_color | which_kind | yes_no
    presence: str | None = None       # "Is the person wearing glasses?": yes iff value != absent
    identity: bool = False            # fixed per identity rather than per image
    absent: str | None = None         # the "nothing there" value, if the group has one
    count: str | None = None          # counting question, answered by taxonomy.count_answer

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"group {self.name!r}: family must be one of {FAMILIES}")
        if self.frame not in FRAMES:
            raise ValueError(f"group {self.name!r}: frame must be one of {FRAMES}")
        if len(self.values) != len(self.weights) or len(set(self.values)) != len(self.values):
            raise ValueError(f"group {self.name!r}: values must be unique, one weight each")

    def index(self, value: str) -> int:
        try:
            return self.values.index(value)
        except ValueError:
            raise ValueError(f"unknown value {value!r} for attribute group {self.name!r}; "
                             f"valid values: {list(self.values)}") from None


@dataclass(frozen=True)
class Rule:
    """If attribute `if_group` takes one of `if_values`, then `then_group` must be in `allowed`."""
    if_group: str
    if_values: tuple[str, ...]
    then_group: str
    allowed: tuple[str, ...]

    def applies(self, attrs: Mapping[str, str]) -> bool:
        return attrs.get(self.if_group) in self.if_values

    def __str__(self) -> str:
        return f"{self.if_group} in {list(self.if_values)} => {self.then_group} in {list(self.allowed)}"


class Taxonomy:
    """Groups in sampling order plus the rules and held-out pairs that tie them together."""

    def __init__(self, groups: Sequence[Group], rules: Sequence[Rule] = (),
                 compositional_pairs: Sequence = ()):
        self.groups = tuple(groups)
        self.rules = tuple(rules)
        self.compositional_pairs = tuple(tuple(tuple(p) for p in pair)
                                         for pair in compositional_pairs)
        self.names = tuple(g.name for g in self.groups)
        self._by_name = {g.name: g for g in self.groups}
        if len(self._by_name) != len(self.groups):
            raise ValueError("attribute group names must be unique")
        order = {n: i for i, n in enumerate(self.names)}
        for rule in self.rules:  # rules must point forward so ordered sampling can honour them
            for name, vals in ((rule.if_group, rule.if_values), (rule.then_group, rule.allowed)):
                for v in vals:
                    self.group(name).index(v)
            if order[rule.if_group] >= order[rule.then_group]:
                raise ValueError(f"rule '{rule}' must condition on an earlier group")
        for pair in self.compositional_pairs:
            for name, value in pair:
                self.group(name).index(value)

    def __len__(self) -> int:
        return len(self.groups)

    def group(self, name: str) -> Group:
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(f"unknown attribute group {name!r}; valid groups: "
                             f"{list(self.names)}") from None

    def families(self) -> dict[str, list[str]]:
        return {f: [g.name for g in self.groups if g.family == f] for f in FAMILIES}

    # --- validation ---------------------------------------------------------------------------
    def violations(self, attrs: Mapping[str, str]) -> list[str]:
        """Broken consistency rules, as readable strings (empty when consistent)."""
        return [str(r) for r in self.rules
                if r.applies(attrs) and r.then_group in attrs and attrs[r.then_group] not in r.allowed]

    def validate(self, attrs: Mapping[str, str], complete: bool = True) -> dict[str, str]:
        """Check names, values and rules; raise ValueError naming the problem. Returns a copy."""
        for name, value in attrs.items():
            self.group(name).index(value)
        if complete and (missing := [n for n in self.names if n not in attrs]):
            raise ValueError(f"attributes are missing groups {missing}")
        if broken := self.violations(attrs):
            raise ValueError(f"inconsistent attributes {dict(attrs)}: broken rules {broken}")
        return dict(attrs)

    def allowed(self, name: str, attrs: Mapping[str, str]) -> tuple[str, ...]:
        """Values of `name` allowed by the rules given the (earlier) attributes decided so far."""
        values = set(self.group(name).values)
        for rule in self.rules:
            if rule.then_group == name and rule.applies(attrs):
                values &= set(rule.allowed)
        return tuple(v for v in self.group(name).values if v in values)

    def held_out_pairs(self, attrs: Mapping[str, str]) -> list[int]:
        """Indices of the compositional pairs that `attrs` contains."""
        return [i for i, pair in enumerate(self.compositional_pairs)
                if all(attrs.get(g) == v for g, v in pair)]

    # --- sampling -----------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, fixed: Mapping[str, str] | None = None,
               max_tries: int = 1000) -> dict[str, str]:
        """Draw consistent attributes group by group; `fixed` pins some values (identity, pairs).

        Pinned values can clash with earlier draws (a pinned hair colour needs bald=no), so the
        draw is repeated until the rules hold: cheap, since clashes are rare.
        """
        fixed = dict(fixed or {})
        self.validate(fixed, complete=False)
        for _ in range(max_tries):
            attrs: dict[str, str] = {}
            for g in self.groups:
                if g.name in fixed:
                    attrs[g.name] = fixed[g.name]
                    continue
                options = self.allowed(g.name, attrs)
                w = np.array([g.weights[g.values.index(v)] for v in options])
                w = w / w.sum() if w.sum() > 0 else np.full(len(options), 1 / len(options))
                attrs[g.name] = options[rng.choice(len(options), p=w)] if options else None
            if None not in attrs.values() and not self.violations(attrs):
                return attrs
        raise ValueError(f"could not sample attributes consistent with {fixed}")

    # --- label encoding -----------------------------------------------------------------------
    def encode(self, attrs: Mapping[str, str]) -> np.ndarray:
        """Attributes -> label indices, one per group in taxonomy order. (G,) int64"""
        for name in attrs:
            self.group(name)
        if missing := [n for n in self.names if n not in attrs]:
            raise ValueError(f"attributes are missing groups {missing}")
        return np.array([self._by_name[n].index(attrs[n]) for n in self.names], dtype=np.int64)

    def decode(self, labels: Sequence[int]) -> dict[str, str]:
        return {g.name: g.values[int(i)] for g, i in zip(self.groups, labels)}

    def num_classes(self) -> list[int]:
        return [len(g.values) for g in self.groups]

    # --- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "groups": [dataclasses.asdict(g) | {"phrases": {k: list(v) for k, v in g.phrases.items()}}
                       for g in self.groups],
            "rules": [dataclasses.asdict(r) for r in self.rules],
            "compositional_pairs": [[list(p) for p in pair] for pair in self.compositional_pairs],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Taxonomy":
        groups = [Group(**{**g, "values": tuple(g["values"]), "weights": tuple(g["weights"]),
                           "phrases": {k: tuple(v) for k, v in g["phrases"].items()}})
                  for g in d["groups"]]
        rules = [Rule(r["if_group"], tuple(r["if_values"]), r["then_group"], tuple(r["allowed"]))
                 for r in d["rules"]]
        return cls(groups, rules, d.get("compositional_pairs", ()))

    def fingerprint(self) -> str:
        """Short hash of the whole taxonomy: checkpoints trained on another taxonomy refuse to load."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def count_answer(group: str, value: str) -> str:
    """Answer to a group's counting question (how many closed eyes, how many earrings)."""
    if group == "eyes":
        return {"wink": "1", "closed": "2"}.get(value, "0")
    if group == "earrings":
        return "0" if value == "none" else "2"
    raise ValueError(f"attribute group {group!r} has no counting question")
