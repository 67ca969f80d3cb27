"""load_or_train_model: trains once into the cache, then loads the same weights."""

import math

import pytest
import torch

from unif2ace_mini.model import ModelConfig, load_or_train_model
from unif2ace_mini.model.cache import finished_run, model_cache_dir
from unif2ace_mini.tokenizers import Vocabulary, train_text_tokenizer
from unif2ace_mini.training import TrainConfig, TrainingData

MC = ModelConfig(d_model=32, n_layers=1, n_heads=2, d_ff=64, max_len=40)


@pytest.fixture(scope="module")
def data():
    """Four identical records, 4 image tokens each: enough for a 3-4 step run."""
    caption = "A face. Blue eyes and a hat."
    tok = train_text_tokenizer([caption, "Is the person happy? yes no"] * 3, vocab_size=290)
    records = [{"caption": caption, "vqa": [{"question": "Is the person happy?", "answer": "yes"}]}
               ] * 4
    return TrainingData(records, torch.arange(16).view(4, 4), tok,
                        Vocabulary.from_tokenizers(tok, 16), "cache-test")


def test_trains_once_then_loads(tmp_path, data):
    mc = MC
    tc = TrainConfig(batch_size=4, max_steps=3, warmup_steps=1, ema_decay=0.5)
    done = lambda: finished_run("quick", mc.for_vocab(data.vocab), tc, data, root=tmp_path)  # noqa
    assert done() is None                                   # what load_pipeline announces
    model, log = load_or_train_model("quick", mc, tc, data=data, root=tmp_path, progress=False)
    assert [r["step"] for r in log] == [1, 2, 3] and not model.training
    assert done() == model_cache_dir("quick", mc.for_vocab(data.vocab), tc, data.key, tmp_path)
    again, log2 = load_or_train_model("quick", mc, tc, data=data, root=tmp_path, progress=False)
    assert log2 == log
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    # another recipe or other data is another cache entry; the time limit is not a recipe
    key = lambda m, t, d: model_cache_dir("quick", m.for_vocab(data.vocab), t, d)  # noqa: E731
    assert key(mc, tc, "a") != key(mc, tc.replace(max_steps=2), "a") != key(mc, tc, "b")
    assert key(mc, tc, "a") == key(mc, tc.replace(max_seconds=1.0), "a")
    assert key(mc, tc, "a") != key(mc.replace(ffn="token_moe"), tc, "a")


def test_a_run_cut_short_by_the_time_limit_is_resumed_to_the_full_recipe(tmp_path, data):
    mc = MC
    tc = TrainConfig(batch_size=4, max_steps=4, warmup_steps=1, checkpoint_every=1)
    with pytest.warns(RuntimeWarning, match="time limit"):
        _, short = load_or_train_model("quick", mc, tc.replace(max_seconds=0.0), data=data,
                                       root=tmp_path / "cut", progress=False)
    assert len(short) < 4                                   # the time limit stopped it
    assert finished_run("quick", mc.for_vocab(data.vocab), tc, data, root=tmp_path / "cut") \
        is None                                             # so it is not "done"
    model, log = load_or_train_model("quick", mc, tc, data=data, root=tmp_path / "cut",
                                     progress=False)
    straight, log_straight = load_or_train_model("quick", mc, tc, data=data,
                                                 root=tmp_path / "straight", progress=False)
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert [r["loss"] for r in log] == [r["loss"] for r in log_straight]
    for k, v in straight.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_finished_run_never_trains_encoders_for_a_sequence_moe(tmp_path, data, monkeypatch):
    import unif2ace_mini.encoders as enc
    import unif2ace_mini.encoders.cache as enc_cache

    def refuse(*args, **kw):
        raise AssertionError("finished_run touched an encoder")
    monkeypatch.setattr(enc, "extract_features", refuse)
    monkeypatch.setattr(enc_cache, "features_path", lambda *a, **k: tmp_path / "no-features")
    seq = MC.replace(sequence="sequence_moe").for_vocab(data.vocab)
    assert finished_run("quick", seq, TrainConfig(max_steps=1), data, root=tmp_path) is None


def test_time_power_is_a_recipe_that_older_cache_keys_do_not_name(tmp_path, data):
    tc = TrainConfig(batch_size=4, max_steps=2, warmup_steps=1)
    assert "t2i_time_power" not in tc.to_dict()             # runs from before it keep their key
    powered = tc.replace(t2i_time_power=0.5)
    assert TrainConfig.from_dict(powered.to_dict()) == powered
    assert tc.run_differences(powered) == {"t2i_time_power": (1.0, 0.5)}
    mc = MC.for_vocab(data.vocab)
    assert model_cache_dir("quick", mc, tc, "a") != model_cache_dir("quick", mc, powered, "a")
    _, log = load_or_train_model("quick", MC, powered, data=data, root=tmp_path, progress=False)
    assert len(log) == 2 and all(math.isfinite(r["loss"]) for r in log)
    for bad in (0.0, -0.5, float("inf")):
        with pytest.raises(ValueError, match="t2i_time_power"):
            TrainConfig(t2i_time_power=bad)
