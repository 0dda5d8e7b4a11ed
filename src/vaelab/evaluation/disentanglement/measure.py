"""The disentanglement metrics of a model on a dataset with factors: where its images come from (the shapes
grid, or a split's labelled images), the encoder's posterior means, and the result as flat keys for
`vaelab evaluate --disentanglement` (documented in docs/evaluation.md)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ...data import shapes
from ...data.imageset import ImageSet
from ...errors import VaelabError
from ...models.vae import VAE
from ...progress import QUIET, Reporter
from ..scores import _seeded_eval
from .metrics import DCI_PREDICTORS, FACTORVAE_BATCH, MIG_BINS, MIN_VARIANCE, dci, factorvae_score, mig

DEFAULT_N = 10_000  # disentanglement_lib's num_train (MIG's sample, DCI's training set, FactorVAE's votes)
MAX_LEVELS = 64  # a factor with more distinct values than this is continuous: binned into MIG_BINS bins
SHAPES_VARIANTS = {"shapes": "plain", "shapes:colour": "colour", "shapes:noise": "noise"}


@dataclass(frozen=True)
class FactorSource:
    """Where the images with known factors come from."""

    names: tuple[str, ...]  # (K,)
    sizes: tuple[int, ...]  # (K,) values of each factor, 0..size-1
    sample: Callable[[int | None, int | None, int, np.random.Generator], tuple[torch.Tensor, np.ndarray]]
    #        (factor held fixed or None, its value, n, rng) -> uint8 images (n, C, H, W), factors (n, K) int64
    description: str
    available: int | None = None  # how many distinct images it can give (None: as many as asked)


def shapes_grid_source(name: str, size: int | None, grayscale: bool, prepare: Callable | None) -> FactorSource:
    """New images of the shapes grid (`shapes.render_grid`): every combination equally likely, as
    disentanglement_lib samples dSprites; `prepare` (static binarisation) applied as the run sees them."""
    variant = SHAPES_VARIANTS[name]
    side = size or shapes.DEFAULT_SIZE

    def sample(factor, value, n, rng):
        indices = shapes.sample_factor_indices(n, rng, None if factor is None else {factor: value})
        images = shapes.render_grid(indices, side, variant, seed=int(rng.integers(2**31)))  # its own nuisances
        if grayscale and images.shape[1] == 3:  # as load_shapes makes the grey colour variant
            luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * luma).sum(1, keepdim=True).round().to(torch.uint8)
        return (prepare(images) if prepare else images), indices.numpy()

    what = "new images of the shapes grid (3 x 6 x 40 x 32 x 32), uniform over its points"
    return FactorSource(shapes.FACTOR_NAMES, shapes.FACTOR_SIZES, sample, what)


def held_source(data: ImageSet, split: str) -> FactorSource:
    """The split's own images and factors. A factor with more than MAX_LEVELS distinct values is binned into
    MIG_BINS equal-width bins; one that never changes is left out. A vote's images are drawn (with
    replacement) from those that share the held factor's value."""
    if data.factors is None:
        raise VaelabError("--disentanglement needs a dataset with generative factors (such as shapes)")
    columns, names, notes = [], [], []
    for k, name in enumerate(data.factor_names):
        values = data.factors[:, k].double().numpy()
        levels = np.unique(values, return_inverse=True)[1]
        if levels.max() + 1 > MAX_LEVELS:
            edges = np.histogram_bin_edges(values, MIG_BINS)
            levels = np.unique(np.digitize(values, edges[:-1]), return_inverse=True)[1]
            notes.append(f"{name} binned into {levels.max() + 1} equal-width bins")
        if levels.max() == 0:
            notes.append(f"{name} left out (one value)")
            continue
        columns.append(levels.astype(np.int64))
        names.append(name)
    if len(names) < 2:
        raise VaelabError("--disentanglement needs at least two factors that vary in the split")
    factors = np.stack(columns, axis=1)  # (N, K)
    pools = [[np.flatnonzero(factors[:, k] == v) for v in range(factors[:, k].max() + 1)] for k in range(len(names))]

    def sample(factor, value, n, rng):
        if factor is None:
            rows = rng.choice(len(factors), n, replace=n > len(factors))
        else:
            rows = rng.choice(pools[factor][value], n)
        return data.images[torch.from_numpy(rows)], factors[rows]

    what = f"the {split} split's {len(factors):,} images; a vote's batch from those sharing the held value"
    sizes = tuple(int(factors[:, k].max()) + 1 for k in range(len(names)))
    return FactorSource(tuple(names), sizes, sample, what + "".join(f"; {note}" for note in notes), len(factors))


def check_sizes(source: FactorSource, n: int, n_test: int, latent_dim: int) -> None:
    """A one-line refusal, before any work, when the source or the latent cannot give the metrics."""
    if importlib.util.find_spec("sklearn") is None:
        raise VaelabError("--disentanglement needs scikit-learn: pip install 'vaelab[disentanglement]'")
    if n < 2 or n_test < 2:
        raise VaelabError(f"--disentanglement-n must be at least 4 (got {n}): half of it tests the predictors")
    if source.available is not None and n + n_test > source.available:
        raise VaelabError(
            f"--disentanglement needs {n:,} + {n_test:,} images with factors (to train and test the predictors), "
            f"the split has {source.available:,}: use --disentanglement-n {source.available * 2 // 3} or fewer"
        )
    if latent_dim < 2:
        raise VaelabError(f"--disentanglement needs a latent of two or more dims, this one has {latent_dim}")


@torch.no_grad()
def posterior_means(model: VAE, images: torch.Tensor, batch_size: int, binarize: torch.Generator | None):
    """(N, D) float64 numpy: E_q[z|x] of uint8 images, a hierarchy's top group; binarised dynamically with
    `binarize`'s draws where the run trains that way."""
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].float().div(255.0)
        if binarize is not None:
            x = torch.bernoulli(x, generator=binarize)
        out.append(model.encode(x.to(model.device)).mu.reshape(len(x), -1).double().cpu())
    return torch.cat(out).numpy()


def measure_disentanglement(
    model: VAE,
    source: FactorSource,
    *,
    n: int = DEFAULT_N,
    n_test: int | None = None,
    predictor: str = "random-forest",
    seed: int = 0,
    batch_size: int = 1000,
    dynamic_binarize: bool = False,
    progress: Reporter = QUIET,
) -> dict:
    """MIG, the FactorVAE score and DCI of the model's posterior means, as flat keys (see docs/evaluation.md):
    n codes for MIG and DCI's training set (n_test more to test it, default n // 2), n training and n_test
    held-out FactorVAE votes of FACTORVAE_BATCH images, each dim's variance from n codes. Seeded."""
    n_test = n // 2 if n_test is None else n_test
    if predictor not in DCI_PREDICTORS:
        raise VaelabError(f"unknown DCI predictor {predictor!r} (known: {', '.join(DCI_PREDICTORS)})")
    check_sizes(source, n, n_test, model.latent_dim)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed) if dynamic_binarize else None
    k = len(source.names)
    votes = n + n_test
    with _seeded_eval(model, seed):

        def encode(images: torch.Tensor) -> np.ndarray:
            return posterior_means(model, images, batch_size, generator)

        with progress.bar(n + n_test, f"disentanglement codes ({n + n_test:,} images)") as bar:
            images, factors = source.sample(None, None, n + n_test, rng)
            codes = encode(images)
            bar.update(len(codes))
        result_mig = mig(codes[:n], factors[:n], MIG_BINS)
        with progress.bar(k, f"DCI ({predictor}, one per factor)", unit="factors") as bar:
            result_dci = dci(codes[:n], factors[:n], codes[n:], factors[n:], predictor=predictor, seed=seed,
                             progress=bar.update)  # fmt: skip
        with progress.bar(votes, f"FactorVAE votes ({votes:,} of {FACTORVAE_BATCH} images)", unit="votes") as bar:
            result_fv = factorvae_score(
                encode,
                lambda factor, value, m, r: source.sample(factor, value, m, r)[0],
                source.sizes,
                rng=rng,
                n_train=n,
                n_eval=n_test,
                n_variance=n,
                progress=bar.update,
            )
    d = codes.shape[1]
    names = list(source.names)
    row = result_dci.importance.sum(axis=1)
    factor_of_dim = [names[j] if row[i] > 0.01 else None for i, j in enumerate(result_dci.importance.argmax(axis=1))]
    which = "the top latent group's" if len(model.group_shapes) > 1 else "the latent's"
    settings = (
        f"codes: posterior means of {which} {d} dims; images: {source.description}; seed {seed}. "
        f"MIG: {n:,} codes, {MIG_BINS} equal-width bins per dim. "
        f"FactorVAE: {n:,} training and {n_test:,} held-out votes of {FACTORVAE_BATCH} images, each dim's "
        f"variance from {n:,} codes, dims varying by at most {MIN_VARIANCE} left out "
        f"({int(result_fv.active.sum())} of {d} kept). "
        f"DCI: a {_PREDICTOR_WORDS[predictor]} per factor, trained on {n:,} codes, tested on {n_test:,}."
    )
    return {
        "disentanglement_factors": names,
        "mig": result_mig.score,
        "mig_per_factor": [float(v) for v in result_mig.per_factor],
        "mig_best_dim": [int(v) for v in result_mig.best_dim],
        "factorvae_score": result_fv.score,
        "factorvae_train_accuracy": result_fv.train_accuracy,
        "factorvae_chance": result_fv.chance,
        "factorvae_dims": int(result_fv.active.sum()),
        "dci_disentanglement": result_dci.disentanglement,
        "dci_completeness": result_dci.completeness,
        "dci_informativeness": result_dci.informativeness,
        "dci_train_accuracy": result_dci.train_accuracy,
        "dci_completeness_per_factor": [float(v) for v in result_dci.completeness_per_factor],
        "dci_informativeness_per_factor": [float(v) for v in result_dci.informativeness_per_factor],
        "dci_factor_of_dim": factor_of_dim,
        "dci_predictor": predictor,
        "disentanglement_n": n,
        "disentanglement_n_test": n_test,
        "disentanglement_settings": settings,
    }


_PREDICTOR_WORDS = {
    "random-forest": "random forest (100 trees of depth <= 8, scikit-learn)",
    "gbt": "gradient-boosted trees classifier (scikit-learn's defaults, as disentanglement_lib)",
    "logistic": "multinomial logistic regression on the standardised codes",
}
KEYS = (
    "disentanglement_factors",
    "mig",
    "mig_per_factor",
    "mig_best_dim",
    "factorvae_score",
    "factorvae_train_accuracy",
    "factorvae_chance",
    "factorvae_dims",
    "dci_disentanglement",
    "dci_completeness",
    "dci_informativeness",
    "dci_train_accuracy",
    "dci_completeness_per_factor",
    "dci_informativeness_per_factor",
    "dci_factor_of_dim",
    "dci_predictor",
    "disentanglement_n",
    "disentanglement_n_test",
    "disentanglement_settings",
)
