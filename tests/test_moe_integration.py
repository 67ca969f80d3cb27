"""Sequence-level MoE integration: encoder features flow from the cache into batches, the loss,
training (with exact resume), decoding and evaluation; dense / token-MoE models never need them."""

import json

import pytest
import torch

from unif2ace_mini.model import MMU, T2I, ModelConfig, SequenceBuilder, UniFace
from unif2ace_mini.model.moe_config import SequenceMoEConfig, TokenMoEConfig, feature_kinds
from unif2ace_mini.training import BatchStream, TrainConfig, joint_loss, step_generator, train
from unif2ace_mini.training.data import with_model_features

N = 12  # records in the tiny_training_data fixture
SEQ = SequenceMoEConfig(clip_dim=8, face_dim=4, noise_dim=4, noise_tokens=2, resampler_heads=2,
                        resampler_latents=2)
DENSE = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=40)
SEQ_MC = DENSE.replace(sequence="sequence_moe", seq_moe=SEQ)
BOTH_MC = SEQ_MC.replace(ffn="token_moe", moe=TokenMoEConfig(n_routed=4, top_k=2), dropout=0.1)
TC = TrainConfig(batch_size=8, max_steps=6, warmup_steps=2, lr=3e-3, ema_decay=0.9,
                 checkpoint_every=100)


def fake_features(seed=0, n=N):
    g = torch.Generator().manual_seed(seed)
    return {"clip": torch.randn(n, 3, 8, generator=g),
            "face": torch.nn.functional.normalize(torch.randn(n, 1, 4, generator=g), dim=-1)}


@pytest.fixture(scope="module")
def data(tiny_training_data):
    return tiny_training_data


@pytest.fixture
def no_encoders(monkeypatch):
    """Any attempt to load, train or extract with an encoder fails the test."""
    import unif2ace_mini.encoders as enc

    def refuse(*args, **kw):
        raise AssertionError("a model without a sequence-level MoE touched an encoder")
    for name in ("extract_features", "load_feature_extractors", "load_or_train_clip",
                 "load_or_train_face_encoder"):
        monkeypatch.setattr(enc, name, refuse)


def test_feature_kinds_follow_the_sequence_slot():
    assert feature_kinds(DENSE) == () and feature_kinds(DENSE.replace(ffn="token_moe")) == ()
    assert feature_kinds(DENSE.replace(sequence="sequence_moe")) == ("clip", "face")  # defaults
    assert feature_kinds(SEQ_MC) == ("clip", "face")
    only_clip = SEQ.replace(mmu_experts=("clip", "copy", "copy", "copy"))
    assert feature_kinds(SEQ_MC.replace(seq_moe=only_clip)) == ("clip",)
    no_feature = SEQ.replace(mmu_experts=("copy", "zero", "noise", "copy"))
    assert feature_kinds(SEQ_MC.replace(seq_moe=no_feature)) == ()


def test_with_features_checks_rows_and_names_the_features_in_the_key(data):
    feats = fake_features()
    a = data.with_features(feats)
    assert a.key.startswith("tiny-test-features-") and a.features["clip"].dtype == torch.float16
    assert data.features is None and data.key == "tiny-test"                 # not changed
    assert a.with_features(feats).key == a.key                                # same features
    assert data.with_features(fake_features(seed=1)).key != a.key             # other encoder
    with pytest.raises(ValueError, match="one row per record"):
        data.with_features({"clip": torch.zeros(N - 1, 3, 8)})
    with pytest.raises(ValueError, match="non-empty"):
        data.with_features({})


def test_batches_carry_mmu_features_and_zeros_on_t2i_rows(data):
    feats = fake_features()
    fdata = data.with_features(feats)
    stream = BatchStream(fdata, 40, 6, 0.5, 0, 0.1, 0.25)
    step = 3
    b = stream.batch(step)
    assert set(b["features"]) == {"clip", "face"}
    assert b["features"]["clip"].shape == (6, 3, 8) and b["features"]["face"].shape == (6, 1, 4)
    records = [r for r, _ in stream.streams[MMU].take(step * 3, 3)]
    mmu, t2i = b["task"] == MMU, b["task"] == T2I
    for k in feats:
        assert torch.equal(b["features"][k][mmu], feats[k][records].half().float())
        assert not b["features"][k][t2i].any()
    # a pure function of the step, and split consistently across processes
    again = BatchStream(fdata, 40, 6, 0.5, 0, 0.1, 0.25).batch(step)
    assert all(torch.equal(b["features"][k], again["features"][k]) for k in feats)
    for rank in (0, 1):
        half = stream.batch(step, rank, 2)
        assert torch.equal(half["input_ids"], b["input_ids"][rank::2])
        assert all(torch.equal(half["features"][k], b["features"][k][rank::2]) for k in feats)
    # without features, batches are what they were
    assert "features" not in BatchStream(data, 40, 6, 0.5, 0, 0.1, 0.25).batch(step)


@pytest.mark.parametrize("config, matters", [(SEQ_MC, True), (DENSE, False),
                                             (DENSE.replace(ffn="token_moe"), False)])
def test_features_reach_the_model_through_joint_loss(data, config, matters):
    torch.manual_seed(0)
    model = UniFace(config.for_vocab(data.vocab), data.vocab).eval()
    batch = BatchStream(data.with_features(fake_features()), 40, 8, 0.5, 0, 0.0, 0.25).batch(0)
    other = dict(batch, features={k: -v for k, v in batch["features"].items()})
    tc = TrainConfig()
    _, parts = joint_loss(model, batch, tc, step_generator(0, 0))
    _, parts_other = joint_loss(model, other, tc, step_generator(0, 0))
    # only mmu rows read features (t2i rows carry zeros: the injecting experts act as copy)
    assert parts_other["t2i"] == pytest.approx(parts["t2i"], rel=1e-6)
    if matters:
        assert abs(parts_other["mmu"] - parts["mmu"]) > 1e-4
    else:
        assert parts_other["mmu"] == pytest.approx(parts["mmu"], rel=1e-7)


def test_training_extracts_features_only_for_a_sequence_moe(data, tmp_path, monkeypatch):
    import unif2ace_mini.encoders as enc

    calls = []

    def fake_extract(profile, split, **kw):
        calls.append((getattr(profile, "name", profile), split))
        return fake_features()
    monkeypatch.setattr(enc, "extract_features", fake_extract)
    tc = TC.replace(max_steps=2)
    train("quick", tmp_path / "dense", model_config=DENSE, train_config=tc, data=data,
          progress=False)
    train("quick", tmp_path / "token", model_config=DENSE.replace(ffn="token_moe"),
          train_config=tc, data=data, progress=False)
    assert calls == []
    with_features = train("quick", tmp_path / "seq", model_config=SEQ_MC, train_config=tc,
                          data=data, progress=False)
    assert calls == [("quick", "train")]
    summary = json.loads((tmp_path / "seq" / "summary.json").read_text())
    assert summary["data_key"] == data.with_features(fake_features()).key
    # the same run fed zero features (no image anywhere) trains differently
    zeros = {k: torch.zeros_like(v) for k, v in fake_features().items()}
    without = train("quick", tmp_path / "zero", model_config=SEQ_MC, train_config=tc,
                    data=data.with_features(zeros), progress=False)
    assert len(calls) == 1                                     # features given: no extraction
    assert with_features.history[-1]["mmu"] != pytest.approx(without.history[-1]["mmu"],
                                                             rel=1e-5)
    # with_model_features leaves dense data alone and insists on the features a model reads
    assert with_model_features(data, "quick", DENSE) is data
    clip_only = data.with_features({"clip": fake_features()["clip"]})
    with pytest.raises(ValueError, match=r"reads features \['face'\]"):
        with_model_features(clip_only, "quick", SEQ_MC)
    with pytest.raises(ValueError, match="clip features are 8-d but .* clip_dim=16"):
        with_model_features(data.with_features(fake_features()), "quick",
                            SEQ_MC.replace(seq_moe=SEQ.replace(clip_dim=16)))


def test_resume_is_exact_with_features(data, tmp_path, resume_check):
    fdata = data.with_features(fake_features())
    resume_check(lambda out, **kw: train("quick", out, model_config=BOTH_MC, train_config=TC,
                                         data=fdata, progress=False, **kw),
                 tmp_path, keys=("loss", "t2i", "mmu", "aux", "grad_norm"))
    # other features are another run: resuming across them is refused
    with pytest.raises(ValueError, match="trained on data"):
        train("quick", tmp_path / "b", resume=True, model_config=BOTH_MC, train_config=TC,
              data=data.with_features(fake_features(seed=5)), progress=False)


def test_mismatched_moe_kind_is_a_clear_error(data, tmp_path, no_encoders):
    result = train("quick", tmp_path, model_config=DENSE, train_config=TC.replace(max_steps=1),
                   data=data, progress=False)
    with pytest.raises(ValueError, match="sequence: checkpoint 'identity' vs now 'sequence_moe'"):
        train("quick", tmp_path, resume=True, model_config=SEQ_MC,
              train_config=TC.replace(max_steps=1), data=data.with_features(fake_features()),
              progress=False)
    with pytest.raises(ValueError, match="sequence: saved 'identity' vs requested"):
        UniFace.from_pretrained(tmp_path / "model", config=SEQ_MC.for_vocab(data.vocab))
    with pytest.raises(ValueError, match="ffn: saved 'dense' vs requested 'token_moe'"):
        UniFace.from_pretrained(tmp_path / "model", config=result.model.config.replace(
            ffn="token_moe"))


def test_decoding_cuts_features_into_its_batches(data):
    from unif2ace_mini.understand import decode, decode_batches

    torch.manual_seed(0)
    model = UniFace(SEQ_MC.for_vocab(data.vocab), data.vocab).eval()
    builder = SequenceBuilder(data.text_tokenizer, data.vocab, 40, 4)
    image_ids = data.vocab.image_ids(data.image_codes[:5])
    questions = ["Is the person happy?"] * 5
    feats = fake_features(n=5)
    whole = decode(model, builder.mmu_prompt_batch(image_ids, questions),
                   tokenizer=builder.tokenizer, max_new_tokens=4, features=feats)
    parts = decode_batches(model, image_ids, questions, builder=builder, batch_size=2,
                           max_new_tokens=4, features=feats)
    assert parts.tokens == whole.tokens
    with pytest.raises(ValueError, match="one row per image"):
        decode_batches(model, image_ids, questions, builder=builder, features=fake_features(n=4))
    # the features change what the model says about the image (first answer-token logits)
    prompt = builder.mmu_prompt_batch(image_ids, questions)
    with torch.no_grad():
        a = model(prompt, features=feats).logits[:, -1]
        b = model(prompt, features=fake_features(seed=3, n=5)).logits[:, -1]
    assert (a - b).abs().max() > 1e-4


def test_evaluation_and_cli_read_features_only_for_a_sequence_moe(monkeypatch, no_encoders):
    import unif2ace_mini.encoders as enc
    from unif2ace_mini.evaluate import eval_features
    from unif2ace_mini.inference_cli import image_features

    images = torch.rand(2, 3, 32, 32) * 2 - 1
    for config in (DENSE, DENSE.replace(ffn="token_moe")):
        assert eval_features("quick", config, "validation", 4) is None
        assert image_features("quick", config, images) is None
    monkeypatch.setattr(enc, "extract_features", lambda profile, split, **kw: fake_features())
    out = eval_features("quick", SEQ_MC, "validation", 4)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"clip": (4, 3, 8), "face": (4, 1, 4)}
    assert torch.equal(out["clip"], fake_features()["clip"][:4])
    extractors = {"clip": lambda x: torch.ones(len(x), 3, 8), "face": lambda x: torch.ones(
        len(x), 1, 4)}
    monkeypatch.setattr(enc, "load_feature_extractors", lambda profile, **kw: extractors)
    got = image_features("quick", SEQ_MC, images)
    assert got["clip"].shape == (2, 3, 8) and got["face"].shape == (2, 1, 4)


def test_vqa_evaluation_feeds_each_question_its_image_features(data):
    from types import SimpleNamespace

    from unif2ace_mini.evaluate import EvalContext, evaluate_vqa

    torch.manual_seed(0)
    model = UniFace(SEQ_MC.for_vocab(data.vocab), data.vocab).eval()
    builder = SequenceBuilder(data.text_tokenizer, data.vocab, 40, 4)
    records = [dict(r, vqa=[dict(q, type="t") for q in r["vqa"]]) for r in data.records[:3]]
    feats = fake_features(n=3)
    seen = []
    forward = model.forward

    def spy(ids, features=None, **kw):
        if features is not None:                       # the prompt pass of each decode batch
            seen.append(features["clip"])
        return forward(ids, features=features, **kw)
    model.forward = spy
    ctx = EvalContext(SimpleNamespace(model=model, builder=builder), None, "validation", records,
                      data.vocab.image_ids(data.image_codes[:3]), records, feats)
    out = evaluate_vqa(ctx, batch_size=4)             # 6 questions: batches of 4 and 2
    assert out["n_questions"] == 6 and [len(s) for s in seen] == [4, 2]
    rows = [i for i, r in enumerate(records) for _ in r["vqa"]]       # image of each question
    assert torch.equal(torch.cat(seen), feats["clip"][rows])
