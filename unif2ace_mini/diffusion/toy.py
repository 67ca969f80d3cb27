"""Toy distributions with exact conditionals and entropy, and exact (enumerated) diffusion maths.

- The absorbing CTMC for one token: generator Q and transition exp(sigma_bar Q).
- `JointTable`: an explicit joint p0 over V^L (e.g. L=3, V=4): every conditional, the forward
  marginal p_t over (V+1)^L, the concrete score, and NELBO/MGM by enumerating mask patterns.
- `MarkovChain`: sequences of length L with entropy and conditionals given any observed subset
  (forward-backward), for experiments where V^L is too big to enumerate.

Token ids are 0..V-1 and MASK is V (the last id), as in the project's vocabulary.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import Tensor

from .schedules import Schedule

LOG2 = math.log(2.0)


def gauss_legendre_01(n: int) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on [0, 1] (float64): exact for polynomials of degree < 2n."""
    x, w = np.polynomial.legendre.leggauss(n)
    return torch.from_numpy(0.5 * (x + 1)), torch.from_numpy(0.5 * w)


# ----------------------------------------------------------------------------- absorbing CTMC

def absorbing_generator(n_real: int) -> Tensor:
    """Rate matrix Q ((V+1) x (V+1), rows = from): every real token jumps to MASK at rate 1."""
    q = torch.zeros(n_real + 1, n_real + 1, dtype=torch.float64)
    q[:n_real, n_real] = 1.0
    q[torch.arange(n_real), torch.arange(n_real)] = -1.0
    return q


def transition_matrix(sigma_bar: float, n_real: int) -> Tensor:
    """P(x_t = j | x_0 = i) = expm(sigma_bar Q)[i, j] for the time-changed absorbing CTMC."""
    return torch.linalg.matrix_exp(sigma_bar * absorbing_generator(n_real))


# ----------------------------------------------------------------------------- joint table

class JointTable:
    """An explicit distribution p0 over sequences in {0..V-1}^L, MASK = V."""

    def __init__(self, probs: Tensor):
        probs = torch.as_tensor(probs, dtype=torch.float64)
        if probs.dim() < 1 or len(set(probs.shape)) != 1 or (probs < 0).any():
            raise ValueError("probs must be a non-negative (V, V, ..., V) table")
        self.probs = probs / probs.sum()
        self.length, self.n_real = probs.dim(), probs.shape[0]
        self.mask_id = self.n_real
        self.sequences = torch.tensor(list(itertools.product(range(self.n_real),
                                                             repeat=self.length)))  # (N, L)
        self.flat = self.probs.flatten()                                         # (N,)

    @classmethod
    def random(cls, length: int = 3, n_real: int = 4, concentration: float = 0.5,
               seed: int = 0) -> "JointTable":
        """A Dirichlet-random table: correlated tokens, every sequence possible."""
        rng = np.random.default_rng(seed)
        return cls(torch.from_numpy(rng.gamma(concentration, size=(n_real,) * length)) + 1e-3)

    def entropy(self) -> float:
        """H(p0) in nats."""
        p = self.flat[self.flat > 0]
        return float(-(p * p.log()).sum())

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        idx = torch.multinomial(self.flat, n, replacement=True, generator=generator)
        return self.sequences[idx]

    def index_of(self, x: Tensor) -> Tensor:
        """Row index of each sequence in `self.sequences`, (B,)."""
        powers = self.n_real ** torch.arange(self.length - 1, -1, -1)
        return (x * powers).sum(-1)

    def empirical(self, x: Tensor) -> Tensor:
        """Empirical distribution of samples x (B, L) over the table's sequences, (N,)."""
        return torch.bincount(self.index_of(x), minlength=len(self.flat)).double() / x.shape[0]

    def tv_distance(self, x: Tensor) -> float:
        return 0.5 * float((self.empirical(x) - self.flat).abs().sum())

    def conditionals(self, xt: Tensor) -> Tensor:
        """p0(x^i = v | unmasked tokens of x_t) for every position, (B, L, V).

        Sum the table over the sequences consistent with x_t's unmasked tokens."""
        seq = self.sequences                                                     # (N, L)
        consistent = ((xt[:, None, :] == self.mask_id) | (xt[:, None, :] == seq)).all(-1)
        weight = consistent * self.flat                                          # (B, N)
        onehot = torch.nn.functional.one_hot(seq, self.n_real).double()          # (N, L, V)
        joint = torch.einsum("bn,nlv->blv", weight, onehot)
        return joint / weight.sum(-1)[:, None, None]

    def denoiser(self, xt: Tensor) -> Tensor:
        """The exact denoiser: logits (B, L, V+1) = log conditionals, MASK column -inf."""
        logp = self.conditionals(xt).log()
        return torch.cat([logp, torch.full_like(logp[..., :1], -math.inf)], -1)

    # -- the forward process on whole sequences, (V+1)^L states

    def all_states(self) -> Tensor:
        return torch.tensor(list(itertools.product(range(self.n_real + 1), repeat=self.length)))

    def forward_marginal(self, sigma_bar: float) -> Tensor:
        """p_t over all (V+1)^L states, by pushing p0 through the per-token CTMC transition."""
        trans = transition_matrix(sigma_bar, self.n_real)[: self.n_real]         # (V, V+1)
        p = self.probs
        for axis in range(self.length):                                          # one token at a time
            p = torch.tensordot(p, trans, dims=([axis], [0])).movedim(-1, axis)
        return p.flatten()

    def state_index(self, x: Tensor) -> Tensor:
        powers = (self.n_real + 1) ** torch.arange(self.length - 1, -1, -1)
        return (x * powers).sum(-1)

    # -- NELBO / MGM by enumerating mask patterns

    def mask_patterns(self) -> Tensor:
        """All 2^L patterns as a (2^L, L) bool tensor."""
        return torch.tensor(list(itertools.product([False, True], repeat=self.length)))

    def pattern_ce(self, denoiser) -> tuple[Tensor, Tensor]:
        """c_S = E_{x0 ~ p0} sum_{i in S} -log p_theta(x0^i | x0 masked on S) for every pattern S.

        Returns (c, k): c (2^L,) in nats and k (2^L,) the pattern sizes. One denoiser call."""
        patterns = self.mask_patterns()                                          # (M, L)
        n_seq, n_pat = len(self.sequences), len(patterns)
        x0 = self.sequences[:, None, :].expand(n_seq, n_pat, self.length).reshape(-1, self.length)
        masks = patterns[None].expand(n_seq, n_pat, self.length).reshape(-1, self.length)
        xt = torch.where(masks, self.mask_id, x0)
        logp = torch.log_softmax(denoiser(xt).double()[..., : self.n_real], -1)
        ce = -logp.gather(-1, x0[..., None]).squeeze(-1)                         # (N*M, L)
        ce = torch.where(masks, ce, 0.0).sum(-1).view(n_seq, n_pat)
        return (self.flat[:, None] * ce).sum(0), patterns.sum(-1)


def mean_ce_by_count(c: Tensor, k: Tensor, length: int) -> Tensor:
    """m(k) = mean over |S| = k of c_S / k: the expected CE per masked token, for k = 1..L."""
    return torch.stack([c[k == j].mean() / j for j in range(1, length + 1)])


def nelbo_by_counts(c: Tensor, k: Tensor, length: int) -> float:
    """Schedule-free NELBO = sum_{k=1}^L m(k) (the integral of w(t) Binom(k) over t is 1/k)."""
    return float(mean_ce_by_count(c, k, length).sum())


def mgm_by_counts(c: Tensor, k: Tensor, length: int) -> float:
    """Show-o's MGM loss in the large-batch limit: its count law pi(k), CE averaged over masked
    tokens, so count k weighs k pi(k): sum_k k pi(k) m(k) / sum_k k pi(k). (nats per token)"""
    from .masking import showo_count_probs

    kk = torch.arange(1, length + 1, dtype=torch.float64)
    weight = kk * showo_count_probs(length)
    return float((weight * mean_ce_by_count(c, k, length)).sum() / weight.sum())


def nelbo_by_quadrature(c: Tensor, k: Tensor, length: int, schedule: Schedule,
                        n_quad: int = 200) -> float:
    """int_0^1 w(t) E_{x_t ~ q_t}[sum_masked CE] dt, by Gauss-Legendre in t (exact E over x_t)."""
    t, wq = gauss_legendre_01(n_quad)
    alpha, masked = schedule.alpha(t)[:, None], schedule.masked_fraction(t)[:, None]   # (Q, 1)
    kk = k.double()[None]                                                           # (1, M)
    p_pattern = alpha ** (length - kk) * masked ** kk                              # (Q, M)
    integrand = schedule.elbo_weight(t) * (p_pattern * c[None]).sum(-1)            # (Q,)
    return float((wq * integrand).sum())


def conditional_entropy_given_alpha(table: JointTable, alpha: float) -> float:
    """H(X0 | X_t) when each token is kept clean with probability alpha (nats).

    The exact NELBO of an exact model under a schedule is H(X0 | X_{t=1}) - H(X0 | X_{t=0}),
    which is H only if alpha(0) = 1 and alpha(1) = 0."""
    total, h = 0.0, table.entropy()
    for pattern in table.mask_patterns():
        kept = [i for i in range(table.length) if not pattern[i]]
        marg = table.probs.sum(dim=[i for i in range(table.length) if pattern[i]]) if \
            pattern.any() else table.probs
        marg = marg.flatten()
        h_kept = float(-(marg[marg > 0] * marg[marg > 0].log()).sum()) if kept else 0.0
        n_masked = int(pattern.sum())
        total += alpha ** (table.length - n_masked) * (1 - alpha) ** n_masked * (h - h_kept)
    return total


# ----------------------------------------------------------------------------- Markov chain

class MarkovChain:
    """A stationary Markov chain over V tokens: exact entropy, log-probs and conditionals."""

    def __init__(self, transition: Tensor, length: int):
        trans = torch.as_tensor(transition, dtype=torch.float64)
        self.trans = trans / trans.sum(-1, keepdim=True)                        # (V, V)
        self.n_real, self.length, self.mask_id = trans.shape[0], length, trans.shape[0]
        evals, evecs = torch.linalg.eig(self.trans.T)
        stat = evecs[:, evals.real.argmax()].real
        self.init = stat / stat.sum()                                            # (V,)

    @classmethod
    def random(cls, n_real: int = 8, length: int = 16, concentration: float = 0.3,
               seed: int = 0) -> "MarkovChain":
        """A sparse-ish random chain (Dirichlet rows): low entropy, strong structure."""
        rng = np.random.default_rng(seed)
        rows = rng.dirichlet(np.full(n_real, concentration), size=n_real)
        return cls(torch.from_numpy(rows) + 1e-4, length)

    def entropy(self) -> float:
        """H(x_1..x_L) in nats: H(init) + (L-1) * the entropy rate (stationary start)."""
        h0 = float(-(self.init * self.init.log()).sum())
        rate = float(-(self.init[:, None] * self.trans * self.trans.log()).sum())
        return h0 + (self.length - 1) * rate

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        x = torch.empty(n, self.length, dtype=torch.long)
        x[:, 0] = torch.multinomial(self.init, n, replacement=True, generator=generator)
        for i in range(1, self.length):                                          # sequential by nature
            x[:, i] = torch.multinomial(self.trans[x[:, i - 1]], 1, generator=generator)[:, 0]
        return x

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) in nats, (B,)."""
        return self.init[x[:, 0]].log() + self.trans[x[:, :-1], x[:, 1:]].log().sum(-1)

    def conditionals(self, xt: Tensor) -> Tensor:
        """p(x^i = v | unmasked tokens of x_t), (B, L, V), by normalised forward-backward."""
        evidence = torch.where((xt == self.mask_id)[..., None], 1.0,
                               torch.nn.functional.one_hot(xt.clamp(max=self.n_real - 1),
                                                           self.n_real).double())    # (B, L, V)
        fwd = torch.empty_like(evidence)
        bwd = torch.ones_like(evidence)
        f = self.init * evidence[:, 0]
        fwd[:, 0] = f / f.sum(-1, keepdim=True)
        for i in range(1, self.length):
            f = (fwd[:, i - 1] @ self.trans) * evidence[:, i]
            fwd[:, i] = f / f.sum(-1, keepdim=True)
        for i in range(self.length - 2, -1, -1):
            b = (evidence[:, i + 1] * bwd[:, i + 1]) @ self.trans.T
            bwd[:, i] = b / b.sum(-1, keepdim=True)
        post = fwd * bwd
        return post / post.sum(-1, keepdim=True)

    def denoiser(self, xt: Tensor) -> Tensor:
        """The exact denoiser: logits (B, L, V+1), MASK column -inf."""
        logp = self.conditionals(xt).log()
        return torch.cat([logp, torch.full_like(logp[..., :1], -math.inf)], -1)
