"""Training: an interrupted + resumed run reproduces the uninterrupted one; limits; learning."""

import json

import pytest
import torch

from unif2ace_mini.model import ModelConfig, UniFace
from unif2ace_mini.tokenizers import Vocabulary, train_text_tokenizer
from unif2ace_mini.training import TrainConfig, TrainingData, train

CAPTIONS = ["A portrait of a person. They have red hair.", "A face. Blue eyes and a hat.",
            "A headshot. Green eyes. The person frowns."]


@pytest.fixture(scope="module")
def data():
    records = [{"caption": CAPTIONS[i % 3],
                "vqa": [{"question": "Is the person happy?", "answer": ["yes", "no"][i % 2]},
                        {"question": "Eye colour?", "answer": ["red", "blue", "green"][i % 3]}]}
               for i in range(12)]
    tok = train_text_tokenizer(CAPTIONS * 3 + ["Is the person happy? yes no",
                                               "Eye colour? red blue green"], vocab_size=300)
    # image codes that follow the caption, so there is something to learn
    codes = torch.tensor([[i % 3, 3 + i % 3, 6, 7 + i % 2] for i in range(12)])
    return TrainingData(records, codes, tok, Vocabulary.from_tokenizers(tok, 16), "tiny-test")


MC = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=40, dropout=0.1)
TC = TrainConfig(batch_size=8, max_steps=6, warmup_steps=2, lr=3e-3, ema_decay=0.9,
                 checkpoint_every=100)


def run(data, out, **kw):
    return train("quick", out, model_config=MC, train_config=kw.pop("tc", TC), data=data,
                 progress=False, **kw)


def test_resume_reproduces_the_uninterrupted_run(data, tmp_path):
    straight = run(data, tmp_path / "a")

    def interrupt_at_3(step, record):
        if step == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(data, tmp_path / "b", callback=interrupt_at_3)
    ckpt_log = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in ckpt_log] == [1, 2, 3]
    torch.manual_seed(1234)                     # the resumed run must not depend on this
    resumed = run(data, tmp_path / "b", resume=True)

    assert resumed.step == straight.step == 6 and resumed.stop_reason == "steps"
    assert [r["step"] for r in resumed.history] == list(range(1, 7))
    for a, b in zip(straight.history, resumed.history):
        for key in ("loss", "t2i", "mmu", "lr", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)
    for final_a, final_b in ((straight.model, resumed.model),
                             (straight.ema_model, resumed.ema_model)):
        sa, sb = final_a.state_dict(), final_b.state_dict()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-6, atol=1e-7)
    # the saved final model is what train returned
    loaded = UniFace.from_pretrained(tmp_path / "b" / "model")
    torch.testing.assert_close(loaded.state_dict()["head.weight"],
                               resumed.model.state_dict()["head.weight"], rtol=0, atol=0)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["step"] == 6 and summary["data_key"] == "tiny-test"


def test_resume_refuses_a_different_run(data, tmp_path):
    run(data, tmp_path, tc=TC.replace(max_steps=2))
    with pytest.raises(ValueError, match="lr: checkpoint 0.003 vs now 0.001"):
        run(data, tmp_path, resume=True, tc=TC.replace(max_steps=2, lr=1e-3))
    with pytest.raises(ValueError, match="d_model"):
        train("quick", tmp_path, resume=True, model_config=MC.replace(d_model=64),
              train_config=TC.replace(max_steps=2), data=data, progress=False)


def test_time_limit_stops_training(data, tmp_path):
    with pytest.warns(RuntimeWarning, match="unified model: the time limit"):
        result = run(data, tmp_path, tc=TC.replace(max_steps=2, max_seconds=0.0))
    assert result.step == 0 and result.stop_reason == "time"
    # resuming with the time limit lifted continues the same run
    result = run(data, tmp_path, resume=True, tc=TC.replace(max_steps=2))
    assert result.step == 2 and [r["step"] for r in result.history] == [1, 2]

