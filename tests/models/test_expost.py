"""Ex-post density estimation: a Gaussian fitted to the top groups' posterior means, drawn from when sampling."""

import pytest
import torch
from test_presets import build  # tests/models is on the path

from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.models.expost import JITTER, fit_expost

from clihelp import one_line_error

SHAPE = (1, 16, 16)
HVAE = ModelConfig(encoder="hvae", decoder="hvae", latent_dim=2, width=8, depth=1, resolutions=(8, 4, 1), groups=2)


def _hvae(**changes):
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**HVAE.__dict__, **changes}), ObjectiveConfig(), SHAPE).eval()


def _images(n: int) -> torch.Tensor:
    return torch.randint(0, 256, (n, *SHAPE), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)


def test_the_gaussian_has_the_moments_of_the_top_groups_posterior_means():
    model, x = _hvae(), _images(300)
    fitted = fit_expost(model, x, 2, batch_size=64)  # levels 1x1 and 4x4: groups 1-4, 68 dims
    assert fitted.groups == 4 and fitted.sizes == (2, 2, 32, 32) and fitted.n == 300
    with torch.no_grad():
        z = torch.cat([g.q.mu for g in model.trace(x, mean=True).groups[:4]], dim=1).double()
    torch.testing.assert_close(fitted.mean.double(), z.mean(0), rtol=0, atol=1e-5)
    cov = fitted.scale_tril.double() @ fitted.scale_tril.double().T
    torch.testing.assert_close(cov, torch.cov(z.T) + JITTER * torch.eye(68, dtype=torch.float64), rtol=1e-4, atol=1e-6)
    draws = fitted.draw(5, generator=torch.Generator().manual_seed(1))
    assert [d.shape for d in draws] == [(5, 2), (5, 2), (5, 32), (5, 32)]
    assert torch.equal(torch.cat(fitted.draw(3, temperature=0.0), 1), fitted.mean.expand(3, -1))


def test_samples_take_the_top_groups_from_the_gaussian_and_the_rest_from_the_priors():
    model = _hvae()
    fitted = fit_expost(model, _images(200), 1)  # the 1x1 level: groups 1-2
    g = torch.Generator
    a = model.sample(6, generator=g().manual_seed(0), expost=fitted)
    gen = g().manual_seed(0)
    tops = fitted.draw(6, generator=gen)
    with torch.no_grad():
        trace = model.decoder.prior_pass(tops, [1.0] * 4, gen)
    assert torch.equal(a, model.likelihood.mean(trace.out))
    assert torch.equal(trace.groups[0].z, tops[0]) and torch.equal(trace.groups[1].z, tops[1])
    assert not torch.equal(a, model.sample(6, generator=g().manual_seed(0)))  # not the prior's samples
    assert torch.equal(a, model.sample(6, generator=g().manual_seed(0), expost=fitted))  # seeded


def test_a_single_latent_has_one_level():
    model, shape = build("cvae2")
    model.eval()
    x = torch.rand(40, *shape)
    fitted = fit_expost(model, x, 1)
    assert fitted.groups == 1 and fitted.sizes == (2,)
    torch.testing.assert_close(fitted.mean, model.encode(x).mu.mean(0), rtol=0, atol=1e-5)
    assert model.sample(3, expost=fitted).shape == (3, *shape)


def test_bad_fits_are_refused_in_one_line():
    model = _hvae()
    with pytest.raises(VaelabError, match="expost levels must be <= 3, got 4"):
        fit_expost(model, _images(50), 4)
    with pytest.raises(VaelabError, match="324 latent dims needs more than 324 images, got 300: fit fewer levels"):
        fit_expost(model, _images(300), 3)  # 2 x (2 + 32 + 128) dims
    other = _hvae(latent_dim=3)
    with pytest.raises(VaelabError, match="covers groups of \\(2, 2\\) dims; this model's are \\(3, 3\\)"):
        other.sample(2, expost=fit_expost(model, _images(50), 1))


def test_vaelab_sample_fits_on_the_training_images(tiny_run, tmp_path, capsys):
    from vaelab.cli.main import main

    out = tmp_path / "s.png"
    assert main(["sample", str(tiny_run), "-n", "4", "--expost-levels", "1", "--expost-n", "20", "-o", str(out)]) == 0
    assert out.stat().st_size > 0
    assert "expost levels must be <= 1, got 2" in one_line_error(
        capsys, ["sample", str(tiny_run), "--expost-levels", "2", "-o", str(tmp_path / "t.png")]
    )
