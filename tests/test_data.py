"""SynthFaces taxonomy, sampling, renderer and text: exact ground truth or it is useless."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from unif2ace_mini.data import (COMPOSITIONAL_PAIRS, TAXONOMY, Taxonomy, make_caption,
                                make_identity, make_vqa, parse_caption, render,
                                sample_image_attributes)
from unif2ace_mini.data.taxonomy import count_answer
from unif2ace_mini.evaluate import answer_from_attributes


def _samples(n: int, seed: int = 0):
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        identity = make_identity(seed, i % 97)
        out.append((sample_image_attributes(rng, identity), rng, identity))
    return out


@pytest.fixture(scope="module")
def samples():
    return _samples(1500)


def test_taxonomy_is_large_and_spans_three_families():
    fams = TAXONOMY.families()
    assert len(TAXONOMY) >= 30
    assert all(fams[f] for f in ("appearance", "emotion", "action"))
    for name in ("hair_color", "hair_length", "hair_type", "hairline", "bangs", "bald", "beard",
                 "mustache", "sideburns", "glasses", "hat", "earrings", "necklace", "mask",
                 "skin_tone", "freckles", "wrinkles", "face_shape", "eye_color", "eyebrows",
                 "lipstick", "background", "emotion", "mouth", "eyes", "head_turn", "head_tilt"):
        TAXONOMY.group(name)
    assert {"neutral", "happy", "surprised", "angry", "sad"} <= set(TAXONOMY.group("emotion").values)
    assert {"5 o'clock shadow", "goatee", "full"} <= set(TAXONOMY.group("beard").values)


def test_unknown_group_or_value_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown attribute group 'hair_colour'.*hair_color"):
        TAXONOMY.group("hair_colour")
    with pytest.raises(ValueError, match=r"unknown value 'purple'.*'black'"):
        TAXONOMY.validate({"hair_color": "purple"}, complete=False)
    with pytest.raises(ValueError, match="missing groups"):
        TAXONOMY.encode({"hair_color": "red"})


def test_taxonomy_json_round_trip_keeps_the_fingerprint():
    again = Taxonomy.from_dict(__import__("json").loads(TAXONOMY.to_json()))
    assert again.fingerprint() == TAXONOMY.fingerprint() and again.names == TAXONOMY.names


def test_sampled_attributes_obey_every_rule(samples):
    for attrs, _, identity in samples:
        assert TAXONOMY.violations(attrs) == []
        assert all(attrs[k] == v for k, v in identity.attributes.items() if k != "eye_color")
        # the identity's eye colour shows unless the eyes are closed (then it is "not visible")
        hidden = attrs["eyes"] == "closed"
        assert attrs["eye_color"] == ("not visible" if hidden else identity.attributes["eye_color"])
        assert TAXONOMY.held_out_pairs(attrs) == []          # regular images never show them
    bald = [a for a, _, _ in samples if a["bald"] == "yes"]
    assert bald and all(a["hair_color"] == "none" and a["bangs"] == "none" for a in bald)
    masked = [a for a, _, _ in samples if a["mask"] != "none"]
    assert masked and all(a["mouth"] == "covered" and a["lipstick"] == "none" for a in masked)
    happy = [a for a, _, _ in samples if a["emotion"] == "happy" and a["mask"] == "none"]
    assert happy and all(a["mouth"] in ("smile", "laugh", "tongue out") for a in happy)
    with pytest.raises(ValueError, match="broken rules"):
        TAXONOMY.validate({"bald": "yes", "hair_color": "red"}, complete=False)


def test_every_value_of_every_group_occurs(samples):
    seen = {g: Counter(a[g] for a, _, _ in samples) for g in TAXONOMY.names}
    for pair in range(len(COMPOSITIONAL_PAIRS)):   # values that only exist with a held-out pair
        rng = np.random.default_rng(pair)
        for g, v in sample_image_attributes(rng, make_identity(0, pair), pair=pair).items():
            seen[g][v] += 1
    missing = [(g.name, v) for g in TAXONOMY.groups for v in g.values if not seen[g.name][v]]
    assert missing == []


def test_compositional_sampling_pins_exactly_one_pair():
    for k in range(len(COMPOSITIONAL_PAIRS)):
        for i in range(20):
            attrs = sample_image_attributes(np.random.default_rng([k, i]), make_identity(0, i), pair=k)
            assert TAXONOMY.held_out_pairs(attrs) == [k]


def test_captions_state_only_true_attributes_and_parse_back(samples):
    counts = []
    for attrs, rng, _ in samples[:800]:
        caption, stated = make_caption(attrs, rng)
        assert all(attrs[g] == v for g, v in stated.items())
        assert parse_caption(caption) == stated, caption
        counts.append(len(stated))
    assert 15 <= np.mean(counts) <= 20 and np.std(counts) > 1   # long captions, as in the paper


def test_captions_are_gender_neutral_and_varied(samples):
    gendered = re.compile(r"\b(he|she|his|her|him|man|woman|male|female|boy|girl|guy|lady)\b", re.I)
    captions = [make_caption(a, rng)[0] for a, rng, _ in samples[:300]]
    assert not any(gendered.search(c) for c in captions)
    assert len(set(captions)) == len(captions)
    assert len({c.split(".")[0] for c in captions}) > 5


def test_a_reader_of_the_true_attributes_answers_every_question(samples):
    wrong = Counter()
    for attrs, rng, _ in samples[:500]:
        for q in make_vqa(attrs, rng, n=8):
            assert answer_from_attributes(q, attrs) == q["answer"], q
            g = TAXONOMY.group(q["group"])
            other = dict(attrs, **{g.name: next(v for v in g.values if v != attrs[g.name])})
            wrong[answer_from_attributes(q, other) != q["answer"]] += 1
    # a reader with one attribute wrong is wrong on most questions about it (not all: "how many
    # earrings" is "two" for several kinds, "is there a hat" is "yes" for every hat)
    assert wrong[True] > 0.85 * sum(wrong.values()), wrong


def test_parser_reads_hand_written_captions():
    text = "A person with long, curly red hair and round glasses. They look cheerful and are winking."
    assert parse_caption(text) == {"hair_length": "long", "hair_type": "curly", "hair_color": "red",
                                   "glasses": "round", "emotion": "happy", "eyes": "wink"}
    assert parse_caption("They seem unhappy.") == {"emotion": "sad"}


def test_vqa_answers_follow_from_the_attributes(samples):
    types = Counter()
    for attrs, rng, _ in samples[:500]:
        qa = make_vqa(attrs, rng, n=8)
        assert len(qa) == 8 and len({q["group"] for q in qa}) == 8
        for q in qa:
            g = TAXONOMY.group(q["group"])
            types[q["type"]] += 1
            if q["type"] in ("what_color", "which_kind") or (q["type"] == "yes_no" and q["question"] == g.question):
                assert q["answer"] == attrs[g.name]
            elif q["type"] == "is_there":
                assert q["answer"] == ("no" if attrs[g.name] == g.absent else "yes")
            elif q["type"] == "counting":
                assert q["answer"] == count_answer(g.name, attrs[g.name])
            else:   # "Does the person have <phrase>?": yes iff the phrase parses to the truth
                # ... and never about what the image hides (closed eyes, a masked mouth)
                assert g.phrases.get(attrs[g.name]) or attrs[g.name] == g.absent, q
                asked = parse_caption(q["question"])
                assert list(asked) == [g.name], q
                assert q["answer"] == ("yes" if asked[g.name] == attrs[g.name] else "no"), q
    assert set(types) == {"what_color", "which_kind", "yes_no", "is_there", "counting"}


def test_render_is_deterministic_and_sized():
    attrs, _, identity = _samples(1, seed=3)[0]
    for size in (32, 64, 128):
        a = np.asarray(render(attrs, identity, size, 2, np.random.default_rng(1)))
        b = np.asarray(render(attrs, identity, size, 2, np.random.default_rng(1)))
        assert a.shape == (size, size, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    with pytest.raises(ValueError, match=r"unsupported image size 48.*\[32, 64, 128, 256\]"):
        render(attrs, identity, 48)


def _consistent(attrs: dict, keep: str) -> dict:
    """Repair the groups that a changed `keep` value forces (eyes closed => eye colour hidden)."""
    attrs = dict(attrs)
    for _ in range(3):
        for rule in TAXONOMY.rules:
            if rule.applies(attrs) and attrs[rule.then_group] not in rule.allowed and rule.then_group != keep:
                attrs[rule.then_group] = rule.allowed[0]
    return attrs


def test_every_group_changes_the_pixels():
    """Each attribute value must be visible: swapping it (all else equal) changes the image."""
    base = {**_samples(1, seed=5)[0][0], "bald": "no", "hair_color": "brown", "hair_length": "long",
            "hair_type": "straight", "bangs": "none", "hairline": "normal", "mask": "none",
            "hat": "none", "glasses": "none", "emotion": "neutral", "mouth": "closed",
            "eyes": "open", "head_turn": "forward", "head_tilt": "upright"}
    identity = make_identity(0, 1)
    base.update(identity.attributes)
    TAXONOMY.validate(base)
    draw = lambda a: np.asarray(render(a, identity, 64, 4, np.random.default_rng(0))).astype(int)
    ref = draw(base)
    for g in TAXONOMY.groups:
        for v in g.values:
            changed = _consistent({**base, g.name: v}, keep=g.name)
            if v == base[g.name] or TAXONOMY.violations(changed):
                continue
            changed_px = int((np.abs(draw(changed) - ref).sum(-1) > 30).sum())
            assert changed_px >= 8, f"{g.name}={v} is invisible at 64 px ({changed_px} pixels change)"


def test_hair_never_covers_the_eyes():
    """Hair type and bangs must leave the eye band untouched: eyes, eye colour and glare are labels."""
    from unif2ace_mini.data.renderer import _layout
    attrs, _, identity = _samples(1, seed=7)[0]
    attrs = {**attrs, "bald": "no", "hair_color": "black", "hair_length": "long", "hairline": "normal",
             "hat": "none", "glasses": "none", "emotion": "neutral", "mouth": "closed", "eyes": "open",
             "eye_color": identity.attributes["eye_color"], "head_turn": "forward", "head_tilt": "upright"}
    L = _layout(attrs, identity, 64, np.random.default_rng(0))
    rows = slice(int(L.y(0.4)), int(L.y(0.52)) + 1)
    cols = slice(int(L.cx - 0.7 * L.a), int(L.cx + 0.7 * L.a) + 1)
    band = lambda a: np.asarray(render(a, identity, 64, 1, np.random.default_rng(0)))[rows, cols]
    ref = band({**attrs, "hair_type": "straight", "bangs": "none"})
    for hair_type in ("straight", "wavy", "curly"):
        for bangs in ("none", "straight", "side-swept"):
            TAXONOMY.validate({**attrs, "hair_type": hair_type, "bangs": bangs})
            assert np.array_equal(band({**attrs, "hair_type": hair_type, "bangs": bangs}), ref), \
                f"{hair_type} hair with {bangs} bangs draws over the eyes"
