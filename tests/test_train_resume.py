"""Training: an interrupted + resumed run reproduces the uninterrupted one; limits; learning."""

import json

import pytest
import torch

from unif2ace_mini.model import ModelConfig, UniFace
from unif2ace_mini.training import TrainConfig, train


@pytest.fixture(scope="module")
def data(tiny_training_data):
    return tiny_training_data


MC = ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=40, dropout=0.1,
                 image_positions=4)
TC = TrainConfig(batch_size=8, max_steps=6, warmup_steps=2, lr=3e-3, ema_decay=0.9,
                 checkpoint_every=100)


def run(data, out, **kw):
    return train("quick", out, model_config=MC, train_config=kw.pop("tc", TC), data=data,
                 progress=False, **kw)


def test_resume_reproduces_the_uninterrupted_run(data, tmp_path, resume_check):
    _, resumed = resume_check(lambda out, **kw: run(data, out, **kw), tmp_path)
    assert resumed.step == 6 and [r["step"] for r in resumed.history] == list(range(1, 7))
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


def test_image_positions_must_match_the_tokens_per_image(data, tmp_path):
    with pytest.raises(ValueError, match="image_positions = 64, but the image tokenizer gives 4"):
        train("quick", tmp_path, model_config=MC.replace(image_positions=64),
              train_config=TC.replace(max_steps=1), data=data, progress=False)


def test_time_limit_stops_training(data, tmp_path):
    with pytest.warns(RuntimeWarning, match="unified model: the time limit"):
        result = run(data, tmp_path, tc=TC.replace(max_steps=2, max_seconds=0.0))
    assert result.step == 0 and result.stop_reason == "time"
    # resuming with the time limit lifted continues the same run
    result = run(data, tmp_path, resume=True, tc=TC.replace(max_steps=2))
    assert result.step == 2 and [r["step"] for r in result.history] == [1, 2]


def test_ema_warms_up_then_keeps_its_decay():
    from unif2ace_mini.training.state import EMA

    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    ema = EMA(layer, decay=0.9)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.update(layer, 0)                          # d_0 = min(0.9, 1/10) = 0.1
    assert ema.shadow["weight"].item() == pytest.approx(0.9, abs=1e-7)
    ema.update(layer, 1)                          # d_1 = 2/11
    assert ema.shadow["weight"].item() == pytest.approx(2 / 11 * 0.9 + 9 / 11, abs=1e-7)
    assert ema.decay_at(79) == pytest.approx(80 / 89) and ema.decay_at(80) == 0.9
    with torch.no_grad():
        layer.weight.fill_(0.0)
    before = ema.shadow["weight"].item()
    ema.update(layer, 1000)                       # the cap: shadow keeps 90%
    assert ema.shadow["weight"].item() == pytest.approx(0.9 * before, abs=1e-7)
