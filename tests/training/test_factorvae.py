"""FactorVAE: the discriminator's own update in the training step, its place in the checkpoint, exact resume."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
import torch

import vaelab
from vaelab.config import ModelConfig, ObjectiveConfig, RunConfig
from vaelab.errors import TrainingStopped, VaelabError
from vaelab.models.noise import step_noise
from vaelab.models.vae import build_model
from vaelab.training import step as step_module
from vaelab.training.checkpoint import load_checkpoint
from vaelab.training.distributed import Dist
from vaelab.training.optim import auxiliary_optimizer, build_optimizer, main_parameters
from vaelab.training.step import train_step
from vaelab.training.trainer import _attach_objective

TINY = dict(
    preset="cvae2",
    dataset="shapes",
    image_size=16,
    limit=96,
    val_size=32,
    batch_size=16,
    device="cpu",
    precision="fp32",
    sample_grid=0,
    objective="factorvae",
    tc_weight=6.0,
    discriminator_width=32,
    discriminator_depth=2,
    progress=False,
    log=lambda line: None,
)
TIMING = {"seconds", "images_per_s"}
SHAPE = (1, 28, 28)


def _model():
    torch.manual_seed(0)
    cfg = ObjectiveConfig(name="factorvae", tc_weight=6.0, discriminator_width=32, discriminator_depth=2)
    return build_model(ModelConfig(encoder="mlp2", decoder="mlp2", latent_dim=4), cfg, SHAPE)


def test_a_step_trains_the_vae_then_the_discriminator_on_its_own():
    model = _model()
    disc = model.objective.discriminator
    optimizer = build_optimizer(main_parameters(model), RunConfig().train)
    aux = auxiliary_optimizer(model)
    main_ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert main_ids.isdisjoint(id(p) for p in disc.parameters())  # the VAE's optimiser never moves D
    assert {id(p) for p in aux.param_groups[0]["params"]} == {id(p) for p in disc.parameters()}
    assert aux.param_groups[0]["betas"] == (0.5, 0.9) and aux.param_groups[0]["lr"] == 1e-4
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(16, *SHAPE, generator=torch.Generator().manual_seed(0))
    for step in range(3):
        with step_noise(torch.Generator(), 0, step, slice(0, 16), 16):
            terms, applied = train_step(model, optimizer, x, auxiliary_optimizer=aux, direct=False)
        assert applied
    assert {"loss", "elbo", "recon", "kl", "tc", "disc_loss", "disc_accuracy"} <= set(terms)
    assert all(t.shape == (16,) and torch.isfinite(t).all() for t in terms.values())
    torch.testing.assert_close(terms["loss"], -terms["elbo"] + 6.0 * terms["tc"])
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert {f"objective.discriminator.{k}" for k in disc.state_dict()} <= changed
    assert any(k.startswith("encoder.") for k in changed)
    assert all(int(s["step"]) == 3 for s in aux.state.values())


def test_the_vae_loss_gives_no_gradient_to_the_discriminator():
    model = _model()
    model(torch.rand(8, *SHAPE))["loss"].mean().backward()
    assert all(p.grad is None for p in model.objective.discriminator.parameters())
    assert all(p.requires_grad for p in model.objective.discriminator.parameters())


def _metrics(run):
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


def test_a_tiny_run_trains_and_its_checkpoint_holds_the_discriminator_and_its_optimiser(tmp_path):
    result = vaelab.train(out=tmp_path / "run", epochs=1, **TINY)
    ckpt = load_checkpoint(tmp_path / "run")
    disc = {k: v for k, v in ckpt.model_state.items() if k.startswith("objective.discriminator.")}
    assert disc and all(torch.equal(v, result.model.state_dict()[k]) for k, v in disc.items())
    aux = ckpt.auxiliary_optimizer_state
    assert aux is not None and len(aux["state"]) == len(disc)  # one entry per discriminator tensor
    assert all(int(s["step"]) == ckpt.step for s in aux["state"].values())  # 6 steps, each with a D update
    assert tuple(aux["param_groups"][0]["betas"]) == (0.5, 0.9)
    model = result.model.train()
    terms = model(torch.rand(16, 1, 16, 16))
    assert torch.isfinite(terms["tc"]).all() and terms["tc"].shape == (16,)
    assert model.objective.extra_terms == ("tc",) and ckpt.progress.sums.shape == (5,)  # the loop sums tc too
    steps = [json.loads(line) for line in (tmp_path / "run" / "steps.jsonl").read_text().splitlines()]
    (record,) = _metrics(tmp_path / "run")
    assert all(math.isfinite(line["tc"]) and "mi" not in line for line in steps) and math.isfinite(record["train_tc"])
    assert load_checkpoint(tmp_path / "run", with_optimizer=False).auxiliary_optimizer_state is None


def test_a_stop_mid_epoch_then_resume_is_bit_identical(tmp_path, monkeypatch):
    straight = vaelab.train(out=tmp_path / "straight", epochs=2, **TINY)

    real, calls = step_module.train_step, {"n": 0}

    def stop_at_step_4(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr("vaelab.training.loop.train_step", stop_at_step_4)
    with pytest.raises(TrainingStopped, match="continue with"):
        vaelab.train(out=tmp_path / "stopped", epochs=2, **TINY)
    assert load_checkpoint(tmp_path / "stopped").progress.batch == 4
    monkeypatch.undo()
    vaelab.resume(tmp_path / "stopped", progress=False, log=lambda line: None)

    a, b = straight.model.state_dict(), vaelab.load(tmp_path / "stopped", weights="raw").state_dict()
    assert any(k.startswith("objective.discriminator.") for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    x, y = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "stopped")
    for idx, state in x.auxiliary_optimizer_state["state"].items():
        for key, value in state.items():
            other = y.auxiliary_optimizer_state["state"][idx][key]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, (idx, key)
    assert _metrics(tmp_path / "straight") == _metrics(tmp_path / "stopped")


@pytest.mark.parametrize(
    "objective, match",
    [
        (dict(name="factorvae", beta=2.0), "tc_weight"),
        (dict(name="factorvae", free_bits=0.5), "free_bits"),
        (dict(name="factorvae", mi_weight=2.0), "applies to the btcvae objective"),
        (dict(name="elbo", discriminator_lr=1e-3), "applies to the factorvae objective"),
        (dict(name="iwae", tc_weight=35.0), "applies to the btcvae and factorvae objectives"),
        (dict(name="factorvae", discriminator_width=0), "discriminator_width"),
        (dict(name="factorvae", discriminator_lr=0.0), "discriminator_lr"),
    ],
)
def test_settings_that_mean_nothing_are_refused(objective, match):
    with pytest.raises(VaelabError, match=match):
        RunConfig(objective=ObjectiveConfig(**objective))


def test_torchrun_is_refused_and_so_is_a_hierarchy():
    model = _model()
    splits = type("Splits", (), {"train": range(100)})()
    with pytest.raises(VaelabError, match="cannot run under torchrun"):
        _attach_objective(model, splits, Dist(rank=0, world=2))
    torch.manual_seed(0)
    hierarchy = build_model(
        ModelConfig(encoder="hvae", decoder="hvae", latent_dim=2, width=8, depth=1),
        ObjectiveConfig(name="factorvae", discriminator_width=8, discriminator_depth=1),
        (1, 16, 16),
    )
    with pytest.raises(VaelabError, match="single latent group"):
        _attach_objective(hierarchy, splits, Dist())
