"""Image-tokenizer training: it learns, stays seeded, and respects its step and time limits."""

import pytest
import torch

from unif2ace_mini.tokenizers import (ImageTokenizerConfig, PlainVQTokenizer, coloured_shapes,
                                      evaluate_image_tokenizer, fit_image_tokenizer,
                                      train_image_tokenizer)

CFG = ImageTokenizerConfig(image_size=16, downsample=2, codebook_size=64, code_dim=8, width=32,
                           batch_size=32, lr=3e-3, ae_warmup_steps=20, restart_every=20,
                           max_steps=200, max_seconds=60.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


@pytest.fixture(scope="module")
def data():
    return coloured_shapes(256, 16, seed=0), coloured_shapes(64, 16, seed=1)


@pytest.fixture(scope="module")
def trained(data):
    torch.manual_seed(0)
    tok = PlainVQTokenizer(CFG)
    before = evaluate_image_tokenizer(tok, data[1])
    hist = train_image_tokenizer(tok, data[0], progress=False)
    return tok, before, hist


def test_training_reduces_reconstruction_error(trained, data):
    tok, before, hist = trained
    after = evaluate_image_tokenizer(tok, data[1])  # held-out images
    assert hist["steps"] == CFG.max_steps
    assert after["mse"] < 0.4 * before["mse"], (before, after)
    assert after["psnr"] > before["psnr"] + 4
    assert hist["recon_mse"][-1] < 0.5 * hist["recon_mse"][0]


def test_codebook_stays_healthy(trained, data):
    tok, _, hist = trained
    after = evaluate_image_tokenizer(tok, data[1])
    # k-means init + dead-code restarts: most of the 64 codes carry data
    assert after["perplexity"] > 24, after
    assert after["dead_code_share"] < 0.25, after
    assert all(0 <= d <= 1 for d in hist["dead_share"] if d == d)


def test_training_is_seeded(data):
    def run():
        torch.manual_seed(0)
        tok = PlainVQTokenizer(CFG)
        train_image_tokenizer(tok, data[0], max_steps=30, progress=False)
        return tok
    a, b = run(), run()
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k


def test_time_limit_stops_training(data):
    tok = PlainVQTokenizer(CFG)
    with pytest.warns(RuntimeWarning, match="image tokenizer: the time limit"):
        hist = train_image_tokenizer(tok, data[0], max_steps=10_000, max_seconds=0.5,
                                     progress=False)
    assert 0 < hist["steps"] < 10_000 and hist["total_seconds"] < 5


def test_training_rejects_bad_images():
    tok = PlainVQTokenizer(CFG)
    with pytest.raises(ValueError, match="image size"):
        train_image_tokenizer(tok, torch.zeros(4, 3, 32, 32), max_steps=1, progress=False)


def test_stopping_during_warmup_still_initialises_the_codebook(data):
    tok = PlainVQTokenizer(CFG)
    hist = train_image_tokenizer(tok, data[0], max_steps=5, progress=False)  # warm-up is 20
    assert hist["steps"] == 5
    # k-means placed the codes on encoder outputs: many codes in use, not one
    assert evaluate_image_tokenizer(tok, data[1])["codes_used"] > 16


def test_diffusers_backend_trains_through_the_same_loop(data):
    cfg = CFG.replace(backend="diffusers", block_out_channels=(16, 16), norm_num_groups=8,
                      ae_warmup_steps=2, restart_every=2)
    from unif2ace_mini.tokenizers import build_image_tokenizer
    torch.manual_seed(0)
    tok = build_image_tokenizer(cfg)
    before = tok.codebook.detach().clone()
    hist = train_image_tokenizer(tok, data[0], max_steps=6, progress=False, log_every=2)
    assert hist["steps"] == 6 and all(v == v for v in hist["loss"])  # finite, no NaN
    assert not torch.equal(before, tok.codebook.detach())  # k-means init / updates reached it
    assert tok.encode(data[1][:2]).shape == (2, 8, 8)


def test_fit_is_fixed_by_the_config_seed(data):
    cfg = CFG.replace(max_steps=3, batch_size=8)
    a, hist_a = fit_image_tokenizer(cfg, data[0][:32], progress=False)
    b, hist_b = fit_image_tokenizer(cfg, data[0][:32], progress=False)
    c, _ = fit_image_tokenizer(cfg.replace(seed=1), data[0][:32], progress=False)
    assert hist_a["steps"] == 3 and hist_a["recon_mse"] == hist_b["recon_mse"]
    for (name, pa), pb, pc in zip(a.state_dict().items(), b.state_dict().values(),
                                  c.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(),
                                                         c.state_dict().values()))
