"""Exact mid-epoch resume after a signal, and the numerical guards."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

import vaelab
from vaelab.errors import TrainingStopped, VaelabError
from vaelab.training import step as step_module
from vaelab.training.checkpoint import load_checkpoint

TINY = dict(
    preset="cvae2",
    dataset="shapes",
    image_size=32,
    limit=96,
    val_size=32,
    batch_size=16,
    device="cpu",
    progress=False,
    log=lambda line: None,
)
TIMING = {"seconds", "images_per_s"}


def _metrics(run):
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


def _stop_at(monkeypatch, step_no: int, signum=signal.SIGTERM):
    """Deliver `signum` to this process during the given (1-based) training step."""
    real = step_module.train_step
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step_no:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr("vaelab.training.loop.train_step", wrapped)


@pytest.mark.parametrize(
    "stop_step, signum, objective",
    [
        (4, signal.SIGTERM, {}),
        (6, signal.SIGINT, {}),
        (14, signal.SIGTERM, {}),
        (4, signal.SIGTERM, dict(objective="btcvae", tc_weight=6.0)),  # its running sums of mi, tc, dwkl too
    ],
    ids=["sigterm-4", "sigint-6", "sigterm-14", "btcvae-sigterm-4"],
)
def test_signal_mid_epoch_then_resume_is_bit_identical(tmp_path, monkeypatch, stop_step, signum, objective):
    straight = vaelab.train(out=tmp_path / "straight", epochs=3, **objective, **TINY)

    _stop_at(monkeypatch, stop_step, signum)
    with pytest.raises(TrainingStopped, match="continue with: vaelab train --resume") as e:
        vaelab.train(out=tmp_path / "stopped", epochs=3, **objective, **TINY)
    assert e.value.exit_code == (143 if signum == signal.SIGTERM else 130)
    ckpt = load_checkpoint(tmp_path / "stopped")
    assert ckpt.step == stop_step and ckpt.progress.batch == (stop_step - 1) % 6 + 1  # 96 images / 16 = 6 steps
    assert ckpt.progress.sums.shape == (7 if objective else 4,)  # btcvae's: loss, elbo, recon, kl, mi, tc, dwkl
    monkeypatch.undo()

    vaelab.resume(tmp_path / "stopped", progress=False, log=lambda line: None)
    a, b = straight.model.state_dict(), vaelab.load(tmp_path / "stopped").state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert _metrics(tmp_path / "straight") == _metrics(tmp_path / "stopped")


def test_checkpoint_every_saves_mid_epoch(tmp_path):
    vaelab.train(out=tmp_path / "run", epochs=1, checkpoint_every=3, **TINY)
    # 6 steps: saved at steps 3 and 6 (mid-epoch), then at the end of the epoch
    ckpt = load_checkpoint(tmp_path / "run")
    assert (ckpt.epoch, ckpt.step, ckpt.progress.batch) == (1, 6, 0)


def _poison(monkeypatch, bad_steps: set[int]):
    """Make the loss NaN at the given (1-based) steps."""
    real_forward = vaelab.VAE.forward
    calls = {"n": 0}

    def forward(self, x):
        calls["n"] += 1
        terms = real_forward(self, x)
        if calls["n"] in bad_steps:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(vaelab.VAE, "forward", forward)


def test_non_finite_updates_are_skipped_and_counted(tmp_path, monkeypatch):
    _poison(monkeypatch, {2, 3})
    run = vaelab.train(out=tmp_path / "run", epochs=1, **TINY)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert record["skipped_steps"] == 2 and record["step"] == 6
    assert all(torch.isfinite(p).all() for p in run.model.parameters())
    assert record["train_elbo"] == record["train_elbo"]  # not NaN: skipped steps stay out of the means


def test_a_skipped_step_leaves_weights_and_optimizer_untouched():
    cfg = vaelab.presets()["mlp2"]
    model = vaelab.build_model(cfg.model, cfg.objective, (1, 28, 28))
    opt = torch.optim.Adam(model.parameters())
    x = torch.rand(4, 1, 28, 28)
    step_module.train_step(model, opt, x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state_before = {k: v["exp_avg"].clone() for k, v in opt.state_dict()["state"].items()}
    _, applied = step_module.train_step(model, opt, x * float("nan"))
    assert not applied
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    for k, v in opt.state_dict()["state"].items():
        assert torch.equal(v["exp_avg"], state_before[k])
    _, applied = step_module.train_step(model, opt, x, skip_grad_norm=1e-9)  # finite but "huge"
    assert not applied


def test_grad_clip_bounds_the_update_norm():
    cfg = vaelab.presets()["mlp2"]
    model = vaelab.build_model(cfg.model, cfg.objective, (1, 28, 28))
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    before = [p.detach().clone() for p in model.parameters()]
    step_module.train_step(model, opt, torch.rand(4, 1, 28, 28), grad_clip=0.5)
    moved = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before)))
    assert moved.item() == pytest.approx(0.5, rel=1e-4)


def test_repeated_non_finite_updates_stop_the_run_keeping_the_checkpoint(tmp_path, monkeypatch):
    vaelab.train(out=tmp_path / "run", epochs=1, **TINY)
    good = (tmp_path / "run" / "checkpoint.safetensors").read_bytes()
    _poison(monkeypatch, set(range(1, 100)))
    with pytest.raises(TrainingStopped, match="3 updates in a row"):
        vaelab.resume(tmp_path / "run", epochs=2, max_skips=3, progress=False, log=lambda line: None)
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == good


def test_a_run_that_cannot_start_leaves_no_directory_behind(tmp_path):
    with pytest.raises(VaelabError, match="unknown optimizer 'sgd'"):
        vaelab.train(
            "mlp2",
            out=tmp_path / "run",
            dataset="shapes",
            image_size=28,
            limit=64,
            val_size=32,
            epochs=1,
            optimizer="sgd",
            progress=False,
            log=lambda line: None,
        )
    assert not (tmp_path / "run").exists()


def test_the_guard_reads_the_gradients_norm_and_finiteness():
    cfg = vaelab.presets()["cvae2"]
    x = torch.bernoulli(torch.rand(4, 1, 28, 28))

    def fresh():
        torch.manual_seed(0)
        model = vaelab.build_model(cfg.model, cfg.objective, (1, 28, 28))
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    model, opt = fresh()
    step_module.train_step(model, opt, x, skip_grad_norm=1e30)
    total = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]).item()
    for factor, applied_expected in ((0.999, False), (1.001, True)):  # the same seed, so the same gradients
        model, opt = fresh()
        _, applied = step_module.train_step(model, opt, x, skip_grad_norm=total * factor)
        assert applied is applied_expected

    model, opt = fresh()  # a finite loss whose gradient is not finite: skipped, nothing changes
    before = [p.detach().clone() for p in model.parameters()]
    model.decoder[0].weight.register_hook(lambda g: g * float("inf"))
    terms, applied = step_module.train_step(model, opt, x)
    assert torch.isfinite(terms["loss"]).all() and not applied
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
