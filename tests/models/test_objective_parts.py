"""The objective's parts: KL warm-up, free bits and the IWAE bound as a training objective."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

import vaelab
from vaelab.cli.main import build_parser
from vaelab.config import ModelConfig, ObjectiveConfig, RunConfig, nest_overrides
from vaelab.errors import TrainingStopped, VaelabError
from vaelab.models import noise
from vaelab.models.objectives import ELBO, IWAE
from vaelab.models.vae import build_model
from vaelab.training import step as step_module
from vaelab.training.runfiles import read_metrics, read_steps
from vaelab.training.step import step_kind

SHAPE = (1, 16, 16)
TINY = dict(
    dataset="shapes",
    image_size=16,
    limit=64,
    val_size=32,
    batch_size=16,
    device="cpu",
    progress=False,
    log=lambda line: None,
)  # 4 steps an epoch
TIMING = {"seconds", "images_per_s"}


def _model(seed: int = 0, **objective) -> vaelab.VAE:
    torch.manual_seed(seed)
    return build_model(ModelConfig(encoder="mlp2", decoder="mlp2", latent_dim=4), ObjectiveConfig(**objective), SHAPE)


def _images(n: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _at_step(step: int, n: int):
    return noise.step_noise(torch.Generator(), 7, step, slice(0, n), n)


# --------------------------------------------------------------------------- KL warm-up


def test_beta_rises_linearly_over_the_warmup():
    objective = ELBO(ObjectiveConfig(beta=2.0, beta_start=0.4, kl_warmup_steps=10))
    assert [objective.beta_at(s) for s in (0, 5, 10, 20)] == pytest.approx([0.4, 1.2, 2.0, 2.0])
    assert objective.beta_at(None) == 2.0  # outside training: the beta configured
    assert ELBO(ObjectiveConfig(beta=0.5)).beta_at(0) == 0.5  # no warm-up


@pytest.mark.parametrize("beta", [1.0, 0.5])
@pytest.mark.parametrize("kl", ["analytic", "mc"])
def test_no_warmup_gives_the_plain_elbo_bit_for_bit(beta, kl):
    model, x = _model(kl=kl, beta=beta), _images()
    with torch.no_grad(), _at_step(3, len(x)):
        terms = model(x)
    with torch.no_grad(), _at_step(3, len(x)):  # the same noise: the ELBO as written before these parts
        q = model.encode(x)
        z = q.rsample()
        recon = -model.likelihood.log_prob(model.decoder(z), x)
        kl_ = model.prior.kl(q) if kl == "analytic" else q.log_prob(z) - model.prior.log_prob(z)
        loss = recon + kl_ if beta == 1 else recon + beta * kl_
    for name, value in {"loss": loss, "elbo": -(recon + kl_), "recon": recon, "kl": kl_}.items():
        assert torch.equal(terms[name], value), name


def test_warmup_weights_the_loss_and_logs_the_true_kl():
    warm, plain, x = _model(kl_warmup_steps=4, beta_start=0.0), _model(), _images()
    with torch.no_grad():
        for step, beta in [(0, 0.0), (2, 0.5), (4, 1.0)]:
            with _at_step(step, len(x)):
                terms = warm(x)
            with _at_step(step, len(x)):
                reference = plain(x)
            for name in ("elbo", "recon", "kl"):
                assert torch.equal(terms[name], reference[name]), name
            torch.testing.assert_close(terms["loss"], reference["recon"] + beta * reference["kl"])
        outside = warm(x)  # model(x) outside training: the beta configured
        torch.testing.assert_close(outside["loss"], outside["recon"] + outside["kl"])


# --------------------------------------------------------------------------- free bits


def test_free_bits_per_dim_floors_the_batch_mean_and_stops_its_gradient():
    objective = ELBO(ObjectiveConfig(free_bits=0.5))
    kl = torch.tensor([[0.1, 2.0, 0.6], [0.3, 1.0, 0.2]], requires_grad=True)  # dim means 0.2, 1.5, 0.4
    part = objective.free_bits_kl([kl])
    assert part.mean().item() == pytest.approx(0.5 + 1.5 + 0.5)  # sum_j max(lambda, mean_b KL_bj)
    part.mean().backward()
    assert torch.equal(kl.grad, torch.tensor([[0.0, 0.5, 0.0], [0.0, 0.5, 0.0]]))  # only dim 1 is above lambda


def test_free_bits_per_group_takes_the_whole_latent_as_one_group():
    objective = ELBO(ObjectiveConfig(free_bits=2.0, free_bits_per="group"))
    kl = torch.tensor([[0.1, 2.0, 0.6], [0.3, 1.0, 0.2]])  # totals 2.7, 1.5: mean 2.1 > 2
    torch.testing.assert_close(objective.free_bits_kl([kl]), kl.sum(-1))
    objective = ELBO(ObjectiveConfig(free_bits=3.0, free_bits_per="group"))
    torch.testing.assert_close(objective.free_bits_kl([kl]), torch.full((2,), 3.0))


def test_free_bits_in_a_model_log_the_true_kl_and_give_no_gradient_below_lambda():
    free, plain, x = _model(free_bits=0.05), _model(), _images()
    with _at_step(0, len(x)):
        terms = free(x)
    with _at_step(0, len(x)):
        reference = plain(x)
    for name in ("elbo", "recon", "kl"):
        torch.testing.assert_close(terms[name], reference[name])  # the logged KL is the true KL
    per_dim = plain.prior.kl_per_dim(plain.encode(x)).mean(0)  # (D,)
    assert (per_dim < 0.05).any() and (per_dim > 0.05).any()  # one dim below lambda, three above
    floored = torch.where(per_dim > 0.05, per_dim, torch.full_like(per_dim, 0.05)).sum()
    torch.testing.assert_close((terms["loss"] - terms["recon"]).mean(), floored, rtol=0, atol=1e-4)

    # every dim under a huge lambda: the KL part is a constant, so the gradient is the reconstruction's alone
    floor = _model(free_bits=1e6)
    with _at_step(0, len(x)):
        terms = floor(x)
    grads = torch.autograd.grad(terms["loss"].mean(), list(floor.parameters()), retain_graph=True)
    expected = torch.autograd.grad(terms["recon"].mean(), list(floor.parameters()))
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(terms["loss"] - terms["recon"], torch.full((len(x),), 4e6))


# --------------------------------------------------------------------------- IWAE


def test_iwae_with_one_sample_equals_the_elbo_with_the_mc_kl():
    x = _images()
    elbo, iwae = _model(kl="mc"), _model(name="iwae", kl="mc")
    with torch.no_grad(), _at_step(5, len(x)):
        a = elbo(x)
    with torch.no_grad(), _at_step(5, len(x)):
        b = iwae(x)
    for name in ("loss", "elbo", "recon", "kl"):
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-4)


def test_iwae_loss_falls_with_k_on_average():
    x = _images(256)
    losses = {}
    for k in (1, 8):
        model = _model(name="iwae", iwae_k=k)
        torch.manual_seed(3)
        with torch.no_grad():
            losses[k] = model(x)["loss"].mean().item()
    assert losses[8] < losses[1]  # -IWAE_8 <= -ELBO in expectation, by a clear margin for an untrained model


def test_iwae_logs_the_first_samples_elbo_terms():
    model, x = _model(name="iwae", iwae_k=4), _images()
    with torch.no_grad(), _at_step(0, len(x)):
        terms = model(x)
        q = model.encode(x)
    with torch.no_grad(), _at_step(0, len(x)):
        z = q.rsample(4)[0]
    recon = -model.likelihood.log_prob(model.decoder(z), x)
    torch.testing.assert_close(terms["recon"], recon)
    torch.testing.assert_close(terms["kl"], model.prior.kl(q))
    torch.testing.assert_close(terms["elbo"], -(recon + terms["kl"]))
    assert isinstance(model.objective, IWAE) and model.objective.beta_at(0) == 1.0


# --------------------------------------------------------------------------- config, flags, step


@pytest.mark.parametrize(
    "objective, message",
    [
        (dict(kl_warmup_steps=-1), "kl_warmup_steps"),
        (dict(beta_start=-0.1), "beta_start"),
        (dict(free_bits=-1.0), "free_bits"),
        (dict(free_bits=0.1, kl="mc"), "analytic"),
        (dict(iwae_k=0, name="iwae"), "iwae_k"),
        (dict(iwae_k=5), "iwae_k applies"),
        (dict(name="iwae", beta=0.5), "no KL weight"),
        (dict(name="iwae", free_bits=0.5), "no KL weight"),
    ],
)
def test_bad_objective_settings_are_refused(objective, message):
    with pytest.raises(VaelabError, match=message):
        RunConfig(objective=ObjectiveConfig(**objective))


def test_the_flags_reach_the_config():
    args = build_parser().parse_args(
        ["train", "--kl-warmup-steps", "100", "--beta-start", "0.1", "--free-bits", "0.25", "--free-bits-per", "group"]
    )
    flags = {k: getattr(args, k) for k in ("kl_warmup_steps", "beta_start", "free_bits", "free_bits_per")}
    assert nest_overrides(flags) == {
        "objective": {"kl_warmup_steps": 100, "beta_start": 0.1, "free_bits": 0.25, "free_bits_per": "group"}
    }
    args = build_parser().parse_args(["train", "--objective", "iwae", "--iwae-k", "5"])
    assert nest_overrides({"objective": args.objective, "iwae_k": args.iwae_k}) == {
        "objective": {"name": "iwae", "iwae_k": 5}
    }


@pytest.mark.parametrize(
    "objective", [dict(kl_warmup_steps=10), dict(free_bits=0.1), dict(name="iwae", iwae_k=2), dict(name="iwae")]
)
def test_these_objectives_train_with_autograd(objective):
    assert step_kind(_model()) == "direct step"
    assert step_kind(_model(**objective)).startswith("autograd")


# --------------------------------------------------------------------------- training runs


def _metrics(run):
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


def test_a_warmup_run_logs_the_beta_in_force(tmp_path):
    vaelab.train("mlp2", out=tmp_path / "run", epochs=2, kl_warmup_steps=8, **TINY)
    records, problems = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert not problems
    assert [r["train_beta"] for r in records] == [3 / 8, 7 / 8]  # at each epoch's last step (3, 7)
    steps, problems = read_steps(tmp_path / "run" / "steps.jsonl")
    assert not problems and steps[-1]["beta"] == 7 / 8


@pytest.mark.parametrize("objective", [dict(free_bits=0.1), dict(objective="iwae", iwae_k=3)])
def test_free_bits_and_iwae_runs_train(tmp_path, objective):
    run = vaelab.train("mlp2", out=tmp_path / "run", epochs=2, **objective, **TINY)
    records, problems = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert not problems and [r["train_beta"] for r in records] == [1.0, 1.0]
    assert all(torch.isfinite(torch.tensor([r["train_loss"], r["train_kl"]])).all() for r in records)
    assert run.model.objective.beta_at(None) == 1.0


def test_old_run_files_without_beta_still_read(tmp_path):
    vaelab.train("mlp2", out=tmp_path / "run", epochs=1, **TINY)
    metrics, steps = tmp_path / "run" / "metrics.jsonl", tmp_path / "run" / "steps.jsonl"
    for path, key in ((metrics, "train_beta"), (steps, "beta")):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert all(key in line for line in lines)
        path.write_text("".join(json.dumps({k: v for k, v in line.items() if k != key}) + "\n" for line in lines))
    assert read_metrics(metrics)[0] and not read_metrics(metrics)[1]
    assert read_steps(steps)[0] and not read_steps(steps)[1]
    metrics.write_text(
        json.dumps({**_metrics(tmp_path / "run")[0], "seconds": 1.0, "images_per_s": 1.0, "train_beta": "x"})
    )
    assert "train_beta" in str(read_metrics(metrics)[1][0])


def test_resume_mid_warmup_is_bit_identical(tmp_path, monkeypatch):
    settings = dict(epochs=2, kl_warmup_steps=6, **TINY)
    straight = vaelab.train("mlp2", out=tmp_path / "straight", **settings)

    real, calls = step_module.train_step, {"n": 0}

    def stop_at_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr("vaelab.training.loop.train_step", stop_at_3)
    with pytest.raises(TrainingStopped):
        vaelab.train("mlp2", out=tmp_path / "stopped", **settings)
    monkeypatch.undo()
    vaelab.resume(tmp_path / "stopped", progress=False, log=lambda line: None)
    a, b = straight.model.state_dict(), vaelab.load(tmp_path / "stopped").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _metrics(tmp_path / "straight") == _metrics(tmp_path / "stopped")
