"""Image tokenizer: shapes, round trips, save/load, input checks, VQ maths, codebook metrics."""

import math

import numpy as np
import pytest
import torch

from unif2ace_mini.tokenizers import (ImageTokenizer, ImageTokenizerConfig, PlainVQTokenizer,
                                      TOKENIZER_CONFIGS, build_image_tokenizer, coloured_shapes,
                                      dead_code_share, images_from_uint8, images_to_uint8,
                                      load_image_tokenizer, perplexity, psnr)
from unif2ace_mini.tokenizers.vq import kmeans, nearest_codes, quantize, restart_dead_codes_

SMALL = ImageTokenizerConfig(image_size=16, downsample=4, codebook_size=32, code_dim=8, width=32)


@pytest.fixture(scope="module")
def plain():
    torch.manual_seed(0)
    return PlainVQTokenizer(SMALL).eval()


def test_encode_decode_shapes_and_range(plain):
    x = coloured_shapes(5, 16, seed=0)
    codes = plain.encode(x)
    assert codes.shape == (5, 4, 4) and codes.dtype == torch.long
    assert 0 <= int(codes.min()) and int(codes.max()) < 32
    y = plain.decode(codes)
    assert y.shape == (5, 3, 16, 16) and y.dtype == torch.float32
    assert float(y.min()) >= -1 and float(y.max()) <= 1


def test_encode_decode_are_deterministic_and_batch_independent(plain):
    x = coloured_shapes(4, 16, seed=1)
    assert torch.equal(plain.encode(x), plain.encode(x.clone()))
    # batching must not change the result
    assert torch.equal(plain.encode(x, batch_size=1), plain.encode(x, batch_size=3))
    c = plain.encode(x)
    # conv kernels may sum in another order for another batch size: equal up to float rounding
    assert torch.allclose(plain.decode(c, batch_size=1), plain.decode(c), atol=1e-5)


def test_forward_matches_encode_decode(plain):
    x = coloured_shapes(3, 16, seed=2)
    recon, codes, loss = plain(x)
    assert torch.equal(codes, plain.encode(x))
    assert torch.allclose(recon.clamp(-1, 1), plain.decode(codes), atol=1e-5)
    assert loss.ndim == 0 and loss.item() >= 0


@pytest.mark.parametrize("backend", ["plain", "diffusers"])
def test_save_load_roundtrip(tmp_path, backend):
    cfg = SMALL.replace(backend=backend, block_out_channels=(16, 16, 16), norm_num_groups=8)
    torch.manual_seed(0)
    tok = build_image_tokenizer(cfg).eval()
    tok.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "model.safetensors").is_file()
    assert (tmp_path / "tok" / "image_tokenizer.json").is_file()
    loaded = load_image_tokenizer(tmp_path / "tok")
    assert type(loaded) is type(tok) and loaded.config == tok.config
    for (k, a), (k2, b) in zip(tok.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = coloured_shapes(3, 16, seed=3)
    assert torch.equal(tok.encode(x), loaded.encode(x))
    assert torch.equal(tok.decode(tok.encode(x)), loaded.decode(tok.encode(x)))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image_tokenizer(tmp_path / "nothing")
    PlainVQTokenizer(SMALL).save_pretrained(tmp_path / "p")
    from unif2ace_mini.tokenizers.vqmodel import DiffusersVQTokenizer
    with pytest.raises(ValueError, match="not a DiffusersVQTokenizer"):
        DiffusersVQTokenizer.from_pretrained(tmp_path / "p")


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 3, 32, 32), "image size must be 16x16"),
    (torch.zeros(2, 1, 16, 16), "3 channels"),
    (torch.zeros(2, 16, 16, 3), "channels-last"),
    (torch.zeros(3, 16, 16), "add a batch dimension"),
    (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "floating-point"),
    (torch.full((2, 3, 16, 16), 255.0), r"\[-1, 1\].*images_from_uint8"),
    (torch.full((2, 3, 16, 16), -1.5), r"\[-1, 1\]"),
    (torch.full((2, 3, 16, 16), float("nan")), "NaN"),
    (np.zeros((2, 3, 16, 16), np.float32), "torch.Tensor"),
])
def test_bad_images_are_rejected(plain, bad, match):
    with pytest.raises(ValueError, match=match):
        plain.encode(bad)


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 4, 4), None),  # float codes
    (torch.full((2, 4, 4), 32, dtype=torch.long), r"\[0, 32\)"),
    (torch.full((2, 4, 4), -1, dtype=torch.long), r"\[0, 32\)"),
    (torch.zeros(2, 16, dtype=torch.long), r"\(B, 4, 4\)"),
    (torch.zeros(2, 4, 4, dtype=torch.bool), "integer"),
])
def test_bad_codes_are_rejected(plain, bad, match):
    with pytest.raises(ValueError, match=match or "integer"):
        plain.decode(bad)


def test_float64_images_are_accepted(plain):
    x = coloured_shapes(2, 16, seed=4)
    assert torch.equal(plain.encode(x.double()), plain.encode(x))


def test_uint8_helpers_roundtrip():
    pix = np.random.default_rng(0).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    x = images_from_uint8(pix)
    assert x.shape == (2, 3, 8, 8) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert np.array_equal(images_to_uint8(x), pix)
    with pytest.raises(ValueError, match="uint8"):
        images_from_uint8(pix.astype(np.float32))


def test_config_validation():
    with pytest.raises(ValueError, match="power of two"):
        ImageTokenizerConfig(downsample=3)
    with pytest.raises(ValueError, match="not divisible"):
        ImageTokenizerConfig(image_size=30, downsample=4)
    with pytest.raises(ValueError, match="backend"):
        ImageTokenizerConfig(backend="magvit")
    with pytest.raises(ValueError, match="downsampling"):
        ImageTokenizerConfig(backend="diffusers", block_out_channels=(8, 8), downsample=4)
    assert set(TOKENIZER_CONFIGS) == {"quick", "cpu", "gpu", "paper"}
    q = TOKENIZER_CONFIGS["quick"]
    assert q.tokens_per_image == 64 and 256 <= q.codebook_size <= 512 and q.image_size == 32
    assert TOKENIZER_CONFIGS["paper"].codebook_size == 8192
    assert TOKENIZER_CONFIGS["paper"].downsample == 16
    assert ImageTokenizerConfig.from_dict(q.to_dict()) == q


# --- VQ maths --------------------------------------------------------------------------------

def test_nearest_codes_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    z, cb = torch.randn(200, 6, generator=g), torch.randn(40, 6, generator=g)
    assert torch.equal(nearest_codes(z, cb), torch.cdist(z, cb).argmin(1))


def test_straight_through_gradient_and_losses():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 3, 3, generator=g, requires_grad=True)
    cb = torch.randn(10, 4, generator=g, requires_grad=True)
    z_q, codes, loss = quantize(z, cb, beta=0.25)
    # forward value is the code vector ...
    assert torch.allclose(z_q, cb[codes].permute(0, 3, 1, 2))
    # ... but the gradient passes to z unchanged (straight-through)
    w = torch.randn(z_q.shape, generator=g)
    (z_q * w).sum().backward(retain_graph=True)
    assert torch.allclose(z.grad, w)
    # loss = |sg z - e|^2 + beta |z - sg e|^2: equal values, gradients split 1 : beta
    z.grad, cb.grad = None, None
    loss.backward()
    e = cb.detach()[codes].permute(0, 3, 1, 2)
    mse = (z.detach() - e).pow(2).mean()
    assert torch.allclose(loss, 1.25 * mse)
    assert torch.allclose(z.grad, 0.25 * 2 * (z.detach() - e) / z.numel(), atol=1e-7)


def test_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = (centres[:, None] + 0.1 * torch.randn(4, 50, 2, generator=g)).reshape(-1, 2)
    found = kmeans(x, 4, iters=20, generator=torch.Generator().manual_seed(1))
    dist = torch.cdist(found, centres).min(1).values
    assert float(dist.max()) < 0.2


def test_dead_code_restart_moves_only_dead_codes():
    g = torch.Generator().manual_seed(0)
    cb = torch.randn(8, 3, generator=g)
    before = cb.clone()
    counts = torch.tensor([5, 0, 3, 0, 1, 1, 0, 9])
    z = 100 + torch.randn(2, 3, 4, 4, generator=g)  # data far from every code
    dead = restart_dead_codes_(cb, counts, z, generator=g)
    assert dead.tolist() == [1, 3, 6]
    alive = counts > 0
    assert torch.equal(cb[alive], before[alive])
    assert bool((cb[~alive] > 90).all())  # now on (noisy copies of) encoder outputs


# --- codebook health metrics on known cases ---------------------------------------------------

def test_perplexity_known_cases():
    assert perplexity(torch.arange(16).repeat(5), 16) == pytest.approx(16)
    assert perplexity(torch.arange(8), 16) == pytest.approx(8)  # half the codes, uniformly
    assert perplexity(torch.zeros(100, dtype=torch.long), 16) == pytest.approx(1)
    two = torch.tensor([0] * 3 + [1])  # p = (3/4, 1/4)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert perplexity(two, 4) == pytest.approx(math.exp(h))
    with pytest.raises(ValueError):
        perplexity(torch.tensor([4]), 4)


def test_dead_code_share_and_psnr_known_cases():
    assert dead_code_share(torch.arange(16), 16) == 0.0
    assert dead_code_share(torch.tensor([0, 0, 1]), 8) == pytest.approx(6 / 8)
    x = torch.zeros(2, 3, 4, 4)
    assert psnr(x, x) == float("inf")
    assert psnr(x, x + 0.2) == pytest.approx(20.0)  # 10 log10(4 / 0.04)
    with pytest.raises(ValueError, match="shape"):
        psnr(x, x[:1])


def test_attribute_retention_is_the_ratio_of_oracle_accuracies():
    """A stand-in oracle reads each group's label from the sign of one pixel; a 'tokenizer'
    that zeroes half of those pixels keeps exactly the groups whose label it leaves readable."""
    from unif2ace_mini.data.groups import TAXONOMY
    from unif2ace_mini.tokenizers import attribute_retention

    G = len(TAXONOMY.names)

    class SignOracle:
        def predict_labels(self, images):                    # group g <- pixel (0, 0, g)
            return (images[:, 0, 0, :G] > 0).long()

    class Tokenizer:
        def __init__(self, keep):
            self.keep = keep

        def reconstruct(self, images):
            out = images.clone()
            out[:, 0, 0, self.keep:G] = -1.0                 # groups >= keep read as label 0
            return out

    torch.manual_seed(0)
    labels = torch.randint(0, 2, (64, G))
    images = torch.zeros(64, 3, 4, G)
    images[:, 0, 0, :] = labels.float() * 2 - 1
    full = attribute_retention(SignOracle(), Tokenizer(G), images, labels)
    assert full["retention"] == 1.0 and full["originals"]["mean"] == 1.0
    half = attribute_retention(SignOracle(), Tokenizer(G // 2), images, labels)
    expected = (G // 2 + (labels[:, G // 2:] == 0).float().mean(0).sum().item()) / G
    assert half["retention"] == pytest.approx(expected, abs=1e-6)
    assert half["reconstructions"][TAXONOMY.names[-1]] == pytest.approx(
        (labels[:, -1] == 0).float().mean().item())
