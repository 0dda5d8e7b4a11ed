"""The likelihoods of 8-bit images: normalised over the 256 values, equal to plain references, trainable."""

from __future__ import annotations

import math

import pytest
import torch

import vaelab
from vaelab.config import EIGHT_BIT_LIKELIHOODS, RunConfig, from_dict
from vaelab.errors import VaelabError
from vaelab.models.likelihoods import DiscretizedLogistic, DiscretizedLogisticMixture, GaussianLearned
from vaelab.models.registry import LIKELIHOODS
from vaelab.training.direct import direct_step
from vaelab.training.direct.elbo import supported

from clihelp import one_line_error

QUIET = dict(progress=False, log=lambda line: None)
VALUES = torch.arange(256) / 255  # every 8-bit value, as the likelihoods receive it
DISCRETE = [
    (DiscretizedLogistic(), 1),
    (DiscretizedLogistic(), 3),
    (DiscretizedLogisticMixture(mixtures=3), 1),
    (DiscretizedLogisticMixture(mixtures=3), 3),
]
IDS = ["logistic-grey", "logistic-rgb", "mixture-grey", "mixture-rgb"]


def _random_out(lik, c: int, shape=(1,), h: int = 1, w: int = 1, seed: int = 0) -> torch.Tensor:
    """Decoder outputs that put locations anywhere in and past [-1, 1] and scales from sub-bin to wide."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, lik.out_channels(c), h, w, generator=g) * 1.5


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("lik, c", DISCRETE[:3], ids=IDS[:3])
def test_grey_and_independent_channels_sum_to_one_over_256_values(lik, c):
    """Each pixel channel in turn over its 256 values, the others fixed: for grey images this is the whole
    distribution; for independent channels (the single logistic on RGB) sum_v p(v, rest) = p(rest) is the
    same for every `rest`. The coupled mixture has its own tests below."""
    for seed in range(5):
        out = _random_out(lik, c, seed=seed)
        if c == 1:
            p = lik.log_prob(out, VALUES.view(256, 1, 1, 1)).double().exp()
            assert float(p.sum()) == pytest.approx(1, abs=1e-5)
            continue
        for ch in range(c):  # p(v, rest) / p(v0, rest) sums to 1 / p(v0 | rest) = 1 / (the channel's own mass)
            one = DiscretizedLogistic()
            own = torch.stack([out[:, ch], out[:, c + ch]], 1)  # this channel's location and log-scale
            p = one.log_prob(own, VALUES.view(256, 1, 1, 1)).double().exp()
            assert float(p.sum()) == pytest.approx(1, abs=1e-5)
            x = torch.rand(1, c, 1, 1, generator=torch.Generator().manual_seed(seed)).mul(255).round().div(255)
            x = x.repeat(256, 1, 1, 1)
            x[:, ch, 0, 0] = VALUES
            joint = lik.log_prob(out, x).double()
            torch.testing.assert_close(joint - joint[0], p.log() - p[0].log(), rtol=1e-5, atol=1e-4)


def _with_new(out: torch.Tensor, rows: list[int], seed: int) -> torch.Tensor:
    """`out` with the given decoder output channels redrawn."""
    changed = out.clone()
    changed[:, rows] = torch.randn(len(rows), generator=torch.Generator().manual_seed(seed)).view(1, -1, 1, 1) * 1.5
    return changed


def test_the_coupled_mixture_is_normalised_channel_by_channel():
    """p(r, g, b) = sum_k pi_k p(r|k) p(g|r, k) p(b|r, g, k). Summing b over its 256 values leaves p(r, g),
    which cannot depend on blue's parameters (its locations, log-scales and coupling coefficients); summing
    g and b leaves p(r), which cannot depend on green's or blue's, and equals the grey mixture of red's
    parameters. A conditional that did not sum to 1 would break one of these."""
    k = 3
    lik = DiscretizedLogisticMixture(mixtures=k)

    def rows(ch: int, group: int) -> list[int]:  # the output channels of one parameter of every component
        return [k + (ch * 3 + group) * k + m for m in range(k)]

    blue = rows(2, 0) + rows(2, 1) + rows(1, 2) + rows(2, 2)  # b's location, scale, b<-r and b<-g coefficients
    green = rows(1, 0) + rows(1, 1) + rows(0, 2)
    v = VALUES
    for seed in range(4):
        out = _random_out(lik, 3, seed=seed)
        r, g = torch.randint(0, 256, (2,), generator=torch.Generator().manual_seed(seed)) / 255
        x = torch.stack([r.expand(256), g.expand(256), v], 1).view(256, 3, 1, 1)  # b varies
        p_rg = [torch.logsumexp(lik.log_prob(o, x).double(), 0) for o in (out, _with_new(out, blue, seed + 10))]
        assert float(p_rg[0]) == pytest.approx(float(p_rg[1]), abs=1e-5)

        gg, bb = torch.meshgrid(v, v, indexing="ij")
        x = torch.stack([r.expand(65536), gg.flatten(), bb.flatten()], 1).view(-1, 3, 1, 1)  # g and b vary
        changed = _with_new(out, green + blue, seed + 20)
        p_r = [torch.logsumexp(lik.log_prob(o, x).double(), 0) for o in (out, changed)]
        grey = DiscretizedLogisticMixture(mixtures=k)
        expected = grey.log_prob(out[:, : 3 * k], r.view(1, 1, 1, 1)).double()[0]  # logits, red's mu and scale
        assert float(p_r[0]) == pytest.approx(float(expected), abs=1e-5)
        assert float(p_r[1]) == pytest.approx(float(expected), abs=1e-5)
        assert float(p_r[0].exp()) < 1


# --------------------------------------------------------------------------- brute-force references


def _bin_mass(k: int, mu: float, s: float):
    """P(pixel = k) for a logistic(mu, s) on [-1, 1] cut into 256 bins, the edge bins taking the tails,
    as a difference of CDFs in 60-digit arithmetic (mpmath, which torch installs through sympy): exact
    even far in the tails, where float64 would round both CDFs to 0 or 1."""
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    y = mp.mpf(2 * k) / 255 - 1

    def cdf(v):
        return 1 / (1 + mp.exp(-(v - mu) / s))

    upper = 1 if k == 255 else cdf(y + mp.mpf(1) / 255)
    lower = 0 if k == 0 else cdf(y - mp.mpf(1) / 255)
    return upper - lower


def mpmath_log(v):
    return pytest.importorskip("mpmath").log(v)


def mpmath_exp(v):
    return pytest.importorskip("mpmath").exp(v)


def _reference_logistic(out: torch.Tensor, x: torch.Tensor) -> float:
    """log p(x) for one image: (2C, H, W) decoder output, (C, H, W) pixels, one pixel channel at a time."""
    c, h, w = x.shape
    total = 0.0
    for ch in range(c):
        for i in range(h):
            for j in range(w):
                mu, log_s = float(out[ch, i, j]), max(float(out[c + ch, i, j]), -7.0)
                total += float(mpmath_log(_bin_mass(round(float(x[ch, i, j]) * 255), mu, math.exp(log_s))))
    return total


def _reference_mixture(out: torch.Tensor, x: torch.Tensor, k: int) -> float:
    """log p(x) for one image under PixelCNN++'s mixture: per pixel, sum_k pi_k prod_c P(x_c | x_<c, k)."""
    c, h, w = x.shape
    groups = 3 if c == 3 else 2
    total = 0.0
    for i in range(h):
        for j in range(w):
            logits = [float(out[m, i, j]) for m in range(k)]
            top = max(logits)
            norm = sum(math.exp(v - top) for v in logits)
            pixel = [round(float(x[ch, i, j]) * 255) for ch in range(c)]
            y = [2 * v / 255 - 1 for v in pixel]
            p = 0
            for m in range(k):
                param = [[float(out[k + (ch * groups + g) * k + m, i, j]) for g in range(groups)] for ch in range(c)]
                term = mpmath_exp(logits[m] - top) / norm
                for ch in range(c):
                    mu = param[ch][0]
                    if c == 3 and ch == 1:
                        mu += math.tanh(param[0][2]) * y[0]
                    if c == 3 and ch == 2:
                        mu += math.tanh(param[1][2]) * y[0] + math.tanh(param[2][2]) * y[1]
                    term *= _bin_mass(pixel[ch], mu, math.exp(max(param[ch][1], -7.0)))
                p += term
            total += float(mpmath_log(p))
    return total


@pytest.mark.parametrize("c", [1, 3])
def test_discretized_logistic_agrees_with_a_brute_force_reference(c):
    lik = DiscretizedLogistic()
    out = _random_out(lik, c, shape=(3,), h=4, w=5)
    x = torch.randint(0, 256, (3, c, 4, 5), generator=torch.Generator().manual_seed(1)) / 255
    x[0, :, 0, :2] = torch.tensor([0.0, 1.0])  # the edge bins too
    got = lik.log_prob(out, x)
    assert got.shape == (3,)
    for b in range(3):
        assert float(got[b]) == pytest.approx(_reference_logistic(out[b].double(), x[b]), rel=1e-5, abs=1e-4)


@pytest.mark.parametrize("c", [1, 3])
def test_discretized_logistic_mixture_agrees_with_a_brute_force_reference(c):
    lik = DiscretizedLogisticMixture(mixtures=4)
    out = _random_out(lik, c, shape=(3,), h=4, w=5, seed=3)
    x = torch.randint(0, 256, (3, c, 4, 5), generator=torch.Generator().manual_seed(2)) / 255
    x[0, :, 0, :2] = torch.tensor([0.0, 1.0])
    got = lik.log_prob(out, x)
    assert got.shape == (3,)
    for b in range(3):
        assert float(got[b]) == pytest.approx(_reference_mixture(out[b].double(), x[b], 4), rel=1e-5, abs=1e-4)


def test_far_tails_stay_finite_and_exact():
    """Where PixelCNN++'s CDF difference underflows in float32, the mass here is still the exact one."""
    lik = DiscretizedLogistic()
    out = torch.tensor([-0.9, -7.0]).view(1, 2, 1, 1)  # a narrow logistic near 0; x far from it
    x = torch.tensor([0.5]).view(1, 1, 1, 1)
    got = float(lik.log_prob(out, x))
    mu, s = -0.9, math.exp(-7.0)
    y = 2 * round(0.5 * 255) / 255 - 1
    # log(sigmoid(a) - sigmoid(b)) with both far in the upper tail: log(e^-b - e^-a) to first order
    a, b = (y + 1 / 255 - mu) / s, (y - 1 / 255 - mu) / s
    expected = -b + math.log1p(-math.exp(b - a))
    assert math.isfinite(got) and got == pytest.approx(expected, rel=1e-5)


def test_gaussian_learned_agrees_with_torch_distributions():
    lik = GaussianLearned()
    out = torch.randn(4, 6, 5, 5, generator=torch.Generator().manual_seed(0)) * 3
    x = torch.rand(4, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    mean, logvar = lik._params(out)
    reference = torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(lik.log_prob(out, x), reference)
    torch.testing.assert_close(lik.mean(out), torch.sigmoid(out[:, :3]))


def test_gaussian_learned_bounds_the_log_variance_softly():
    lik = GaussianLearned()
    raw = torch.tensor([-1e4, -30.0, -12.0, 0.0, 2.0, 30.0, 1e4]).view(1, 1, 1, -1)
    _, logvar = lik._params(torch.cat([torch.zeros_like(raw), raw], 1))
    assert torch.all(logvar >= -12) and torch.all(logvar <= 2 + 1e-5)  # the upper bound, then softplus above -12
    assert torch.all(logvar[..., 1:] >= logvar[..., :-1])  # monotone in the decoder's output
    assert float(logvar[..., 3]) == pytest.approx(0.0, abs=0.2)  # near the middle it passes through


# --------------------------------------------------------------------------- sample, mean, broadcasting

ALL = [*DISCRETE, (GaussianLearned(), 1), (GaussianLearned(), 3)]
ALL_IDS = [*IDS, "gaussian-learned-grey", "gaussian-learned-rgb"]


@pytest.mark.parametrize("lik, c", ALL, ids=ALL_IDS)
def test_mean_and_sample_shapes(lik, c):
    out = _random_out(lik, c, shape=(6,), h=4, w=3)
    m = lik.mean(out)
    assert m.shape == (6, c, 4, 3) and m.min() >= 0 and m.max() <= 1
    s = lik.sample(out, generator=torch.Generator().manual_seed(0))
    assert s.shape == (6, c, 4, 3)
    again = lik.sample(out, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s, again)  # the generator fixes the draw


@pytest.mark.parametrize("lik, c", DISCRETE, ids=IDS)
def test_samples_are_8bit_values(lik, c):
    out = _random_out(lik, c, shape=(8,), h=6, w=6) * 2
    s = lik.sample(out, generator=torch.Generator().manual_seed(0))
    assert s.min() >= 0 and s.max() <= 1
    torch.testing.assert_close(s * 255, (s * 255).round(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("lik, c", DISCRETE, ids=IDS)
def test_samples_follow_the_probabilities(lik, c):
    """A histogram of 20,000 draws of one pixel's first channel matches its probabilities (for RGB, red's
    marginal: the grey likelihood of red's own parameters)."""
    out = _random_out(lik, c, seed=4)
    s = lik.sample(out.expand(20_000, -1, -1, -1), generator=torch.Generator().manual_seed(1))[:, 0, 0, 0]
    counts = torch.bincount((s * 255).round().long(), minlength=256).double() / len(s)
    if isinstance(lik, DiscretizedLogisticMixture):
        red = out[:, : 3 * lik.mixtures]  # the logits, red's locations and log-scales
    else:
        red = out[:, ::c]  # red's location and log-scale
    p = lik.log_prob(red, VALUES.view(256, 1, 1, 1)).double().exp()
    assert float((counts - p).abs().sum()) / 2 < 0.03  # total variation distance


def test_coupled_samples_condition_on_the_drawn_values():
    """With narrow logistics a draw is its location rounded: green and blue follow the drawn red and green."""
    k = 1
    lik = DiscretizedLogisticMixture(mixtures=k)
    out = torch.zeros(1, lik.out_channels(3), 1, 1)
    out[:, 1:10] = torch.tensor([0.2, -7, 0.0, -0.1, -7, 0.5, 0.1, -7, -0.5]).view(1, 9, 1, 1)  # mu, log s, coeff
    s = lik.sample(out.expand(50, -1, -1, -1), generator=torch.Generator().manual_seed(0))
    y = s * 2 - 1  # [-1, 1] coordinates
    torch.testing.assert_close(y[:, 0], torch.full_like(y[:, 0], round(1.2 * 127.5) / 127.5 - 1), atol=1e-2, rtol=0)
    torch.testing.assert_close(y[:, 1], -0.1 + math.tanh(0.0) * y[:, 0], atol=1e-2, rtol=0)
    torch.testing.assert_close(y[:, 2], 0.1 + math.tanh(0.5) * y[:, 0] + math.tanh(-0.5) * y[:, 1], atol=1e-2, rtol=0)


@pytest.mark.parametrize("lik, c", ALL, ids=ALL_IDS)
def test_several_samples_per_image_broadcast(lik, c):
    """(K, B, P, H, W) outputs against (B, C, H, W) images, as the IWAE bound lays them out."""
    out = _random_out(lik, c, shape=(5, 2), h=3, w=4)
    x = torch.randint(0, 256, (2, c, 3, 4), generator=torch.Generator().manual_seed(0)) / 255
    got = lik.log_prob(out, x)
    assert got.shape == (5, 2)
    for k in range(5):
        torch.testing.assert_close(got[k], lik.log_prob(out[k], x))
    assert lik.mean(out).shape == (5, 2, c, 3, 4)
    assert lik.sample(out).shape == (5, 2, c, 3, 4)


def test_output_channels():
    assert DiscretizedLogistic().out_channels(3) == 6 and GaussianLearned().out_channels(1) == 2
    assert DiscretizedLogisticMixture(mixtures=10).out_channels(3) == 100  # PixelCNN++'s 10 * 10
    assert DiscretizedLogisticMixture(mixtures=10).out_channels(1) == 30
    with pytest.raises(ValueError):
        DiscretizedLogisticMixture(mixtures=0)


def test_the_config_knows_which_likelihoods_are_8bit():
    marked = {name for name in LIKELIHOODS if getattr(LIKELIHOODS[name], "discrete_8bit", False)}
    assert marked == set(EIGHT_BIT_LIKELIHOODS)


# --------------------------------------------------------------------------- training, evaluation, refusal


@pytest.mark.parametrize("likelihood", ["discretized-logistic", "discretized-logistic-mixture", "gaussian-learned"])
def test_train_and_evaluate_on_shapes(tmp_path, likelihood):
    run = vaelab.train(
        "conv16",
        dataset="shapes",
        image_size=16,
        likelihood=likelihood,
        mixtures=3,
        limit=64,
        val_size=32,
        batch_size=32,
        epochs=1,
        out=tmp_path / "run",
        **QUIET,
    )
    model = vaelab.load(run.path)
    assert not supported(model) and direct_step(model) is None  # no hand-written gradient: autograd
    r = vaelab.evaluate(run.path, iwae_k=2, frechet=False, limit=64, progress=False)
    if likelihood == "gaussian-learned":
        assert r["bits_per_dim"] is None and "density" in r["bits_per_dim_note"]
    else:
        assert r["bits_per_dim_note"] is None and r["bits_per_dim_from"] == "iwae"
        assert math.isfinite(r["bits_per_dim"]) and r["bits_per_dim"] > 0
        assert r["bits_per_dim"] == pytest.approx(r["nll_iwae"] / (16 * 16 * math.log(2)))
    grid = model.sample(4, generator=torch.Generator().manual_seed(0))
    assert grid.shape == (4, 1, 16, 16) and grid.min() >= 0 and grid.max() <= 1


def test_train_and_evaluate_rgb_mixture(tmp_path, cifar_root):
    run = vaelab.train(
        "cifar128",
        dataset="cifar10",
        likelihood="discretized-logistic-mixture",
        mixtures=2,
        latent_dim=8,
        val_size=8,
        batch_size=16,
        epochs=1,
        out=tmp_path / "run",
        data_dir=cifar_root,
        **QUIET,
    )
    r = vaelab.evaluate(run.path, iwae_k=2, frechet=False, data_dir=cifar_root, progress=False)
    assert r["bits_per_dim_note"] is None and math.isfinite(r["bits_per_dim"])
    assert r["bits_per_dim"] == pytest.approx(r["nll_iwae"] / (3 * 32 * 32 * math.log(2)))
    assert 0 < r["bits_per_dim"] < 16  # random pixels: about 8 bits each once trained; never wildly more


@pytest.mark.parametrize("binarize", ["static", "dynamic"])
@pytest.mark.parametrize("likelihood", EIGHT_BIT_LIKELIHOODS)
def test_8bit_likelihoods_refuse_binarised_data(tmp_path, binarize, likelihood):
    out = tmp_path / "run"
    with pytest.raises(VaelabError, match="models 8-bit pixel values.*use --binarize none"):
        vaelab.train(
            "conv16",
            dataset="shapes",
            image_size=16,
            binarize=binarize,
            likelihood=likelihood,
            limit=64,
            val_size=32,
            epochs=1,
            out=out,
            **QUIET,
        )
    assert not out.exists()
    with pytest.raises(VaelabError, match=f"data.binarize = {binarize}"):  # a TOML file is refused the same way
        from_dict({"data": {"binarize": binarize}, "model": {"likelihood": likelihood}})


def test_the_cli_refuses_binarised_data_with_one_line(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--preset", "conv16", "--dataset", "shapes", "--image-size", "16", "--binarize", "static"]
    err = one_line_error(capsys, [*argv, "--likelihood", "discretized-logistic", "--out", str(out)])
    assert "8-bit" in err and "--binarize none" in err
    assert not out.exists()


def test_mixtures_range():
    assert RunConfig().model.mixtures == 10
    for bad in (0, 257):
        with pytest.raises(VaelabError, match="model.mixtures"):
            from_dict({"model": {"mixtures": bad}})
