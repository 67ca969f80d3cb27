"""pytest configuration shared by the unit tests and the nbval notebook run."""

from __future__ import annotations

import pytest
import torch


def pytest_collectstart(collector):
    # nbval compares stderr by default; warnings and library chatter there are not course output.
    # nbmake and other runners lack skip_compare, hence the guard.
    if getattr(collector, "fspath", None) is not None and str(collector.fspath).endswith(".ipynb"):
        if hasattr(collector, "skip_compare"):
            collector.skip_compare += ("stderr", "application/vnd.jupyter.widget-view+json",
                                       "text/html")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: two threads on shared cores can be 10-20x slower."""

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class LogitBoost(torch.nn.Module):
    """Wraps a unified model and adds `amount` to the logits of `ids` (e.g. to force <|eot|>, or
    to make every non-image token the favourite): samplers and decoders must still behave."""

    def __init__(self, model, ids, amount=1e4):
        super().__init__()
        self.inner, self.vocab, self.config = model, model.vocab, model.config
        self.ids, self.amount = list(ids), amount

    def forward(self, ids, **kw):
        from unif2ace_mini.model import UniFaceOutput

        out = self.inner(ids, **kw)
        logits = out.logits.clone()
        logits[..., self.ids] += self.amount
        return UniFaceOutput(logits, out.aux_loss, out.aux, out.past_key_values)


@pytest.fixture(scope="session")
def logit_boost():
    return LogitBoost


@pytest.fixture(scope="session")
def tiny_unified():
    """(model, image tokenizer, sequence builder, 3 random 16 px images): an untrained unified
    model small enough to run generation and understanding end to end in milliseconds."""
    import numpy as np

    from unif2ace_mini.data.groups import TAXONOMY
    from unif2ace_mini.data.text import make_caption, make_vqa
    from unif2ace_mini.model import ModelConfig, SequenceBuilder, UniFace
    from unif2ace_mini.tokenizers import (ImageTokenizerConfig, PlainVQTokenizer, Vocabulary,
                                          train_text_tokenizer)

    rng = np.random.default_rng(0)
    texts = []
    for _ in range(20):
        attrs = TAXONOMY.sample(rng)
        texts.append(make_caption(attrs, rng)[0])
        texts += [qa["question"] + " " + qa["answer"] for qa in make_vqa(attrs, rng)]
    tok = train_text_tokenizer(texts, vocab_size=350)
    torch.manual_seed(0)
    image_tok = PlainVQTokenizer(ImageTokenizerConfig(image_size=16, downsample=4, codebook_size=16,
                                                      width=16, code_dim=4, n_res_blocks=1)).eval()
    vocab = Vocabulary.from_tokenizers(tok, image_tok)
    builder = SequenceBuilder(tok, vocab, max_len=48, n_image_tokens=16)
    model = UniFace(ModelConfig(d_model=32, n_layers=2, n_heads=2, d_ff=64, max_len=48)
                    .for_vocab(vocab), vocab).eval()
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return model, image_tok, builder, images


@pytest.fixture(scope="session")
def tiny_training_data():
    """12 records whose image codes follow the caption (something to learn), 16 image codes."""
    from unif2ace_mini.tokenizers import Vocabulary, train_text_tokenizer
    from unif2ace_mini.training import TrainingData

    captions = ["A portrait of a person. They have red hair.", "A face. Blue eyes and a hat.",
                "A headshot. Green eyes. The person frowns."]
    records = [{"caption": captions[i % 3],
                "vqa": [{"question": "Is the person happy?", "answer": ["yes", "no"][i % 2]},
                        {"question": "Eye colour?", "answer": ["red", "blue", "green"][i % 3]}]}
               for i in range(12)]
    tok = train_text_tokenizer(captions * 3 + ["Is the person happy? yes no",
                                               "Eye colour? red blue green"], vocab_size=300)
    codes = torch.tensor([[i % 3, 3 + i % 3, 6, 7 + i % 2] for i in range(12)])
    return TrainingData(records, codes, tok, Vocabulary.from_tokenizers(tok, 16), "tiny-test")


def assert_resume_is_exact(run, tmp_path, keys=("loss", "t2i", "mmu", "lr", "grad_norm")):
    """run(out, **kw) trains into `out`. A run interrupted after step 3 and resumed must give the
    uninterrupted run's losses and final (and EMA) weights. Returns (straight, resumed)."""
    import json

    straight = run(tmp_path / "a")

    def interrupt_at_3(step, record):
        if step == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", callback=interrupt_at_3)
    logged = (tmp_path / "b" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in logged] == [1, 2, 3]
    torch.manual_seed(4321)                      # the resumed run must not depend on this
    resumed = run(tmp_path / "b", resume=True)

    assert resumed.step == straight.step and resumed.stop_reason == "steps"
    assert [r["step"] for r in resumed.history] == [r["step"] for r in straight.history]
    for a, b in zip(straight.history, resumed.history):
        for key in keys:
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (a["step"], key)
    for final_a, final_b in ((straight.model, resumed.model),
                             (straight.ema_model, resumed.ema_model)):
        sa, sb = final_a.state_dict(), final_b.state_dict()
        for k in sa:
            torch.testing.assert_close(sa[k], sb[k], rtol=1e-6, atol=1e-7)
    return straight, resumed


@pytest.fixture(scope="session")
def resume_check():
    return assert_resume_is_exact
