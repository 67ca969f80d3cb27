"""Metrics on hand-made cases with known answers: exact match, P/R/F1, accuracy, FD, baselines."""

import math

import pytest
import torch

from unif2ace_mini.evaluate import (attribute_accuracy, attribute_prf, derangement, exact_match,
                                    format_table, frechet_distance, frequent_attributes,
                                    gaussian_frechet_distance, majority_answers,
                                    majority_predict, pair_accuracy, sayable,
                                    stated_held_out_pairs, vqa_scores)


def test_exact_match_normalises_case_space_and_final_period():
    assert exact_match(["Yes", " blue.", "2", "no"], ["yes", "Blue", "2", "yes"]) == 0.75
    assert exact_match(["widow's  peak"], ["widow's peak"]) == 1.0
    with pytest.raises(ValueError, match="equally many"):
        exact_match(["a"], ["a", "b"])


def test_vqa_scores_per_type():
    s = vqa_scores(["yes", "no", "red", "0"], ["yes", "yes", "red", "2"],
                   ["yes_no", "yes_no", "what_color", "counting"])
    assert s["accuracy"] == 0.5 and s["n"] == 4
    assert s["per_type"] == {"counting": 0.0, "what_color": 1.0, "yes_no": 0.5}


def test_majority_answers_fall_back_from_question_to_type_to_overall():
    records = [{"vqa": [{"question": "Q1?", "answer": "yes", "type": "yes_no"},
                        {"question": "Q2?", "answer": "red", "type": "what_color"}]},
               {"vqa": [{"question": "Q1?", "answer": "no", "type": "yes_no"},
                        {"question": "Q1?", "answer": "no", "type": "yes_no"},
                        {"question": "Q3?", "answer": "blue", "type": "what_color"},
                        {"question": "Q4?", "answer": "no", "type": "yes_no"}]}]
    table = majority_answers(records)
    assert table["question"]["Q1?"] == "no" and table["overall"] == "no"
    assert majority_predict(table, ["Q1?", "Q2?", "Q9?", "Q9?"],
                            ["yes_no", "what_color", "yes_no", "counting"]) == \
        ["no", "red", "no", "no"]


def test_attribute_prf_known_case():
    truth = [{"hair_color": "red", "glasses": "round", "emotion": "happy", "hat": "cap"},
             {"hair_color": "black", "glasses": "none"}]
    stated = [{"hair_color": "red", "glasses": "square"},      # 1 of 2 correct
              {"hair_color": "black", "glasses": "none"}]      # 2 of 2 correct
    m = attribute_prf(stated, truth)
    assert m["precision"] == pytest.approx(3 / 4) and m["recall"] == pytest.approx(3 / 6)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.5 / 1.25) and m["mean_stated"] == 2
    assert attribute_prf([{}, {}], truth)["f1"] == 0.0


def test_sayable_drops_values_without_a_caption_phrase():
    assert sayable({"hair_color": "none", "bald": "yes", "glasses": "round"}) == \
        {"bald": "yes", "glasses": "round"}


def test_frequent_attributes_baseline():
    captions = ["They have red hair. They wear round glasses.",
                "They have red hair.",
                "They have black hair. They look happy."]
    # mean number stated = 5/3 -> k = 2: hair_color (3 mentions, mostly red), then glasses/emotion
    base = frequent_attributes(captions)
    assert len(base) == 2 and base["hair_color"] == "red"


def test_attribute_accuracy_scores_only_stated_attributes():
    predicted = [{"hair_color": "red", "glasses": "none", "hat": "cap"},
                 {"hair_color": "black", "glasses": "round", "hat": "none"}]
    stated = [{"hair_color": "red", "glasses": "round"}, {"hat": "none"}]
    assert attribute_accuracy(predicted, stated) == {"accuracy": pytest.approx(2 / 3),
                                                     "n_scored": 3}


def test_held_out_pairs_count_only_when_the_prompt_states_both_halves():
    red_sunglasses = {"hair_color": "red", "glasses": "sunglasses"}        # compositional pair 0
    records = [{"attributes": {**red_sunglasses, "hat": "none"}},
               {"attributes": red_sunglasses},
               {"attributes": {"hair_color": "red", "glasses": "none"}}]    # no held-out pair
    stated = [red_sunglasses, {"hair_color": "red"}, {"hair_color": "red", "glasses": "none"}]
    pairs = stated_held_out_pairs(records, stated)
    assert pairs == [[red_sunglasses], [], []]
    seen = [{"hair_color": "red", "glasses": "none"}, red_sunglasses, red_sunglasses]
    assert pair_accuracy(seen, pairs) == {"accuracy": 0.0, "n_scored": 1}  # one half is no pair
    assert pair_accuracy([red_sunglasses] * 3, pairs) == {"accuracy": 1.0, "n_scored": 1}
    assert math.isnan(pair_accuracy(seen, [[], [], []])["accuracy"])
    with pytest.raises(ValueError, match="2 predictions for 3"):
        pair_accuracy(seen[:2], pairs)


def test_frechet_distance_of_identical_and_shifted_sets():
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift.pow(2).sum()), rel=1e-6)
    with pytest.raises(ValueError, match="feature sizes"):
        frechet_distance(x, x[:, :3])


def test_gaussian_frechet_distance_closed_form():
    # diagonal covariances: |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    s1, s2 = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 9.0])
    expected = 1 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + 0
    fd = gaussian_frechet_distance(mu1, torch.diag(s1), mu2, torch.diag(s2))
    assert fd == pytest.approx(expected, rel=1e-9)
    # rotating both Gaussians by the same orthogonal matrix leaves the distance unchanged
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(1),
                                       dtype=torch.float64))
    rot = gaussian_frechet_distance(q @ mu1.double(), q @ torch.diag(s1).double() @ q.T,
                                    q @ mu2.double(), q @ torch.diag(s2).double() @ q.T)
    assert rot == pytest.approx(expected, rel=1e-8)
    # 1-D: W2 between N(0, 1) and N(0, 4) is (1 - 2)^2
    assert gaussian_frechet_distance(torch.zeros(1), torch.ones(1, 1), torch.zeros(1),
                                     4 * torch.ones(1, 1)) == pytest.approx(1.0)


def test_frechet_distance_of_samples_approaches_the_gaussian_value():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(20000, 2, generator=g)
    b = torch.randn(20000, 2, generator=g) * torch.tensor([2.0, 1.0]) + torch.tensor([3.0, 0.0])
    assert frechet_distance(a, b) == pytest.approx(9 + 1, rel=0.05)


def test_derangement_has_no_fixed_point_and_is_seeded():
    for n in (2, 3, 17):
        p = derangement(n, seed=n)
        assert sorted(p.tolist()) == list(range(n)) and all(p[i] != i for i in range(n))
    assert (derangement(10, 0) == derangement(10, 0)).all()
    with pytest.raises(ValueError):
        derangement(1, 0)


def test_format_table_shows_metrics_beside_baselines():
    results = {
        "config": {"sampler": "maskgit", "steps": 16, "guidance": 2.0},
        "vqa": {"n_questions": 4, "model": {"accuracy": 0.75, "per_type": {"yes_no": 1.0}},
                "majority": {"accuracy": 0.5, "per_type": {"yes_no": 0.5}}},
        "caption": {"n_images": 2, **{s: {"precision": 1.0, "recall": 0.5, "f1": 2 / 3,
                                          "mean_stated": 3.0}
                                      for s in ("model", "frequent_attributes", "reference")},
                    "no_repeat_ngram": 4},
        "generation": {"n_images": 2, "attribute_accuracy": {"model": 0.6, "unconditional": 0.3,
                                                             "shuffled_prompt": 0.35,
                                                             "real_images": 0.9},
                       "image_token_bits": {"true_caption": 6.0, "empty_caption": 7.0,
                                            "shuffled_caption": 7.5},
                       "fd_oracle": {"model": 10.0, "unconditional": 12.0,
                                     "shuffled_prompt": 11.0, "real_train_vs_split": math.nan}},
    }
    text = format_table(results)
    assert "| overall | 0.750 | 0.500 |" in text
    assert "| f1 | 0.667 | 0.667 | 0.667 |" in text
    assert "Caption attributes (2 images, no repeated 4-grams)" in text
    assert "| attribute accuracy | 0.600 | 0.300 | 0.350 | 0.900 |" in text
    assert "| image-token bits, all masked | 6.000 | 7.000 | 7.500 | n/a |" in text
    assert "n/a" in text and "FD-oracle" in text


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--split", "train"], "--split"),
    (["evaluate", "--parts", "vqa,speed"], "--parts"),
    (["evaluate", "--profile", "huge"], "unknown profile"),
    (["evaluate", "--caption-no-repeat-ngram", "1"], "no_repeat_ngram"),
])
def test_evaluate_cli_rejects_bad_input_before_loading_anything(argv, message, capsys):
    from unif2ace_mini.inference_cli import main

    assert main(argv) == 2
    assert message in capsys.readouterr().err


class _ShadeOracle:
    """Reads "shade" (pixel value x 10, mod 2) off the first pixel, and the pair (red hair,
    sunglasses) where that pixel's shade is 0; features: the pixels plus a little noise."""

    def eval(self):
        return self

    def predict(self, images):
        shades = [str(round(float(x[0, 0, 0]) * 10) % 2) for x in images]
        return [{"shade": s, **(RED_SUNGLASSES if s == "0" else {})} for s in shades]

    def features(self, images):
        return images.flatten(1)[:, :8] + 0.01 * torch.randn(len(images), 8)


RED_SUNGLASSES = {"hair_color": "red", "glasses": "sunglasses"}       # compositional pair 0


def _fake_generation(monkeypatch, n: int, split: str):
    """An EvalContext on n fake images whose captions end in their shade (i % 2), a generate()
    that makes image i of seed s all (s + i) / 10, and the list its calls are appended to. On
    the compositional split every image has the pair and its caption states it."""
    from types import SimpleNamespace

    import unif2ace_mini.data.dataset as dataset
    import unif2ace_mini.evaluate as E
    import unif2ace_mini.generate as G

    calls = []

    def fake_generate(model, prompts, guidance, seed, **kw):
        calls.append(list(prompts))
        images = (seed + torch.arange(n, dtype=torch.float32)).view(n, 1, 1, 1).expand(n, 3, 4, 4)
        return SimpleNamespace(images=images / 10, captions=list(prompts), calls_per_sample=3)

    pair = RED_SUNGLASSES if split == "compositional" else {}
    monkeypatch.setattr(G, "generate", fake_generate)
    monkeypatch.setattr(E, "parse_caption", lambda c: {"shade": c[-1], **pair} if c else {})
    monkeypatch.setattr(dataset, "load_tensors", lambda path, split: {
        "images": torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8)})
    monkeypatch.setattr(E, "image_token_bits", lambda *a, **kw: 1.5)
    records = [{"caption": f"face {i % 2}", "attributes": pair} for i in range(n)]
    ctx = E.EvalContext(SimpleNamespace(model=None, builder=None, image_tokenizer=None), "data",
                        split, records, torch.zeros(n, 4, dtype=torch.long), records)
    return ctx, calls


@pytest.mark.parametrize("unconditional", [True, False])
def test_generation_evaluation_skips_the_unconditional_extras_on_request(monkeypatch,
                                                                        unconditional):
    """unconditional=False generates twice (prompted, shuffled) instead of three times and
    computes no image-token bits; the prompted numbers are the same either way."""
    import unif2ace_mini.evaluate as E

    n = 6
    ctx, calls = _fake_generation(monkeypatch, n, "validation")
    torch.manual_seed(0)
    out = E.evaluate_generation(ctx, _ShadeOracle(), steps=2, guidance=1.0, sampler="maskgit",
                                seed=0, unconditional=unconditional)
    assert len(calls) == (3 if unconditional else 2)
    assert [None] * n in calls if unconditional else [None] * n not in calls
    assert out["attribute_accuracy"]["model"] == 1.0      # seed 0: image i reads i % 2
    assert ("unconditional" in out["attribute_accuracy"]) == unconditional
    assert ("unconditional" in out["fd_oracle"]) == unconditional
    assert ("image_token_bits" in out) == unconditional
    assert out["n_held_out_pairs"] == 0 and "held_out_pair_accuracy" not in out   # validation
    text = E.format_table({"generation": out})
    assert "| attribute accuracy | 1.000 |" in text
    assert "held-out pairs" not in text
    assert ("| image-token bits, all masked | 1.500 |" in text) == unconditional


def test_generation_evaluation_scores_held_out_pairs_on_the_compositional_split(monkeypatch):
    import unif2ace_mini.evaluate as E

    ctx, _ = _fake_generation(monkeypatch, 6, "compositional")
    torch.manual_seed(0)
    out = E.evaluate_generation(ctx, _ShadeOracle(), steps=2, guidance=1.0, sampler="maskgit",
                                seed=0, unconditional=False)
    # every prompt states the pair; the oracle finds it in the images of shade 0 (half of them)
    assert out["n_held_out_pairs"] == 6
    assert out["held_out_pair_accuracy"]["model"] == 0.5
    assert out["held_out_pair_accuracy"]["shuffled_prompt"] == 0.5
    assert out["attribute_accuracy"]["model"] == pytest.approx((6 + 3 + 3) / 18)
    assert "| held-out pairs, both found (6 pairs) | 0.500 | n/a | 0.500 |" in \
        E.format_table({"generation": out})
