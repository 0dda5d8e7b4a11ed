"""Latent groups: a single latent is the one-group case of the same pass, bit for bit; the hierarchy (`hvae`)
trains, evaluates, samples and resumes through it; configs that cannot build are refused in one line."""

from __future__ import annotations

import math

import pytest
import torch
from test_presets import EXPECTED_PARAMS, build  # tests/models is on the path

import vaelab
from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.errors import VaelabError
from vaelab.evaluation import iwae
from vaelab.models import build_model
from vaelab.models.latent import GaussianPrior, StandardNormal
from vaelab.models.objectives import ELBO, IWAE, importance_bound
from vaelab.training import direct

HVAE = ModelConfig(encoder="hvae", decoder="hvae", latent_dim=3, width=16, depth=1, resolutions=(8, 4, 1), groups=2)
SHAPE = (1, 16, 16)


def _hvae(objective: ObjectiveConfig | None = None, **changes) -> vaelab.VAE:
    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**HVAE.__dict__, **changes}), objective or ObjectiveConfig(), SHAPE)
    return model.eval()


def _images(n: int = 6, shape=SHAPE) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(1)).round()


# --------------------------------------------------------------------------- one group = the VAE as it was


def _old_terms(model, x, analytic: bool):
    """The ELBO's terms as the single-latent VAE computed them before latent groups existed."""
    q = model.posterior(model.encoder(x))
    z = q.rsample()
    recon = -model.likelihood.log_prob(model.decoder(z), x)
    kl = model.prior.kl(q) if analytic else q.log_prob(z) - model.prior.log_prob(z)
    return {"recon": recon, "kl": kl, "elbo": -(recon + kl)}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_one_group_gives_the_terms_of_the_single_latent_vae_bit_for_bit(name, kl):
    model, shape = build(name)
    model.eval()
    x = torch.rand(4, *shape)
    torch.manual_seed(7)
    new = ELBO(ObjectiveConfig(kl=kl))(model, x)
    torch.manual_seed(7)
    old = _old_terms(model, x, kl == "analytic")
    for key, value in old.items():
        assert torch.equal(new[key], value), key
    assert set(new) == {"loss", "elbo", "recon", "kl"}  # no per-group columns for a single latent
    assert len(model.group_shapes) == 1 and model.latent_dim == PRESET_LATENT[name]


PRESET_LATENT = {"mlp2": 2, "keras-conv2": 2, "cvae2": 2, "conv16": 16, "cifar128": 128}


def test_one_group_iwae_objective_and_evaluation_are_those_of_before():
    model, shape = build("cvae2")
    model.eval()
    x = torch.rand(5, *shape).round()
    torch.manual_seed(3)
    loss = IWAE(ObjectiveConfig(name="iwae", iwae_k=4, kl="mc"))(model, x)["loss"]
    torch.manual_seed(3)
    q = model.posterior(model.encoder(x))
    z = q.rsample(4)
    params = model.decoder(z.flatten(0, 1)).unflatten(0, z.shape[:2])
    old = -importance_bound(model.likelihood.log_prob(params, x) - (q.log_prob(z) - model.prior.log_prob(z)))
    assert torch.equal(loss, old)

    # the evaluation's log weights: K draws of (B, D), decoded in chunks, as before
    torch.manual_seed(5)
    new = iwae.log_weights(model, x, 6, chunk=8)
    torch.manual_seed(5)
    with torch.inference_mode():
        q = model.posterior(model.encoder(x))
        zs = torch.stack([q.rsample() for _ in range(6)])
        params = direct.forward(model.decoder, zs.flatten(0, 1)).unflatten(0, zs.shape[:2])
        old = model.likelihood.log_prob(params, x) + model.prior.log_prob(zs) - q.log_prob(zs)
    torch.testing.assert_close(new, old, rtol=0, atol=1e-4)  # the decoder's batches differ: rounding only


# --------------------------------------------------------------------------- the hierarchy


def test_hvae_groups_their_shapes_and_terms():
    model = _hvae()
    assert model.group_shapes == ((3, 1, 1), (3, 1, 1), (3, 4, 4), (3, 4, 4), (3, 8, 8), (3, 8, 8))
    assert model.latent_dim == 3  # the top group: what encode returns and decode takes
    x = _images()
    terms = model(x)
    assert set(terms) == {"loss", "elbo", "recon", "kl"} | {f"kl_{i}" for i in range(1, 7)}
    torch.testing.assert_close(terms["kl"], sum(terms[f"kl_{i}"] for i in range(1, 7)))
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    trace = model.trace(x)
    assert isinstance(trace.groups[0].p, StandardNormal)  # the top group's prior: N(0, I)
    assert all(isinstance(g.p, GaussianPrior) for g in trace.groups[1:])
    assert [g.z.shape[1] for g in trace.groups] == [math.prod(s) for s in model.group_shapes]
    assert model.encode(x).mu.shape == (6, 3) and model.decode(torch.zeros(2, 3)).shape == (2, *SHAPE)
    assert model.reconstruct(x).shape == x.shape


def test_groups_per_resolution_lays_out_a_count_at_each_resolution():
    model = _hvae(groups_per_resolution=(1, 2, 3))  # 8x8, 4x4, 1x1: highest first, as the resolutions
    assert model.group_shapes == ((3, 1, 1),) * 3 + ((3, 4, 4),) * 2 + ((3, 8, 8),)
    terms = model(_images())
    assert set(terms) == {"loss", "elbo", "recon", "kl"} | {f"kl_{i}" for i in range(1, 7)}
    torch.testing.assert_close(terms["kl"], sum(terms[f"kl_{i}"] for i in range(1, 7)))
    assert model.levels == [3, 5, 6]
    same = _hvae(groups_per_resolution=(2, 2, 2))  # the counts of groups=2, given one by one
    assert same.group_shapes == _hvae().group_shapes
    assert [p.shape for p in same.parameters()] == [p.shape for p in _hvae().parameters()]


@pytest.mark.parametrize("counts", [(0, 2, 1), (2, 0, 1), (0, 0, 2)])
def test_a_resolution_without_groups_runs_its_blocks_alone(counts):
    model = _hvae(groups_per_resolution=counts)  # resolutions 8, 4, 1
    sizes = [r for r, n in zip((8, 4, 1), counts, strict=True) for _ in range(n)][::-1]
    assert [shape[-1] for shape in model.group_shapes] == sizes
    assert model.decoder.plain_sizes == [r for r, n in zip((1, 4, 8), counts[::-1], strict=True) if n == 0]
    assert len(model.decoder.plain) == counts.count(0) and len(model.decoder.plain[0]) == HVAE.depth
    x = _images()
    terms = model(x)
    assert set(terms) == {"loss", "elbo", "recon", "kl"} | {f"kl_{i}" for i in range(1, sum(counts) + 1)}
    assert torch.isfinite(terms["loss"]).all()
    trace = model.trace(x, mean=True)
    torch.testing.assert_close(model.encode(x).mu, trace.groups[0].q.mu)
    assert model.sample(3).shape == (3, *SHAPE) and model.conditional_sample(x, 1).shape == x.shape
    with torch.no_grad():  # the blocks are used: zeroing the last layers of theirs changes the reconstruction
        before = model.reconstruct(x)
        for block in model.decoder.plain[0]:
            block.c4.weight.mul_(0.0).add_(0.5)
        assert not torch.equal(model.reconstruct(x), before)


def test_conditional_samples_keep_the_top_groups_and_draw_the_rest_from_the_priors():
    model, x = _hvae(), _images()
    means = model.trace(x, mean=True)
    assert torch.equal(model.conditional_sample(x, 6), model.reconstruct(x))  # every group kept
    acts = model.encoder(x)
    for keep in (1, 3, 5):
        trace = model.decoder.conditional_pass(acts, keep, generator=torch.Generator().manual_seed(0))
        for kept, full in zip(trace.groups[:keep], means.groups[:keep], strict=True):
            assert torch.equal(kept.z, full.q.mu)  # the same posterior means as in x's own pass
        assert all(g.q is None for g in trace.groups[keep:])
        assert not torch.equal(trace.groups[keep].z, means.groups[keep].z)  # drawn, not x's
    g = torch.Generator
    a = model.conditional_sample(x, 2, generator=g().manual_seed(1))
    assert torch.equal(a, model.conditional_sample(x, 2, generator=g().manual_seed(1)))
    assert not torch.equal(a, model.conditional_sample(x, 2, generator=g().manual_seed(2)))
    cold = model.conditional_sample(x, 2, temperature=1e-6, generator=g().manual_seed(1))
    mean = model.likelihood.mean(model.decoder.conditional_pass(acts, 2, [0.0] * 4).out)  # the priors' means
    torch.testing.assert_close(cold, mean, rtol=0, atol=1e-4)
    for keep in (0, 7):
        with pytest.raises(VaelabError, match="keep"):
            model.conditional_sample(x, keep)
    single, shape = build("cvae2")
    assert single.levels == [1] and model.levels == [2, 4, 6]
    y = torch.rand(3, *shape).round()
    assert torch.equal(single.eval().conditional_sample(y, 1), single.reconstruct(y))  # one group: the recon


def test_the_posterior_is_relative_to_the_prior_and_its_log_variance_bounded():
    model = _hvae()
    with torch.no_grad():
        for block in model.decoder.groups:  # wild last layers: raw log-variances far beyond any bound
            c = block.shape[0]  # their outputs: mu (c channels), then the log-variance (c)
            block.posterior_net.c4.bias[c : 2 * c].fill_(1e4)
            if not block.top:
                block.prior_net.c4.bias[c : 2 * c].fill_(-1e4)
        trace = model.trace(_images(), mean=True)  # z = mu: no samples scaled by e^5 fed down the groups
    for g in trace.groups:
        assert torch.isfinite(g.kl()).all()
        assert g.q.logvar.abs().max() <= 10.0
        if isinstance(g.p, GaussianPrior):
            assert g.p.dist.logvar.abs().max() <= 10.0
    fresh = _hvae().trace(_images())
    for g in fresh.groups[1:]:  # the prior's last layer starts at zero: p = N(0, I) ...
        assert torch.equal(g.p.dist.mu, torch.zeros_like(g.p.dist.mu))
        assert torch.equal(g.p.dist.logvar, torch.zeros_like(g.p.dist.logvar))


def test_iwae_training_objective_with_k_samples_runs_the_whole_pass_per_sample():
    model = _hvae(ObjectiveConfig(name="iwae", iwae_k=5))
    x = _images()
    trace = model.trace(x, k=5)
    assert trace.out.shape[:2] == (5, 6) and all(g.z.shape[:2] == (5, 6) for g in trace.groups)
    terms = model(x)
    assert terms["loss"].shape == (6,) and torch.isfinite(terms["loss"]).all()


def test_hvae_evaluation_does_not_depend_on_the_chunk():
    model = _hvae()
    x = _images()
    torch.manual_seed(2)
    a = iwae.log_weights(model, x, 7, chunk=4)
    torch.manual_seed(2)
    b = iwae.log_weights(model, x, 7, chunk=1000)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    assert a.shape == (7, 6)


def test_free_bits_per_group_floors_each_group():
    model = _hvae(ObjectiveConfig(free_bits=1000.0, free_bits_per="group"))
    terms = model(_images())
    torch.testing.assert_close(terms["loss"], terms["recon"] + 1000.0 * 6)  # every group below its floor


def test_sampling_takes_one_temperature_or_one_per_group():
    model = _hvae()
    g = torch.Generator
    a = model.sample(4, generator=g().manual_seed(0))
    b = model.sample(4, temperature=[1.0] * 6, generator=g().manual_seed(0))
    assert torch.equal(a, b)
    c = model.sample(4, temperature=[1.0, 1.0, 1e-6, 1e-6, 1e-6, 1e-6], generator=g().manual_seed(0))
    assert not torch.equal(a, c)
    d = model.sample(4, temperature=[1.0, 1.0, 1e-6], generator=g().manual_seed(0))  # the last value repeats
    assert torch.equal(c, d)
    with pytest.raises(VaelabError, match="at most one per latent group"):
        model.sample(2, temperature=[1.0] * 7)
    with pytest.raises(VaelabError, match="temperature"):
        model.sample(2, temperature=[1.0, 0.0, 1.0, 1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(resolutions=(16, 6)), "cannot reach a 6x6 feature map"),
        (dict(resolutions=(8, 8)), "cannot reach a 8x8 feature map"),
        (dict(resolutions=(32,)), "another size than these 16x16 ones: resize the images with --image-size 32"),
        (dict(latent_dim=32), "cannot be wider"),
        (dict(encoder="resnet"), "needs its bottom-up half"),
        (dict(groups_per_resolution=(2, 2)), "gives 2 counts \\(2, 2\\) for the 3 resolutions 8, 4, 1"),
        (dict(groups_per_resolution=(1, 2, 0)), "gives the lowest resolution \\(1\\) no latent group"),
    ],
)
def test_configs_that_cannot_build_are_refused_in_one_line(changes, message):
    with pytest.raises(VaelabError, match=message) as caught:
        _hvae(**changes)
    assert "\n" not in str(caught.value)


def test_resnet_is_a_single_latent_residual_vae():
    torch.manual_seed(0)
    config = ModelConfig(encoder="resnet", decoder="resnet", latent_dim=8, width=16)
    model = build_model(config, ObjectiveConfig(), SHAPE)
    assert model.group_shapes == ((8,),)
    terms = model(_images())
    assert set(terms) == {"loss", "elbo", "recon", "kl"} and torch.isfinite(terms["loss"]).all()
