"""The fast path: layout, optimiser kernel, allocator and bf16 change speed, not what is computed."""

import platform

import pytest
import torch

import vaelab
from vaelab import runtime
from vaelab.config import TrainConfig
from vaelab.models import build_model
from vaelab.training.optim import build_optimizer
from vaelab.training.step import train_step

from clihelp import one_line_error

CPU = torch.device("cpu")


def model_for(preset: str):
    cfg = vaelab.presets()[preset]
    torch.manual_seed(0)
    return build_model(cfg.model, cfg.objective, (1, 28, 28)), cfg


def test_convolutional_models_train_channels_last_on_the_cpu_and_mlps_stay_as_they_are():
    conv, _ = model_for("cvae2")
    mlp, _ = model_for("mlp2")
    assert runtime.is_channels_last(runtime.place(conv, CPU))
    assert runtime.memory_format_for(mlp, CPU) == torch.contiguous_format
    assert not runtime.is_channels_last(runtime.place(mlp, CPU))


def test_channels_last_steps_compute_the_same_as_contiguous_ones():
    a, cfg = model_for("cvae2")
    b, _ = model_for("cvae2")
    b = runtime.place(b, CPU)
    opt_a, opt_b = build_optimizer(a.parameters(), cfg.train), build_optimizer(b.parameters(), cfg.train)
    x = torch.bernoulli(torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    for step in range(5):
        torch.manual_seed(step)
        terms_a, _ = train_step(a, opt_a, x)
        torch.manual_seed(step)
        terms_b, _ = train_step(b, opt_b, x.contiguous(memory_format=runtime.batch_memory_format(b)))
        torch.testing.assert_close(terms_b["loss"], terms_a["loss"], rtol=1e-4, atol=1e-3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5)


def test_adam_runs_its_fused_kernel_and_matches_the_reference_loop():
    model, cfg = model_for("mlp2")
    fused = build_optimizer(model.parameters(), cfg.train)
    assert fused.defaults["fused"] is True
    reference_model, _ = model_for("mlp2")
    reference = torch.optim.Adam(reference_model.parameters(), lr=cfg.train.lr, foreach=False)
    x = torch.rand(8, 1, 28, 28)
    for step in range(3):
        for m, opt in ((model, fused), (reference_model, reference)):
            torch.manual_seed(step)
            train_step(m, opt, x)
    for p, q in zip(model.parameters(), reference_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    rms = build_optimizer(model.parameters(), TrainConfig(optimizer="rmsprop"))
    assert rms.defaults["foreach"] is True  # PyTorch has no fused RMSprop


def test_bf16_autocast_runs_the_networks_in_bf16_and_keeps_the_loss_in_fp32():
    model, cfg = model_for("cvae2")
    opt = build_optimizer(model.parameters(), cfg.train)
    seen = []
    model.decoder[0].register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    terms, applied = train_step(model, opt, torch.bernoulli(torch.rand(8, 1, 28, 28)), precision="bf16")
    assert applied and seen == [torch.bfloat16]
    assert all(t.dtype == torch.float32 for t in terms.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_allocator_is_tuned_once_on_glibc(monkeypatch):
    for key in [k for k in __import__("os").environ if k.startswith("MALLOC_") or k == "LD_PRELOAD"]:
        monkeypatch.delenv(key)
    assert runtime.tune_cpu_allocator() is True
    assert runtime.tune_cpu_allocator() is True  # idempotent


def test_precision_is_saved_and_a_resume_may_not_change_it(tmp_path, capsys):
    run = tmp_path / "run"
    vaelab.train(
        "mlp2",
        out=run,
        dataset="shapes",
        image_size=28,
        limit=64,
        val_size=32,
        epochs=1,
        batch_size=32,
        sample_grid=0,
        precision="bf16",
        progress=False,
        log=lambda line: None,
    )
    assert 'precision = "bf16"' in (run / "config.toml").read_text()
    msg = one_line_error(capsys, ["train", "--resume", str(run), "--precision", "fp32", "--epochs", "2"])
    assert "train.precision ('bf16' -> 'fp32')" in msg


def test_auto_precision_is_bf16_only_for_convolutional_models_on_cpus_that_compute_bf16_natively(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    conv, _ = model_for("cvae2")
    mlp, _ = model_for("mlp2")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert runtime.resolve_precision("auto", cpu, conv) == "bf16"
    assert runtime.resolve_precision("auto", cpu, mlp) == "fp32"  # its small matrix products lose to the casts
    assert runtime.resolve_precision("bf16", cpu, mlp) == "bf16"
    assert runtime.resolve_precision("auto", cuda, conv) == "fp32"  # not measured on GPUs yet
    assert runtime.resolve_precision("fp32", cpu, conv) == "fp32"
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    assert runtime.resolve_precision("auto", cpu, conv) == "fp32"
    assert runtime.resolve_precision("bf16", cpu, conv) == "bf16"
    with pytest.raises(ValueError):
        runtime.resolve_precision("fp16", cpu, conv)


def test_the_run_says_which_precision_auto_chose(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)  # bf16 is emulated where it is not
    lines = []
    vaelab.train(
        "cvae2",
        out=tmp_path / "run",
        dataset="shapes",
        image_size=28,
        limit=64,
        val_size=32,
        epochs=1,
        batch_size=32,
        sample_grid=0,
        progress=False,
        log=lines.append,
    )
    assert "cpu, bf16, " in lines[0]
    assert 'precision = "auto"' in (tmp_path / "run" / "config.toml").read_text()
