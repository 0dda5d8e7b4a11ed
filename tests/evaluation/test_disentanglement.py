"""The disentanglement metrics against codes whose answer is known: the factors themselves (near 1), the
factors mixed by a rotation (clearly lower) and pure noise (near 0, or chance for the FactorVAE score)."""

from __future__ import annotations

import numpy as np
import pytest

from vaelab.evaluation.disentanglement import dci, factorvae_score, mig
from vaelab.evaluation.disentanglement.metrics import discretize, entropy, mutual_information

SIZES = (3, 4, 5, 6)  # a small factor grid: K = 4 factors
HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2  # a rotation mixing every
#                                                   (standardised) factor into every dim with the same weight


def factors(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack([rng.integers(s, size=n) for s in SIZES], axis=1)  # (n, K), uniform over the grid


def identity(f: np.ndarray) -> np.ndarray:
    return f.astype(np.float64)  # (n, K): dim k is factor k


def with_noise_dims(f: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(len(f))
    return np.concatenate([identity(f), rng.standard_normal((len(f), 2))], axis=1)  # two dims that mean nothing


def mixed(f: np.ndarray) -> np.ndarray:
    sizes = np.array(SIZES)
    standard = (f - (sizes - 1) / 2) / np.sqrt((sizes**2 - 1) / 12)  # each factor: mean 0, variance 1
    return standard @ HADAMARD.T


NOISE = np.random.default_rng(99)


def noise(f: np.ndarray) -> np.ndarray:
    return NOISE.standard_normal((len(f), len(SIZES)))


CODES = {"identity": identity, "identity+noise": with_noise_dims, "mixed": mixed, "noise": noise}


def test_information_helpers():
    a = np.array([0, 0, 1, 1, 2, 2])
    assert entropy(a) == pytest.approx(np.log(3))
    assert mutual_information(a, a) == pytest.approx(np.log(3))
    assert mutual_information(a, np.array([5, 7, 5, 7, 5, 7])) == pytest.approx(0.0, abs=1e-12)
    binned = discretize(np.array([[0.0], [1.0], [2.0], [4.0]]), bins=4)
    assert binned.ravel().tolist() == [1, 2, 3, 4]  # equal-width bins between min and max


# MIG on 4,000 codes, 20 bins: identity 0.99, mixed 0.01 to 0.03, noise 0.00 (printed with -s)
@pytest.mark.parametrize("kind, low, high", [("identity", 0.9, 1.0), ("identity+noise", 0.9, 1.0),
                                             ("mixed", 0.0, 0.2), ("noise", 0.0, 0.05)])  # fmt: skip
def test_mig_reference(kind, low, high):
    f = factors(4000, np.random.default_rng(0))
    result = mig(CODES[kind](f), f)
    print(f"MIG {kind}: {result.score:.3f} per factor {np.round(result.per_factor, 3)}")
    assert low <= result.score <= high
    if kind.startswith("identity"):
        assert result.best_dim.tolist() == [0, 1, 2, 3]


# FactorVAE score, 400 training and 400 test votes of 64: identity 1.0; mixed and noise near chance (0.25)
@pytest.mark.parametrize("kind, low, high", [("identity", 0.99, 1.0), ("identity+noise", 0.99, 1.0),
                                             ("mixed", 0.0, 0.45), ("noise", 0.0, 0.4)])  # fmt: skip
def test_factorvae_reference(kind, low, high):
    def sample(k, value, n, rng):
        f = factors(n, rng)
        if k is not None:
            f[:, k] = value
        return f

    result = factorvae_score(
        CODES[kind], sample, SIZES, rng=np.random.default_rng(1), n_train=400, n_eval=400, n_variance=2000
    )
    print(f"FactorVAE {kind}: {result.score:.3f} (train {result.train_accuracy:.3f}, chance {result.chance:.3f})")
    assert low <= result.score <= high
    assert 0.2 <= result.chance <= 0.32  # the most frequent of 4 factors among 400 uniform draws
    if kind.startswith("identity"):
        assert result.factor_of_dim[:4].tolist() == [0, 1, 2, 3] and result.active.all()


def test_factorvae_leaves_out_dims_that_do_not_vary():
    def constant_dim(f):
        return np.concatenate([identity(f), np.zeros((len(f), 1))], axis=1)

    def sample(k, value, n, rng):
        f = factors(n, rng)
        if k is not None:
            f[:, k] = value
        return f

    result = factorvae_score(constant_dim, sample, SIZES, rng=np.random.default_rng(2), n_train=50, n_eval=50)
    assert result.active.tolist() == [True] * 4 + [False] and result.score == 1.0
    assert result.factor_of_dim[4] == -1  # never voted for


# DCI with the random forest on 1,000 training and 500 test codes
@pytest.mark.parametrize("kind", ["identity", "identity+noise", "mixed", "noise"])
def test_dci_reference(kind):
    rng = np.random.default_rng(3)
    train, test = factors(1000, rng), factors(500, rng)
    code = CODES[kind]
    r = dci(code(train), train, code(test), test)
    print(f"DCI {kind}: D {r.disentanglement:.3f} C {r.completeness:.3f} I {r.informativeness:.3f}")
    assert r.importance.sum(axis=0) == pytest.approx(np.ones(4))
    if kind.startswith("identity"):
        assert r.disentanglement > 0.9 and r.informativeness > 0.99
        assert r.importance[:4].argmax(axis=0).tolist() == [0, 1, 2, 3]
        assert r.completeness > (0.9 if kind == "identity" else 0.75)  # noise dims take a little importance
    elif kind == "mixed":  # the rotation keeps the information but spreads it over every dim
        assert r.disentanglement < 0.5 and r.completeness < 0.5 and r.informativeness > 0.6
    else:
        assert r.disentanglement < 0.2 and r.informativeness < 0.4  # chance is 1/3 to 1/6


@pytest.mark.parametrize("predictor", ["gbt", "logistic"])
def test_dci_other_predictors_agree_on_the_factors(predictor):
    rng = np.random.default_rng(4)
    train, test = factors(300, rng), factors(200, rng)
    r = dci(identity(train), train, identity(test), test, predictor=predictor)
    print(f"DCI identity ({predictor}): D {r.disentanglement:.3f} C {r.completeness:.3f} I {r.informativeness:.3f}")
    assert r.disentanglement > 0.8 and r.completeness > 0.8
    assert r.importance.argmax(axis=0).tolist() == [0, 1, 2, 3]


def test_bad_input_is_refused():
    f = factors(100, np.random.default_rng(5))
    with pytest.raises(ValueError, match="two code dims"):
        mig(identity(f)[:, :1], f)
    with pytest.raises(ValueError, match="one value"):
        mig(identity(f), np.zeros_like(f))
    with pytest.raises(ValueError, match="whole numbers"):
        mig(identity(f), f.astype(float))
    with pytest.raises(ValueError, match="unknown DCI predictor"):
        dci(identity(f), f, identity(f), f, predictor="lasso")
