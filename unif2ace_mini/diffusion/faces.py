"""The D3Diff ablation on face image tokens: the last experiment of notebook 04 (DESIGN §9).

Data. The profile's SynthFaces train and test splits, encoded once by the cached image tokenizer
(quick: 32 px -> 8x8 = 64 codes out of 512) and cached. A sequence is [class, 64 codes]: the class
token is one attribute's value (hair colour by default), so one denoiser models the joint
p(class, image), and class-conditioned generation is inpainting: fix position 0 and unmask the
rest (every sampler leaves given tokens alone). Vocabulary: [codes | class tokens | MASK].

Models. The toy ablation's TinyDenoiser and training loop (`denoiser.load_or_train`), unchanged:
same data order, same steps, only the loss differs. At evaluation a position may only take its
legal tokens (a class at position 0, a code elsewhere), the same rule for every model.

Metrics (all paired: same test sequences, orders, classes and random streams for every model).
    NELBO      `nelbo_bits_per_token` on the test sequences, bits per token of the joint sequence.
    FD-oracle  Fréchet distance between attribute-oracle features of generated and test images.
               Not FID: the judge is SynthFaces' small attribute CNN, not Inception.
    accuracy   the oracle's reading of the conditioned attribute on the generated images.
Reference rows: tokenizer reconstructions of the test images (the floor a token model can reach),
validation images (real vs real: the estimator's own noise at this sample size) and an
independent-token model (per class and position histograms: colours right, no structure).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .denoiser import ToyTrainConfig, load_or_train
from .likelihood import LOG2, NelboEstimate, nelbo_bits_per_token
from .samplers import SampleResult, ancestral_sample, maskgit_sample
from .schedules import CosineSchedule

FACE_VARIANTS = ("mgm", "score_tied", "d3diff_0.01")    # the paper's three ablation rows
PAPER_FID = {"mgm": 77.5, "score_tied": 69.7, "d3diff_0.01": 66.0}   # UniF2ace's loss ablation
SAMPLERS = ("maskgit", "ancestral")


@dataclass(frozen=True)
class FaceConfig:
    attribute: str = "hair_color"   # the class token: visible at 32 px, 7 values, oracle ~0.95
    # same TinyDenoiser as the toy; small batches: early training is limited by updates, not data
    train: ToyTrainConfig = ToyTrainConfig(steps=150, max_seconds=300.0, batch_size=32, warmup=20)
    n_samples: int = 128            # images per scored set (generated, reference rows)
    maskgit_steps: int = 8
    ancestral_steps: int = 10       # with caching: at most this many network rows per image
    n_nelbo: int = 24               # test sequences scored (x 65 network rows each)
    n_bootstrap: int = 20           # resamples for the FD-oracle standard error
    smoothing: float = 0.5          # add-alpha of the independent-token baseline


# quick: 150 steps of 32 faces (1.6 epochs), ~20 s per model on 2 free cores: the first stretch
# of training only. The loop in denoiser.py runs on the CPU, so larger profiles stay CPU-sized.
FACE_SIZES = {
    "quick": FaceConfig(),
    "cpu": FaceConfig(train=ToyTrainConfig(steps=2000, max_seconds=1200.0, batch_size=32),
                      n_samples=512, maskgit_steps=12, ancestral_steps=32, n_nelbo=128,
                      n_bootstrap=50),
}
FACE_SIZES["gpu"] = FACE_SIZES["paper"] = FACE_SIZES["cpu"]


@dataclass(frozen=True, eq=False)
class FaceTokens:
    """Tokenised splits: sequences [class token, h*w codes] and what is needed to read them."""
    train: Tensor                  # (N, 1 + h*w) int64
    test: Tensor                   # (M, 1 + h*w) int64
    test_images: Tensor            # (M, 3, H, W) uint8: the FD-oracle reference
    val_images: Tensor             # (M', 3, H, W) uint8: real-vs-real noise floor
    val_labels: Tensor             # (M',) class index of each validation image
    attribute: str
    attribute_index: int           # column of the attribute in the dataset's label matrix
    class_names: tuple[str, ...]
    n_codes: int
    grid: int
    key: str                       # data + tokenizer + attribute: trained models are keyed on it

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def vocab_size(self) -> int:
        return self.n_codes + self.n_classes + 1

    @property
    def mask_id(self) -> int:
        return self.vocab_size - 1

    @property
    def length(self) -> int:
        return 1 + self.grid * self.grid

    def labels(self, seqs: Tensor) -> Tensor:                               # (N, L) -> (N,)
        return seqs[:, 0] - self.n_codes

    def codes(self, seqs: Tensor) -> Tensor:                                # (N, L) -> (N, h, w)
        if (seqs[:, 1:] >= self.n_codes).any():
            raise ValueError("image positions hold ids that are not codes (class token or MASK)")
        return seqs[:, 1:].reshape(-1, self.grid, self.grid)

    def legal_bias(self) -> Tensor:
        """(L, V): 0 where a token is legal at a position, -inf elsewhere (MASK never is)."""
        bias = torch.full((self.length, self.vocab_size), -math.inf)
        bias[0, self.n_codes:self.mask_id] = 0.0
        bias[1:, :self.n_codes] = 0.0
        return bias


def load_face_tokens(profile, attribute: str = "hair_color") -> tuple[FaceTokens, nn.Module]:
    """(FaceTokens, image tokenizer) for a profile; codes come from the cache after the first call.

    The cache file is named after the tokenizer's cache folder (which hashes the data, renderer
    included, and the tokenizer config) plus a digest of the tokenizer's weights: a tokenizer
    retrained under the same name (its training stops on a time limit) re-encodes too."""
    from .. import profiles, runtime
    from ..data.build import build_or_load, cache_key
    from ..data.dataset import load_tensors, to_unit_range
    from ..data.groups import TAXONOMY
    from ..tokenizers.cache import image_tokenizer_dir, load_or_train_image_tokenizer

    if attribute not in TAXONOMY.names:
        raise ValueError(f"unknown attribute {attribute!r}; one of {', '.join(TAXONOMY.names)}")
    profile = profiles.get_profile(profile)
    data_path = build_or_load(profile.data)
    tokenizer, _ = load_or_train_image_tokenizer(profile)
    key = f"{image_tokenizer_dir(profile.tokenizer, cache_key(profile.data)).name}-" \
          f"{weights_digest(tokenizer)}"
    splits = {s: load_tensors(data_path, s) for s in ("train", "test", "validation")}
    file = runtime.cache_dir("face_tokens") / f"{key}.safetensors"
    if file.is_file():
        codes, _ = runtime.load_safetensors(file)
    else:
        codes = {s: tokenizer.encode(to_unit_range(splits[s]["images"])) for s in ("train", "test")}
        runtime.save_safetensors(codes, file, {"tokenizer": key})
    index = TAXONOMY.names.index(attribute)
    labels = {s: splits[s]["labels"][:, index] for s in splits}
    n_codes = tokenizer.codebook_size
    seqs = {s: torch.cat([labels[s][:, None] + n_codes, codes[s].flatten(1)], 1)   # (N, 1 + h*w)
            for s in ("train", "test")}
    return FaceTokens(train=seqs["train"], test=seqs["test"], test_images=splits["test"]["images"],
                      val_images=splits["validation"]["images"], val_labels=labels["validation"],
                      attribute=attribute, attribute_index=index,
                      class_names=tuple(TAXONOMY.groups[index].values), n_codes=n_codes,
                      grid=tokenizer.grid, key=f"{key}-{attribute}"), tokenizer


def weights_digest(module: nn.Module) -> str:
    """8 hex digits of sha256 over a module's state dict (names and raw bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()[:8]


def train_face_models(tokens: FaceTokens, config: FaceConfig,
                      variants=FACE_VARIANTS) -> tuple[dict[str, nn.Module], dict[str, dict]]:
    """One TinyDenoiser per loss variant, through the artifact cache (same data order, steps)."""
    models, logs = {}, {}
    for variant in variants:
        models[variant], logs[variant] = load_or_train(
            variant, tokens.train, tokens.vocab_size, tokens.mask_id, CosineSchedule(),
            config.train, cache_key=f"faces-{tokens.key}")
    return models, logs


def face_denoiser(model: nn.Module, tokens: FaceTokens):
    """A no-grad `denoiser(xt) -> logits` whose positions only take their legal tokens."""
    bias = tokens.legal_bias()

    @torch.no_grad()
    def denoiser(xt: Tensor) -> Tensor:
        return model(xt) + bias[: xt.shape[1]]                              # (B, L, V)
    return denoiser


def generate(denoiser, tokens: FaceTokens, labels: Tensor, sampler: str, num_steps: int,
             generator: torch.Generator) -> SampleResult:
    """Class-conditioned samples: position 0 holds the class, the h*w codes start masked."""
    xt = torch.full((labels.shape[0], tokens.length), tokens.mask_id, dtype=torch.long)
    xt[:, 0] = labels + tokens.n_codes
    if sampler == "maskgit":
        return maskgit_sample(denoiser, len(xt), tokens.length, tokens.mask_id, num_steps,
                              generator=generator, xt=xt)
    if sampler == "ancestral":
        return ancestral_sample(denoiser, len(xt), tokens.length, tokens.mask_id, num_steps,
                                schedule=CosineSchedule(), generator=generator, xt=xt)
    raise ValueError(f"unknown sampler {sampler!r}; one of {SAMPLERS}")


class IndependentTokens:
    """The trivial baseline: class ~ its train frequency, then every code independently from its
    (class, position) histogram. It gets colours and layout on average, and no structure."""

    def __init__(self, tokens: FaceTokens, smoothing: float = 0.5):
        if smoothing <= 0:
            raise ValueError(f"smoothing must be > 0 (unseen codes need mass), got {smoothing}")
        labels, codes = tokens.labels(tokens.train), tokens.train[:, 1:]   # (N,), (N, P)
        counts = torch.zeros(tokens.n_classes, codes.shape[1], tokens.n_codes, dtype=torch.float64)
        flat = (labels[:, None] * codes.shape[1] + torch.arange(codes.shape[1])) * tokens.n_codes
        counts.view(-1).index_add_(0, (flat + codes).flatten(),
                                   torch.ones(codes.numel(), dtype=torch.float64))
        self.log_p = (counts + smoothing).log() - (counts + smoothing).sum(-1, keepdim=True).log()
        prior = torch.bincount(labels, minlength=tokens.n_classes).double() + smoothing
        self.log_prior = prior.log() - prior.sum().log()
        self.tokens = tokens

    def nll_bits_per_token(self, seqs: Tensor) -> NelboEstimate:
        """Exact -log p per token (its NELBO is its NLL), same fields as `nelbo_bits_per_token`."""
        labels, codes = self.tokens.labels(seqs), seqs[:, 1:]
        positions = torch.arange(codes.shape[1])
        nats = -(self.log_prior[labels] + self.log_p[labels[:, None], positions, codes].sum(-1))
        bits = nats / (LOG2 * seqs.shape[1])
        return NelboEstimate(float(bits.mean()), float(bits.std() / len(bits) ** 0.5), nats)

    def sample(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        probs = self.log_p[labels].exp()                                    # (N, P, K)
        codes = torch.multinomial(probs.flatten(0, 1), 1, generator=generator).view(len(labels), -1)
        return torch.cat([labels[:, None] + self.tokens.n_codes, codes], dim=1)


# --- FD-oracle ------------------------------------------------------------------------------------

def _check_features(feats: Tensor, name: str) -> Tensor:
    if not isinstance(feats, Tensor) or feats.dim() != 2 or feats.shape[0] < 2:
        raise ValueError(f"{name} must be a (N >= 2, D) feature tensor, got "
                         f"{tuple(getattr(feats, 'shape', ()))}")
    if not torch.isfinite(feats).all():
        raise ValueError(f"{name} holds NaN or inf")
    return feats.double()


class _Gaussian:
    """Mean, covariance and covariance square root of a feature set, computed once."""

    def __init__(self, feats: Tensor, name: str):
        feats = _check_features(feats, name)
        self.dim, self.mean = feats.shape[1], feats.mean(0)
        self.cov = torch.cov(feats.T).reshape(self.dim, self.dim)          # (D, D), also D = 1
        evals, evecs = torch.linalg.eigh(self.cov)                         # C = U diag(e) U^T
        self.root = (evecs * evals.clamp(min=0).sqrt()) @ evecs.T          # C^1/2, symmetric

    def distance_from(self, feats: Tensor, name: str = "feats_a") -> float:
        """|mu_a - mu|^2 + Tr(C_a + C - 2 (C^1/2 C_a C^1/2)^1/2): the eigenvalues of the
        symmetric product equal those of C_a C, but come out real and >= 0 (no complex sqrtm)."""
        a = _check_features(feats, name)
        if a.shape[1] != self.dim:
            raise ValueError(f"feature sizes differ: {a.shape[1]} vs {self.dim}")
        cov_a = torch.cov(a.T).reshape(self.dim, self.dim)                   # (D, D)
        cross = torch.linalg.eigvalsh(self.root @ cov_a @ self.root).clamp(min=0).sqrt().sum()
        mean_term = (a.mean(0) - self.mean).square().sum()
        return float(mean_term + cov_a.trace() + self.cov.trace() - 2 * cross)


def frechet_distance(feats_a: Tensor, feats_b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N_a, D) and (N_b, D).

    FD-oracle when the features are the attribute oracle's (our FID stand-in, never called FID).
    Like FID it is biased upward at small N: compare sets of equal size only."""
    return _Gaussian(feats_b, "feats_b").distance_from(feats_a)


def fd_with_stderr(feats: Tensor, reference: Tensor, n_bootstrap: int = 20,
                   seed: int = 0) -> tuple[float, float]:
    """FD-oracle of `feats` against `reference`, and its bootstrap standard error over the rows of
    `feats` (the reference is held fixed: the spread says how much the sample set moves it)."""
    ref = _Gaussian(reference, "reference")
    value = ref.distance_from(feats)
    if n_bootstrap < 2:
        return value, math.nan
    g = torch.Generator().manual_seed(seed)
    boots = torch.tensor([ref.distance_from(feats[torch.randint(0, len(feats), (len(feats),),
                                                                generator=g)])
                          for _ in range(n_bootstrap)])
    return value, float(boots.std())


def to_uint8(images: Tensor) -> Tensor:
    """Decoder output in [-1, 1] -> uint8, as if saved to PNG (real images are uint8 too)."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@dataclass(frozen=True)
class SampleScore:
    fd: float                 # FD-oracle against the test images
    fd_stderr: float          # bootstrap over the scored images
    accuracy: float           # oracle reads the conditioned attribute value back
    accuracy_stderr: float    # binomial
    calls_per_sample: float   # network rows per image (nan for non-network rows)


def score_images(images: Tensor, labels: Tensor, oracle: nn.Module, reference: Tensor,
                 tokens: FaceTokens, config: FaceConfig, calls: float = math.nan,
                 seed: int = 0) -> SampleScore:
    """FD-oracle (vs `reference` features) and conditioned-attribute accuracy of uint8 images."""
    with torch.no_grad():
        feats = oracle.eval().features(images)
    fd, fd_se = fd_with_stderr(feats, reference, config.n_bootstrap, seed)
    hit = (oracle.predict_labels(images)[:, tokens.attribute_index] == labels).double()
    return SampleScore(fd, fd_se, float(hit.mean()), float(hit.std() / len(hit) ** 0.5), calls)


def evaluate_nelbo(models: dict[str, nn.Module], tokens: FaceTokens, config: FaceConfig,
                   seed: int = 0) -> dict[str, NelboEstimate]:
    """Test NELBO in bits per token of the first `n_nelbo` test sequences: every model on the
    same sequences and random orders (paired), plus the independent baseline's exact NLL."""
    scored = tokens.test[: config.n_nelbo]
    nelbo = {"independent": IndependentTokens(tokens, config.smoothing).nll_bits_per_token(scored)}
    for name, model in models.items():
        nelbo[name] = nelbo_bits_per_token(face_denoiser(model, tokens), scored, tokens.mask_id,
                                           torch.Generator().manual_seed(seed + 1),
                                           rows_per_call=512)   # (512, L, V) float64: ~140 MB
    return nelbo


def evaluate_samples(models: dict[str, nn.Module], tokens: FaceTokens, tokenizer: nn.Module,
                     oracle: nn.Module, config: FaceConfig, seed: int = 0
                     ) -> tuple[dict[tuple[str, str], SampleScore], dict[tuple[str, str], Tensor]]:
    """FD-oracle and attribute accuracy of `n_samples` images per (model, sampler), and of the
    reference rows. Returns ({(name, sampler): SampleScore}, {(name, sampler): uint8 images}).

    Generation is conditioned on the classes of the first n test images, so every set has the
    test set's class mix; the reference features are those of all test images. Every model gets
    the same classes and the same random stream. The validation row's accuracy is the oracle's
    own on real faces (their true labels): the ceiling for the generated rows."""
    n = config.n_samples
    labels = tokens.labels(tokens.test)[:n]
    baseline = IndependentTokens(tokens, config.smoothing)

    def decode(seqs: Tensor) -> Tensor:                                  # (n, L) -> uint8 images
        return to_uint8(tokenizer.decode(tokens.codes(seqs)))

    sets = {("test reconstructions", "-"): (decode(tokens.test[:n]), labels, math.nan),
            ("validation images", "-"): (tokens.val_images[:n], tokens.val_labels[:n], math.nan),
            ("independent", "-"): (decode(baseline.sample(labels, torch.Generator().manual_seed(
                seed + 2))), labels, math.nan)}
    for name, model in models.items():
        den = face_denoiser(model, tokens)
        for sampler in SAMPLERS:
            steps = config.maskgit_steps if sampler == "maskgit" else config.ancestral_steps
            out = generate(den, tokens, labels, sampler, steps,
                           torch.Generator().manual_seed(seed + 3))
            sets[(name, sampler)] = (decode(out.tokens), labels, out.calls_per_sample)
    with torch.no_grad():
        reference = oracle.eval().features(tokens.test_images)               # (M, D)
    scores = {key: score_images(images, lab, oracle, reference, tokens, config, calls, seed)
              for key, (images, lab, calls) in sets.items()}
    return scores, {key: images for key, (images, _, _) in sets.items()}
