"""Observation models p(x|z): one object each, shared by training, evaluation and sampling.

A likelihood reads the decoder's raw output `out` (B, P, H, W), P =
`out_channels(C)` for images of C channels, and gives `log_prob(out, x)`
summed over the pixels (B,), `mean(out)` (the image it shows, in [0, 1])
and `sample(out)`. Decoders never apply an output activation themselves:
the likelihood owns the link. `out` may carry extra leading dimensions (K
samples per image, (K, B, P, H, W)); `x` (B, C, H, W) broadcasts against them.
`discrete_8bit` marks a probability mass over the 256 values of each pixel
(data k/255, never binarised): its NLL is a code length, so bits/dim is defined.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .registry import LIKELIHOODS

PIXEL_DIMS = (-3, -2, -1)


@LIKELIHOODS.register("bernoulli")
class Bernoulli:
    """Bernoulli on logits: log p(x|z) = -BCE(sigmoid(out), x), summed over pixels.

    For x in {0, 1} this is a normalised likelihood. The seeds 002 and 004 also
    apply it to grey levels in [0, 1]; then it is their (unnormalised) BCE loss.
    """

    discrete_8bit = False

    def __init__(self, **_: object) -> None:
        pass

    def out_channels(self, c: int) -> int:
        return c

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if out.shape != x.shape:  # several samples per image
            out, x = torch.broadcast_tensors(out, x)
        return -F.binary_cross_entropy_with_logits(out, x, reduction="none").sum(PIXEL_DIMS)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out.float())

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.bernoulli(self.mean(out), generator=generator)


@LIKELIHOODS.register("gaussian")
class Gaussian:
    """Gaussian with a fixed standard deviation sigma and mean sigmoid(out), in [0, 1] like the images.

    With sigma = 1, -log p(x|z) = 0.5 * sum (x - mean)^2 + (C*H*W/2) log(2 pi):
    seed 001's "half summed squared error" plus a constant. `link="identity"`
    makes the mean the raw output (a linear-Gaussian model has a closed-form p(x)).
    """

    discrete_8bit = False

    def __init__(self, sigma: float = 1.0, link: str = "sigmoid", **_: object) -> None:
        if link not in ("sigmoid", "identity"):
            raise ValueError(f"unknown link {link!r}")
        self.sigma = sigma
        self.link = link
        self._log_norm = math.log(sigma) + 0.5 * math.log(2 * math.pi)

    def out_channels(self, c: int) -> int:
        return c

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean(out)) / self.sigma
        return -(0.5 * z**2 + self._log_norm).sum(PIXEL_DIMS)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out.float()) if self.link == "sigmoid" else out.float()

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        m = self.mean(out)
        return m + self.sigma * torch.randn(m.shape, device=m.device, generator=generator)


# A soft two-sided bound on the decoder's log-variance: the softplus bound of PETS (Chua et al. 2018,
# "Deep reinforcement learning in a handful of trials using probabilistic dynamics models", appendix A.1),
# with fixed bounds. The lower one is the sigma-VAE's softclip of log sigma at -6 (Rybkin et al. 2021,
# "Simple and effective VAE training with calibrated decoders"): sigma >= e^-6 ~ 0.0025, under an 8-bit
# step (1/255), so a constant pixel (a black background) cannot drive the density to infinity.
LOGVAR_MIN, LOGVAR_MAX = -12.0, 2.0


@LIKELIHOODS.register("gaussian-learned")
class GaussianLearned:
    """Gaussian with a mean and a variance per pixel channel, both from the decoder.

    The decoder's output (B, 2C, H, W) holds the means' logits (channels 0..C-1; mean = sigmoid, in [0, 1]
    like the images) and then the raw log-variances (channels C..2C-1), soft-bounded to
    (LOGVAR_MIN, LOGVAR_MAX). A density on continuous pixels, so its NLL is not a code length.
    """

    discrete_8bit = False

    def __init__(self, **_: object) -> None:
        pass

    def out_channels(self, c: int) -> int:
        return 2 * c

    def _params(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, raw = out.float().chunk(2, dim=-3)  # (..., C, H, W) each
        logvar = LOGVAR_MAX - F.softplus(LOGVAR_MAX - raw)
        return torch.sigmoid(logits), LOGVAR_MIN + F.softplus(logvar - LOGVAR_MIN)

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mean, logvar = self._params(out)
        log_density = -0.5 * ((x - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi))
        return log_density.sum(PIXEL_DIMS)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out.float().chunk(2, dim=-3)[0])

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, logvar = self._params(out)
        return mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, device=mean.device, generator=generator)


# --------------------------------------------------------------------------- 8-bit images

BINS = 256  # the values of an 8-bit pixel; vaelab passes them as k / 255 in [0, 1]
LOG_SCALE_MIN = -7.0  # PixelCNN++: a logistic narrower than this is all in one bin anyway


def _to_bin_centres(x: torch.Tensor) -> torch.Tensor:
    """Pixels k/255 in [0, 1] -> the bin centres 2k/255 - 1 in [-1, 1] (PixelCNN++'s coordinates)."""
    return torch.round(x.float() * (BINS - 1)) * (2 / (BINS - 1)) - 1


def _to_pixels(y: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] (tails clipped) -> the nearest 8-bit value k/255 in [0, 1]."""
    return torch.round((y.clamp(-1, 1) + 1) * ((BINS - 1) / 2)) / (BINS - 1)


def _discretized_logistic_log_prob(y: torch.Tensor, mu: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(bin of y) under a logistic(mu, exp(log_scale)) discretised to 256 bins of [-1, 1], edge bins
    taking the tails (PixelCNN++, Salimans et al. 2017, eq. 2). Elementwise; y are bin centres.

    PixelCNN++ takes log(sigmoid(a) - sigmoid(b)) and falls back to the density at the bin's centre where
    that difference underflows in float32. Here the difference is written so that it cannot underflow,
        sigmoid(a) - sigmoid(b) = sigmoid(a) * sigmoid(-b) * (1 - exp(b - a)),
    so every bin gets its exact mass, in float32, however far into the tails: no fallback is needed.
    """
    inv_scale = torch.exp(-log_scale)
    centred = y - mu
    upper = inv_scale * (centred + 1 / (BINS - 1))  # the bin's edges, standardised
    lower = inv_scale * (centred - 1 / (BINS - 1))
    log_cdf_upper = F.logsigmoid(upper)  # the first bin: everything below its upper edge
    log_sf_lower = F.logsigmoid(-lower)  # the last bin: everything above its lower edge
    log_width = torch.log(-torch.expm1(-(2 / (BINS - 1)) * inv_scale))  # log(1 - exp(b - a)), b - a < 0
    log_mass = log_cdf_upper + log_sf_lower + log_width
    first, last = y < -1 + 1 / (BINS - 1), y > 1 - 1 / (BINS - 1)
    return torch.where(first, log_cdf_upper, torch.where(last, log_sf_lower, log_mass))


def _logistic_noise(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard logistic draws log(u) - log(1 - u), u ~ U(0, 1) kept off 0 and 1."""
    u = torch.rand(shape, device=like.device, generator=generator).clamp_(1e-5, 1 - 1e-5)
    return torch.log(u) - torch.log1p(-u)


@LIKELIHOODS.register("discretized-logistic")
class DiscretizedLogistic:
    """One logistic per pixel channel, discretised to the 256 values of an 8-bit image (PixelCNN++'s
    likelihood with a single component and no channel coupling); a probability mass, so bits/dim is defined.

    The decoder's output (B, 2C, H, W) holds the locations (channels 0..C-1), in PixelCNN++'s [-1, 1]
    coordinates (pixel k/255 is at 2k/255 - 1), then the log-scales (channels C..2C-1, clipped below
    at -7). `mean` is the location clipped to [-1, 1], shown in [0, 1]; `sample` draws exact 8-bit values.
    """

    discrete_8bit = True

    def __init__(self, **_: object) -> None:
        pass

    def out_channels(self, c: int) -> int:
        return 2 * c

    def _params(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_scale = out.float().chunk(2, dim=-3)  # (..., C, H, W) each
        return mu, log_scale.clamp(min=LOG_SCALE_MIN)

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mu, log_scale = self._params(out)
        return _discretized_logistic_log_prob(_to_bin_centres(x), mu, log_scale).sum(PIXEL_DIMS)

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        mu, _ = self._params(out)
        return (mu.clamp(-1, 1) + 1) / 2

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mu, log_scale = self._params(out)
        return _to_pixels(mu + torch.exp(log_scale) * _logistic_noise(mu.shape, mu, generator))


@LIKELIHOODS.register("discretized-logistic-mixture")
class DiscretizedLogisticMixture:
    """A mixture of `mixtures` (K) discretised logistics per pixel: PixelCNN++'s
    `discretized_mix_logistic_loss` (Salimans et al. 2017), as VDVAE and NVAE use it.

    For RGB images the channels are coupled within each component: the location of green is
    mu_g + a * x_r and of blue mu_b + b * x_r + c * x_g, with a, b, c = tanh(decoder output),
    so p(r, g, b) = sum_k pi_k p(r|k) p(g|r, k) p(b|r, g, k). Other channel counts have no coupling.

    The decoder's output (B, K * (1 + C * G), H, W), G = 3 for RGB (else 2): the K mixture logits, then
    per channel a block of K locations, K log-scales (clipped below at -7) and, for RGB, K coupling
    coefficients (PixelCNN++'s layout, channels first). Locations are in [-1, 1] coordinates as in
    `DiscretizedLogistic`.

    `mean` is the mixture's mean of the continuous logistics (the coupling applied to each component's
    own means), clipped to [0, 1]; `sample` draws a component per pixel, then the channels in order,
    each conditioned on the 8-bit values already drawn: an exact draw from the distribution `log_prob` scores.
    """

    discrete_8bit = True

    def __init__(self, mixtures: int = 10, **_: object) -> None:
        if mixtures < 1:
            raise ValueError(f"mixtures must be at least 1, got {mixtures}")
        self.mixtures = mixtures

    @staticmethod
    def _coupled(c: int) -> bool:
        return c == 3

    def out_channels(self, c: int) -> int:
        return self.mixtures * (1 + c * (3 if self._coupled(c) else 2))

    def _params(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(logits (..., K, H, W), locations, log-scales, coefficients or None (..., C, K, H, W))."""
        out = out.float()
        k = self.mixtures
        per_pixel = out.shape[-3] // k - 1  # C * G: 9 only for RGB (G = 3), else 2 C
        c, groups = (3, 3) if per_pixel == 9 else (per_pixel // 2, 2)
        logits = out[..., :k, :, :]
        per_channel = out[..., k:, :, :].unflatten(-3, (c, groups, k))  # (..., C, G, K, H, W)
        mu = per_channel[..., :, 0, :, :, :]
        log_scale = per_channel[..., :, 1, :, :, :].clamp(min=LOG_SCALE_MIN)
        coeffs = torch.tanh(per_channel[..., :, 2, :, :, :]) if groups == 3 else None
        return logits, mu, log_scale, coeffs

    def log_prob(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits, mu, log_scale, coeffs = self._params(out)
        y = _to_bin_centres(x).unsqueeze(-3)  # (..., C, 1, H, W): against every component
        if coeffs is not None:  # the coupled locations, from the data's own red and green
            r, g = y[..., 0, :, :, :], y[..., 1, :, :, :]  # (..., 1, H, W)
            green = coeffs[..., 0, :, :, :] * r  # (..., K, H, W)
            blue = coeffs[..., 1, :, :, :] * r + coeffs[..., 2, :, :, :] * g
            mu = mu + torch.stack([torch.zeros_like(green), green, blue], dim=-4)
        per_component = _discretized_logistic_log_prob(y, mu, log_scale).sum(-4)  # (..., K, H, W)
        log_pixel = torch.logsumexp(per_component + F.log_softmax(logits, dim=-3), dim=-3)  # (..., H, W)
        return log_pixel.sum((-2, -1))

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        logits, mu, _, coeffs = self._params(out)
        if coeffs is not None:  # E[g | k] = mu_g + a E[r | k], E[b | k] = mu_b + b E[r | k] + c E[g | k]
            r = mu[..., 0, :, :, :]
            g = mu[..., 1, :, :, :] + coeffs[..., 0, :, :, :] * r
            b = mu[..., 2, :, :, :] + coeffs[..., 1, :, :, :] * r + coeffs[..., 2, :, :, :] * g
            mu = torch.stack([r, g, b], dim=-4)
        weights = torch.softmax(logits, dim=-3).unsqueeze(-4)  # (..., 1, K, H, W)
        return ((mu * weights).sum(-3).clamp(-1, 1) + 1) / 2

    def sample(self, out: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        logits, mu, log_scale, coeffs = self._params(out)
        # a component per pixel by the Gumbel-max trick: (..., 1, 1, H, W) indices into K
        gumbel = -torch.log(
            -torch.log(torch.rand(logits.shape, device=logits.device, generator=generator).clamp_(1e-5, 1 - 1e-5))
        )
        pick = (logits + gumbel).argmax(-3, keepdim=True).unsqueeze(-4)

        def chosen(t: torch.Tensor) -> torch.Tensor:  # (..., C, K, H, W) -> (..., C, H, W)
            return t.gather(-3, pick.expand(*t.shape[:-3], 1, *t.shape[-2:])).squeeze(-3)

        mu, scale = chosen(mu), torch.exp(chosen(log_scale))
        noise = _logistic_noise(mu.shape, mu, generator)

        def draw(ch: int, loc: torch.Tensor) -> torch.Tensor:  # channel ch's 8-bit value, in [-1, 1]
            return _to_pixels(loc + scale[..., ch, :, :] * noise[..., ch, :, :]) * 2 - 1

        if coeffs is None:
            return (torch.stack([draw(ch, mu[..., ch, :, :]) for ch in range(mu.shape[-3])], dim=-3) + 1) / 2
        a = chosen(coeffs)  # each channel conditioned on the values drawn before it, as log_prob conditions
        r = draw(0, mu[..., 0, :, :])
        g = draw(1, mu[..., 1, :, :] + a[..., 0, :, :] * r)
        b = draw(2, mu[..., 2, :, :] + a[..., 1, :, :] * r + a[..., 2, :, :] * g)
        return (torch.stack([r, g, b], dim=-3) + 1) / 2
