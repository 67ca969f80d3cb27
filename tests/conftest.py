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
