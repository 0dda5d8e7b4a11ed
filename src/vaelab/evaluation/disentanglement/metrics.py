"""MIG, the FactorVAE score and DCI on codes and discrete factors: pure functions, independent of vaelab's
models and datasets (the glue is `measure.py`). They follow disentanglement_lib (Locatello et al. 2019), whose
defaults they keep; where they differ it is said.

- MIG (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").
- FactorVAE score (Kim & Mnih 2018, "Disentangling by Factorising").
- DCI (Eastwood & Williams 2018, "A Framework for the Quantitative Evaluation of Disentangled Representations").

Codes are (N, D) floats (a model's posterior means), factors (N, K) whole numbers (the ground truth's values,
any integers: they are relabelled 0..V-1 per factor). Logarithms are natural; every random draw comes from the
`numpy.random.Generator` or seed passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

MIG_BINS = 20  # disentanglement_lib's num_bins
FACTORVAE_BATCH = 64  # images per vote (L in Kim & Mnih)
MIN_VARIANCE = 0.01  # FactorVAE: dims whose code varies less over the data are left out (vaelab's active units)
DCI_PREDICTORS = ("random-forest", "gbt", "logistic")


# --------------------------------------------------------------------------- MIG


@dataclass(frozen=True)
class MIGResult:
    score: float  # mean over factors of per_factor
    per_factor: np.ndarray  # (K,) (I(z_best; v_k) - I(z_second; v_k)) / H(v_k)
    best_dim: np.ndarray  # (K,) int: the dim with the most information about each factor
    mutual_information: np.ndarray  # (D, K) nats, between the discretised dims and the factors
    entropy: np.ndarray  # (K,) nats, of each factor in the sample


def discretize(codes: np.ndarray, bins: int = MIG_BINS) -> np.ndarray:
    """(N, D) codes -> (N, D) bin numbers 1..bins: equal-width bins between each dim's min and max, as
    disentanglement_lib's `_histogram_discretize` (a constant dim lands in one bin)."""
    codes = np.asarray(codes, dtype=np.float64)
    out = np.empty(codes.shape, dtype=np.int64)
    for d in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, d], bins)
        out[:, d] = np.digitize(codes[:, d], edges[:-1])
    return out


def entropy(labels: np.ndarray) -> float:
    """H of a discrete sample (N,), nats, from its frequencies."""
    counts = np.unique(labels, return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """I(a; b) of two discrete samples (N,), nats, from the joint frequencies (what sklearn's
    `mutual_info_score`, which disentanglement_lib calls, computes)."""
    a = np.unique(a, return_inverse=True)[1].ravel()
    b = np.unique(b, return_inverse=True)[1].ravel()
    na, nb = a.max() + 1, b.max() + 1
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / len(a)  # (na, nb) frequencies
    independent = joint.sum(1, keepdims=True) * joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(max((joint[nz] * np.log(joint[nz] / independent[nz])).sum(), 0.0))


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = MIG_BINS) -> MIGResult:
    """The mutual information gap: for each factor, the gap between the two dims that know most about it,
    over its entropy; then the mean over factors. In [0, 1]: 1 when one dim holds each factor and no other dim
    knows anything about it. Needs at least two dims and factors that vary in the sample."""
    codes, factors = _check(codes, factors)
    if codes.shape[1] < 2:
        raise ValueError("MIG needs at least two code dims (it is the gap between the top two)")
    h = np.array([entropy(f) for f in factors.T])
    if (h == 0).any():
        raise ValueError(f"factor {int(np.flatnonzero(h == 0)[0])} takes one value in the sample: no MIG")
    binned = discretize(codes, bins)
    mi = np.array([[mutual_information(z, f) for f in factors.T] for z in binned.T])  # (D, K)
    order = np.argsort(-mi, axis=0, kind="stable")  # (D, K)
    k = np.arange(factors.shape[1])
    per_factor = (mi[order[0], k] - mi[order[1], k]) / h
    return MIGResult(float(per_factor.mean()), per_factor, order[0], mi, h)


# --------------------------------------------------------------------------- FactorVAE score


@dataclass(frozen=True)
class FactorVAEResult:
    score: float  # the majority-vote classifier's accuracy on the held-out votes
    train_accuracy: float  # ... on the votes it was made from (biased upwards)
    chance: float  # the most frequent factor's share of the held-out votes: a classifier that ignores the dim
    active: np.ndarray  # (D,) bool: the dims taking part (variance over the data > min_variance)
    factor_of_dim: np.ndarray  # (D,) int: the factor each dim votes for most in training; -1: no training vote
    train_votes: np.ndarray  # (K, D) int: how often fixing factor k made dim d the least varying one


SampleFn = Callable[[int | None, int | None, int, np.random.Generator], Any]


def factorvae_score(
    encode_fn: Callable[[Any], np.ndarray],
    sample_fn: SampleFn,
    factor_sizes: Sequence[int],
    *,
    rng: np.random.Generator,
    batch_size: int = FACTORVAE_BATCH,
    n_train: int = 10_000,
    n_eval: int = 5_000,
    n_variance: int = 10_000,
    min_variance: float = MIN_VARIANCE,
    votes_per_call: int = 16,
    progress: Callable[[int], None] | None = None,
) -> FactorVAEResult:
    """Kim & Mnih's score, as disentanglement_lib computes it.

    Each dim's variance over the data comes from `n_variance` codes of `sample_fn(None, None, n, rng)` (random
    factors); dims whose variance is at most `min_variance` are left out (disentanglement_lib keeps every dim).
    A vote fixes one factor k (uniform) at one value (uniform over its `factor_sizes[k]` values), encodes
    `batch_size` images `sample_fn(k, value, batch_size, rng)` with the other factors random, and votes for the
    kept dim whose variance over the batch (ddof 1), divided by its variance over the data, is least. Each dim
    is assigned the factor it got most training votes for (`n_train` votes); the score is the share of `n_eval`
    new votes that this classifier gets right. Chance is the most frequent factor's share (about 1/K).
    `encode_fn` maps what `sample_fn` returns (any rows: numpy arrays or torch tensors, concatenated
    `votes_per_call` votes at a time) to codes (rows, D); `progress(votes)` is called after each call.
    """
    sizes = np.asarray(factor_sizes, dtype=np.int64)
    if len(sizes) < 2 or (sizes < 2).any():
        raise ValueError(f"the FactorVAE score needs two or more factors of two or more values, got {list(sizes)}")
    if batch_size < 2:
        raise ValueError("the FactorVAE score needs two or more images per vote for a variance")
    codes = np.asarray(encode_fn(sample_fn(None, None, n_variance, rng)), dtype=np.float64)
    variance = codes.var(axis=0, ddof=1)
    active = variance > min_variance
    d = codes.shape[1]

    def votes(n: int) -> np.ndarray:
        counts = np.zeros((len(sizes), d), dtype=np.int64)
        for start in range(0, n, votes_per_call):
            m = min(votes_per_call, n - start)
            factors = rng.integers(len(sizes), size=m)
            values = rng.integers(sizes[factors])
            images = _concat([sample_fn(int(k), int(v), batch_size, rng) for k, v in zip(factors, values)])
            z = np.asarray(encode_fn(images), dtype=np.float64).reshape(m, batch_size, d)
            ratio = z[:, :, active].var(axis=1, ddof=1) / variance[active]  # (m, kept dims)
            np.add.at(counts, (factors, np.flatnonzero(active)[ratio.argmin(axis=1)]), 1)
            if progress is not None:
                progress(m)
        return counts

    if not active.any():  # disentanglement_lib's answer too: nothing to vote with
        empty = np.zeros((len(sizes), d), dtype=np.int64)
        return FactorVAEResult(0.0, 0.0, 1.0 / len(sizes), active, np.full(d, -1), empty)
    train, test = votes(n_train), votes(n_eval)
    classifier = train.argmax(axis=0)  # (D,) the factor each dim votes for most (ties: the first)
    dims = np.arange(d)
    factor_of_dim = np.where(train.sum(axis=0) > 0, classifier, -1)
    return FactorVAEResult(
        score=float(test[classifier, dims].sum() / test.sum()),
        train_accuracy=float(train[classifier, dims].sum() / train.sum()),
        chance=float(test.sum(axis=1).max() / test.sum()),
        active=active,
        factor_of_dim=factor_of_dim,
        train_votes=train,
    )


def _concat(parts: list) -> Any:
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


# --------------------------------------------------------------------------- DCI


@dataclass(frozen=True)
class DCIResult:
    disentanglement: float  # sum over dims of (1 - H_K(row)) weighted by the dim's share of the importance
    completeness: float  # mean over factors of 1 - H_D(column) (each column sums to 1)
    informativeness: float  # the predictors' mean accuracy on the test codes
    train_accuracy: float  # ... on the training codes
    importance: np.ndarray  # (D, K) R: how much each dim serves the prediction of each factor; columns sum to 1
    disentanglement_per_dim: np.ndarray  # (D,)
    completeness_per_factor: np.ndarray  # (K,)
    informativeness_per_factor: np.ndarray  # (K,) test accuracy of each factor's predictor


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    predictor: str = "random-forest",
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> DCIResult:
    """Eastwood & Williams' disentanglement, completeness and informativeness, with one classifier per factor
    trained on the training codes and tested on the test codes.

    `predictor` (each importance column normalised to sum 1):
    - "random-forest" (the default): scikit-learn's RandomForestClassifier, 100 trees of depth at most 8, every dim
      importance = its impurity-based feature importances. Eastwood & Williams used random forests too.
    - "gbt": GradientBoostingClassifier with its defaults (100 stages of depth-3 trees, one tree per class
      per stage, learning rate 0.1), as disentanglement_lib; on shapes' 113 factor values and 10,000 codes
      it took 6 minutes on 2 busy cores (niced), the forest 15 s.
    - "logistic": multinomial logistic regression (L2, C = 1) on the standardised codes, importance = the
      sum over classes of |coefficient|: fast, but it sees only what a linear score can.
    Entropies use base K for a dim's row and base D for a factor's column (disentanglement_lib's, with its
    1e-11 floor).
    `progress(1)` after each factor. Needs scikit-learn (the `disentanglement` extra).
    """
    codes_train, factors_train = _check(codes_train, factors_train)
    codes_test, factors_test = _check(codes_test, factors_test)
    d, k = codes_train.shape[1], factors_train.shape[1]
    if d < 2 or k < 2 or codes_test.shape[1] != d or factors_test.shape[1] != k:
        raise ValueError(f"DCI needs two or more dims and factors, the same in both sets, got {d}, {k}")
    if predictor not in DCI_PREDICTORS:
        raise ValueError(f"unknown DCI predictor {predictor!r}: {', '.join(DCI_PREDICTORS)}")
    importance = np.zeros((d, k))
    train_acc, test_acc = np.zeros(k), np.zeros(k)
    for j in range(k):
        if len(np.unique(factors_train[:, j])) < 2:
            raise ValueError(f"factor {j} takes one value in DCI's training codes: nothing to predict")
        model, x_train, x_test, weight = _predictor(predictor, codes_train, codes_test, seed)
        model.fit(x_train, factors_train[:, j])
        importance[:, j] = weight(model)
        train_acc[j] = np.mean(model.predict(x_train) == factors_train[:, j])
        test_acc[j] = np.mean(model.predict(x_test) == factors_test[:, j])
        if progress is not None:
            progress(1)
    per_dim = 1.0 - _entropy_of_rows(importance, k)
    per_factor = 1.0 - _entropy_of_rows(importance.T, d)
    total = importance.sum()
    dim_weight = importance.sum(axis=1) / total if total > 0 else np.full(d, 1.0 / d)
    factor_weight = importance.sum(axis=0) / total if total > 0 else np.full(k, 1.0 / k)
    return DCIResult(
        disentanglement=float((per_dim * dim_weight).sum()),
        completeness=float((per_factor * factor_weight).sum()),  # the mean: every column sums to 1
        informativeness=float(test_acc.mean()),
        train_accuracy=float(train_acc.mean()),
        importance=importance,
        disentanglement_per_dim=per_dim,
        completeness_per_factor=per_factor,
        informativeness_per_factor=test_acc,
    )


def _predictor(name: str, codes_train: np.ndarray, codes_test: np.ndarray, seed: int):
    """(an unfitted classifier, its training and test inputs, model -> (D,) importance summing to 1)."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    if name in ("gbt", "random-forest"):
        model = (
            GradientBoostingClassifier(random_state=seed)
            if name == "gbt"
            else RandomForestClassifier(n_estimators=100, max_depth=8, max_features=None, random_state=seed)
        )
        return model, codes_train, codes_test, lambda m: _normalised(np.abs(m.feature_importances_))
    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # a constant dim stays 0 and gets no weight
    return (
        LogisticRegression(C=1.0, max_iter=1000, random_state=seed),
        (codes_train - mean) / std,
        (codes_test - mean) / std,
        lambda m: _normalised(np.abs(m.coef_).sum(axis=0)),
    )


def _normalised(w: np.ndarray) -> np.ndarray:
    return w / w.sum() if w.sum() > 0 else w


def _entropy_of_rows(m: np.ndarray, base: int) -> np.ndarray:
    """1 - this is each row's concentration: the entropy of row / row.sum() in base `base` (scipy.stats.entropy
    of m + 1e-11, as disentanglement_lib)."""
    p = m + 1e-11
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1) / np.log(base)


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or len(codes) < 2:
        raise ValueError(f"codes (N, D) and factors (N, K) with N >= 2, got {codes.shape} and {factors.shape}")
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"factors must be whole numbers (discrete values), got {factors.dtype}")
    if not np.isfinite(codes).all():
        raise ValueError("codes must be finite")
    return codes, factors
