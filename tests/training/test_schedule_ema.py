"""Optimisers, the learning-rate schedule and the EMA of the weights: values, checkpoints, exact resume, torchrun."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from test_distributed import ARGS as DDP_ARGS  # tests/training is on the path (pytest's rootdir-less import)
from test_distributed import _metrics as ddp_metrics
from test_distributed import _run as ddp_run

import vaelab
from vaelab.config import RunConfig, TrainConfig
from vaelab.errors import TrainingStopped, VaelabError
from vaelab.models import noise
from vaelab.models.vae import build_model
from vaelab.training.checkpoint import Progress, load_checkpoint, save_checkpoint
from vaelab.training.ema import EMA
from vaelab.training.optim import build_optimizer, set_lr
from vaelab.training.schedule import lr_at
from vaelab.training.step import train_step

TINY = dict(
    preset="mlp2",
    dataset="shapes",
    image_size=16,
    limit=96,
    val_size=32,
    batch_size=16,
    device="cpu",
    progress=False,
    log=lambda line: None,
)  # 6 steps per epoch
TIMING = {"seconds", "images_per_s"}


def _metrics(run):
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


def _assert_same_run(a, b):
    """The same weights, EMA, optimiser state and metrics, bit for bit."""
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    for mine, theirs in ((ca.model_state, cb.model_state), (ca.ema_state, cb.ema_state)):
        assert mine.keys() == theirs.keys()
        for k in mine:
            assert torch.equal(mine[k], theirs[k]), k
    for i, state in ca.optimizer_state["state"].items():
        for key, value in state.items():
            other = cb.optimizer_state["state"][i][key]
            assert torch.equal(value, other) if torch.is_tensor(value) else value == other, (i, key)
    assert _metrics(a) == _metrics(b)


# --------------------------------------------------------------------------- the schedule


def test_constant_schedule_is_the_learning_rate_itself():
    cfg = TrainConfig(lr=3e-4)
    assert all(lr_at(s, cfg, 100) == 3e-4 for s in (0, 1, 50, 99, 100, 1000))


def test_warmup_is_linear_then_cosine_decays_towards_zero():
    cfg = TrainConfig(lr=1e-3, lr_schedule="cosine", warmup_steps=4)
    assert [lr_at(s, cfg, 14) for s in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lr_at(4, cfg, 14) == 1e-3  # the decay starts from lr
    assert lr_at(9, cfg, 14) == pytest.approx(5e-4)  # half way through the 10 decay steps
    decay = [lr_at(s, cfg, 14) for s in range(4, 14)]
    assert all(x > y > 0 for x, y in zip(decay, decay[1:]))
    assert lr_at(13, cfg, 14) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.9)))
    assert lr_at(20, cfg, 14) == lr_at(13, cfg, 14)  # past the end: the last step's rate
    warm = TrainConfig(lr=1e-3, warmup_steps=2)
    assert [lr_at(s, warm, 10) for s in (0, 1, 2, 9)] == [5e-4, 1e-3, 1e-3, 1e-3]


def test_new_settings_are_validated():
    for bad in (dict(ema=1.0), dict(ema=0.0), dict(ema=1.5), dict(weight_decay=-1.0), dict(warmup_steps=-1)):
        with pytest.raises(VaelabError):
            vaelab.resolve_config("mlp2", **bad)
    with pytest.raises(VaelabError, match="lr_schedule"):
        vaelab.resolve_config("mlp2", lr_schedule="linear")


# --------------------------------------------------------------------------- optimisers


@pytest.mark.parametrize("optimizer", ["adamw", "adamax"])
def test_new_optimizers_train_a_tiny_run(tmp_path, optimizer):
    run = vaelab.train(
        out=tmp_path / "run", epochs=2, optimizer=optimizer, weight_decay=0.01, lr_schedule="cosine", **TINY
    )
    ckpt = load_checkpoint(run.path)
    assert ckpt.config.train.optimizer == optimizer and ckpt.step == 12
    assert ckpt.optimizer_state["param_groups"][0]["weight_decay"] == 0.01
    assert all(math.isfinite(m["val_elbo"]) for m in _metrics(run.path))


def test_adamw_decays_the_weights_apart_from_the_gradient():
    """With a zero gradient, AdamW still shrinks every weight by lr * weight_decay; Adam's L2 does not."""
    cfg = vaelab.resolve_config("mlp2", dataset="shapes", image_size=16)
    model = build_model(cfg.model, cfg.objective, (1, 16, 16))
    opt = build_optimizer(model.parameters(), TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.5))
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for b, p in zip(before, model.parameters()):
        torch.testing.assert_close(p.detach(), b * (1 - 0.1 * 0.5))


# --------------------------------------------------------------------------- the EMA


def _tiny_model_and_batch():
    cfg = vaelab.resolve_config("mlp2", dataset="shapes", image_size=16)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.objective, (1, 16, 16))
    x = torch.rand(8, 1, 16, 16)
    return cfg, model, x


@pytest.mark.parametrize("direct", [True, False])
def test_the_ema_is_the_moving_average_of_the_weights(direct):
    cfg, model, x = _tiny_model_and_batch()
    opt = build_optimizer(model.parameters(), TrainConfig(optimizer="adamax", lr=0.01))
    ema = EMA(model, 0.9)
    expected = [p.detach().clone().double() for p in model.parameters()]
    for step in range(4):
        set_lr(opt, lr_at(step, TrainConfig(lr=0.01, lr_schedule="cosine", warmup_steps=2), 4))
        _, applied = train_step(model, opt, x, precision="fp32", direct=direct, ema=ema)
        assert applied
        expected = [0.9 * e + 0.1 * p.detach().double() for e, p in zip(expected, model.parameters())]
    for e, (name, shadow) in zip(expected, ema.state_dict().items()):
        torch.testing.assert_close(shadow.double(), e, rtol=1e-6, atol=1e-7, msg=name)
        assert not torch.equal(shadow, dict(model.named_parameters())[name])


def test_the_ema_decay_warms_up_with_the_step_in_training():
    cfg, model, x = _tiny_model_and_batch()
    opt = build_optimizer(model.parameters(), TrainConfig(optimizer="adamax", lr=0.01))
    ema = EMA(model, 0.999)
    assert [ema.decay_at(t) for t in (0, 10, 100_000)] == [pytest.approx(0.1), pytest.approx(11 / 20), 0.999]
    assert ema.decay_at(None) == 0.999
    expected = [p.detach().clone().double() for p in model.parameters()]
    generator = torch.Generator()
    for step in range(3):
        with noise.step_noise(generator, 0, step, slice(0, len(x)), len(x)):
            train_step(model, opt, x, precision="fp32", ema=ema)
        d = (1 + step) / (10 + step)
        expected = [d * e + (1 - d) * p.detach().double() for e, p in zip(expected, model.parameters())]
    for e, shadow in zip(expected, ema.state_dict().values()):
        torch.testing.assert_close(shadow.double(), e, rtol=1e-6, atol=1e-7)


def test_applied_swaps_the_averaged_weights_in_and_the_weights_back_exactly():
    cfg, model, x = _tiny_model_and_batch()
    opt = build_optimizer(model.parameters(), cfg.train)
    ema = EMA(model, 0.5)
    train_step(model, opt, x, precision="fp32", ema=ema)
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    with ema.applied():
        for name, p in model.named_parameters():
            assert torch.equal(p, ema.state_dict()[name])
    for k, v in model.state_dict().items():
        assert torch.equal(v, raw[k]), k


def test_checkpoint_round_trip_of_the_ema(tmp_path):
    cfg, model, x = _tiny_model_and_batch()
    cfg = RunConfig(**{**cfg.__dict__, "train": TrainConfig(ema=0.99)})
    opt = build_optimizer(model.parameters(), cfg.train)
    ema = EMA(model, 0.99)
    train_step(model, opt, x, precision="fp32", ema=ema)
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(
        path, config=cfg, image_shape=(1, 16, 16), model=model, optimizer=opt, progress=Progress(), ema=ema.state_dict()
    )
    loaded = load_checkpoint(path)
    assert loaded.ema_state.keys() == ema.state_dict().keys()
    for k, v in ema.state_dict().items():
        assert torch.equal(loaded.ema_state[k], v), k
    fresh = EMA(model, 0.99)
    fresh.load_state_dict(loaded.ema_state)
    for a, b in zip(fresh.shadow, ema.shadow):
        assert torch.equal(a, b)

    # the EMA tensors must be there exactly when the config keeps an EMA, shaped like the weights
    save_checkpoint(path, config=cfg, image_shape=(1, 16, 16), model=model, optimizer=opt, progress=Progress())
    with pytest.raises(VaelabError, match="no ema tensors"):
        load_checkpoint(path)
    bad = {k: v[..., :1] for k, v in ema.state_dict().items()}
    save_checkpoint(path, config=cfg, image_shape=(1, 16, 16), model=model, optimizer=opt, progress=Progress(), ema=bad)
    with pytest.raises(VaelabError, match="damaged metadata: ema"):
        load_checkpoint(path)


def test_load_uses_the_ema_by_default_and_the_weights_with_raw(tmp_path):
    run = vaelab.train(out=tmp_path / "run", epochs=1, ema=0.9, **TINY)
    ckpt = load_checkpoint(run.path)
    ema, raw = vaelab.load(run.path), vaelab.load(run.path, weights="raw")
    assert (ema.weights, raw.weights) == ("ema", "raw")
    for name, p in ema.named_parameters():
        assert torch.equal(p, ckpt.ema_state[name]), name
    for name, p in raw.named_parameters():
        assert torch.equal(p, ckpt.model_state[name]), name
    with pytest.raises(VaelabError, match="weights must be one of"):
        vaelab.load(run.path, weights="average")

    plain = vaelab.train(out=tmp_path / "plain", epochs=1, **TINY)
    assert not load_checkpoint(plain.path).ema_state  # no EMA kept: the weights
    assert vaelab.load(plain.path).weights == "raw"

    result = vaelab.evaluate(run.path, limit=32, iwae_k=0, frechet=False, progress=False, weights="raw")
    assert result["weights"] == "raw"
    assert (run.path / "evals" / "test-k0-seed0-n32.json").exists()
    assert vaelab.evaluate(run.path, limit=32, iwae_k=0, frechet=False, progress=False)["weights"] == "ema"
    assert (run.path / "evals" / "test-k0-seed0-n32-ema.json").exists()  # beside the raw one, not over it


def test_validation_during_training_uses_the_ema(tmp_path):
    from vaelab.evaluation.elbo import evaluate_elbo
    from vaelab.training.data import prepare_splits

    run = vaelab.train(out=tmp_path / "run", epochs=1, ema=0.5, **TINY)
    cfg = load_checkpoint(run.path).config
    splits = prepare_splits(cfg.data, None)
    for weights, same in (("ema", True), ("raw", False)):
        val = evaluate_elbo(
            vaelab.load(run.path, weights=weights),
            splits.val.images,
            batch_size=cfg.train.eval_batch_size,
            dynamic_binarize=False,
            seed=cfg.train.seed,
        )
        assert (val["elbo"] == _metrics(run.path)[-1]["val_elbo"]) is same


# --------------------------------------------------------------------------- exact resume


def test_a_stop_mid_epoch_then_resume_is_bit_identical_with_schedule_and_ema(tmp_path, monkeypatch):
    settings = dict(epochs=3, optimizer="adamw", weight_decay=0.01, lr_schedule="cosine", warmup_steps=3, ema=0.9)
    vaelab.train(out=tmp_path / "straight", **settings, **TINY)

    from vaelab.training import step as step_module

    real, calls = step_module.train_step, {"n": 0}

    def stopping(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 8:  # in epoch 2, past the warm-up
            signal.raise_signal(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr("vaelab.training.loop.train_step", stopping)
    with pytest.raises(TrainingStopped):
        vaelab.train(out=tmp_path / "stopped", **settings, **TINY)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "stopped").step == 8
    vaelab.resume(tmp_path / "stopped", progress=False, log=lambda line: None)
    _assert_same_run(tmp_path / "straight", tmp_path / "stopped")


KILLED_AT = """
import os, signal, sys
import vaelab.training.loop as loop
real, calls = loop.train_step, {"n": 0}
def killing(*args, **kwargs):
    calls["n"] += 1
    if calls["n"] == STEP:
        os.kill(os.getpid(), signal.SIGKILL)  # no handler, no last checkpoint: the one of step CHECKPOINT holds
    return real(*args, **kwargs)
loop.train_step = killing
from vaelab.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_sigkill_then_resume_is_bit_identical_with_schedule_and_ema(tmp_path):
    args = [
        "train",
        "--preset",
        "mlp2",
        "--dataset",
        "shapes",
        "--image-size",
        "16",
        "--limit",
        "96",
        "--val-size",
        "32",
        "--batch-size",
        "16",
        "--epochs",
        "3",
        "--device",
        "cpu",
        "--no-progress",
        "--checkpoint-every",
        "4",
        "--optimizer",
        "adamax",
        "--lr-schedule",
        "cosine",
        "--warmup-steps",
        "3",
        "--ema",
        "0.9",
    ]
    done = subprocess.run([sys.executable, "-m", "vaelab", *args, "--out", str(tmp_path / "straight")], timeout=300)
    assert done.returncode == 0
    script = textwrap.dedent(KILLED_AT).replace("STEP", "11").replace("CHECKPOINT", "8")
    killed = subprocess.run(
        [sys.executable, "-c", script, *args, "--out", str(tmp_path / "killed")], capture_output=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert load_checkpoint(tmp_path / "killed").step == 8
    resumed = subprocess.run(
        [sys.executable, "-m", "vaelab", "train", "--resume", str(tmp_path / "killed"), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    _assert_same_run(tmp_path / "straight", tmp_path / "killed")


def test_resume_refuses_more_epochs_under_a_cosine_schedule(tmp_path):
    vaelab.train(out=tmp_path / "run", epochs=1, lr_schedule="cosine", **TINY)
    with pytest.raises(VaelabError, match="cosine"):
        vaelab.resume(tmp_path / "run", epochs=2, progress=False, log=lambda line: None)


# --------------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_two_gloo_ranks_with_ema_and_cosine_match_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    extra = ["--epochs", "2", "--lr-schedule", "cosine", "--warmup-steps", "3", "--ema", "0.9"]
    for run, ranks in ((one, 0), (two, 2)):
        done = ddp_run("-m", "vaelab", "train", *DDP_ARGS, *extra, "--out", str(run), ranks=ranks)
        assert done.returncode == 0, done.stderr
    a, b = load_checkpoint(one), load_checkpoint(two)
    assert a.ema_state.keys() == b.ema_state.keys() == dict(vaelab.load(one).named_parameters()).keys()
    for mine, theirs in ((a.model_state, b.model_state), (a.ema_state, b.ema_state)):
        for k in mine:
            torch.testing.assert_close(theirs[k], mine[k], rtol=1e-4, atol=1e-5, msg=k)
    ma, mb = ddp_metrics(one), ddp_metrics(two)
    assert [m["step"] for m in mb] == [7, 14]
    for x, y in zip(ma, mb):
        for key, value in x.items():
            assert y[key] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), key
