"""Issue 21.5: every range and size is checked before any work, by one rule shared by the CLI, TOML and the API."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import vaelab
from vaelab import checks
from vaelab.cli import main
from vaelab.config import from_dict
from vaelab.errors import VaelabError

from clihelp import one_line_error

TINY = [
    "--preset",
    "mlp2",
    "--dataset",
    "shapes",
    "--image-size",
    "32",
    "--limit",
    "32",
    "--val-size",
    "16",
    "--epochs",
    "1",
    "--no-progress",
]
SEED_MAX = str(2**32 - 1)
QUIET = {"progress": False, "log": lambda line: None}


@pytest.fixture
def run(tiny_run, tmp_path):
    """A copy of the session's tiny real run (see conftest.py)."""
    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


# --------------------------------------------------------------------------- train: flags, TOML, API


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--seed", str(2**63)], "argument --seed: must be <= 4294967295, got 9223372036854775808"),
        (["--seed", str(2**32)], "argument --seed: must be <= 4294967295"),
        (["--lr", "inf"], "must be a finite number, got inf"),
        (["--lr", "nan"], "must be a finite number, got nan"),
        (["--sigma", "inf"], "must be a finite number"),
        (["--beta", "nan"], "must be a finite number"),
        (["--grad-clip", "inf"], "must be a finite number"),
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--image-size", "1000000"], "data.image_size must be <= 1024, got 1000000"),
        (["--latent-dim", str(10**12)], "model.latent_dim must be <= 65536"),
        (["--batch-size", str(10**9)], "train.batch_size must be <= 1048576"),
    ],
)
def test_train_flags_are_refused_before_a_run_directory_exists(capsys, tmp_path, flags, needle):
    out = tmp_path / "run"
    assert needle in one_line_error(capsys, ["train", *TINY, "--out", str(out), *flags])
    assert not out.exists()


@pytest.mark.parametrize(
    "toml, needle",
    [
        ("[train]\nlr = inf\n", "train.lr must be a finite number, got inf"),
        ("[train]\nlr = nan\n", "train.lr must be a finite number, got nan"),
        ("[train]\nlr = -inf\n", "train.lr must be a finite number, got -inf"),
        ("[train]\nlr = 1e400\n", "train.lr must be a finite number, got inf"),
        ("[train]\nlr = " + "1" * 400 + "\n", "train.lr must be a finite number, got 111"),  # no OverflowError
        ("[objective]\nbeta = inf\n", "objective.beta must be a finite number"),
        ("[model]\nsigma = nan\n", "model.sigma must be a finite number"),
        ("[train]\ngrad_clip = inf\n", "train.grad_clip must be a finite number"),
        ("[train]\nskip_grad_norm = nan\n", "train.skip_grad_norm must be a finite number"),
        ("[train]\nseed = 9223372036854775807\n", "train.seed must be <= 4294967295"),
        ("[train]\nseed = -1\n", "train.seed must be >= 0"),
        ("[data]\nsplit_seed = 4294967296\n", "data.split_seed must be <= 4294967295"),
        ("[train]\nepochs = 0\n", "train.epochs must be >= 1"),
        ("[train]\nsample_grid = 10000000000\n", "train.sample_grid must be <= 1024"),
        ("[train]\neval_batch_size = 0\n", "train.eval_batch_size must be >= 1"),
        ("[data]\nimage_size = 1000000\n", "data.image_size must be <= 1024"),
        ("[model]\nlatent_dim = 1000000000000\n", "model.latent_dim must be <= 65536"),
    ],
)
def test_toml_values_are_refused_before_a_run_directory_exists(capsys, tmp_path, toml, needle):
    config = tmp_path / "c.toml"
    config.write_text(toml)
    out = tmp_path / "run"
    assert needle in one_line_error(capsys, ["train", *TINY, "--config", str(config), "--out", str(out)])
    assert not out.exists()


@pytest.mark.parametrize(
    "override, needle",
    [
        ({"lr": float("inf")}, "train.lr must be a finite number, got inf"),
        ({"beta": float("nan")}, "objective.beta must be a finite number"),
        ({"seed": 2**63}, "train.seed must be <= 4294967295"),
        ({"epochs": 0}, "train.epochs must be >= 1"),
        ({"image_size": 10**6}, "data.image_size must be <= 1024"),
    ],
)
def test_api_values_are_refused_before_a_run_directory_exists(tmp_path, override, needle):
    settings = {"dataset": "shapes", "image_size": 32, "limit": 32, "val_size": 16, "epochs": 1, **override}
    with pytest.raises(VaelabError, match=needle):
        vaelab.train("mlp2", out=tmp_path / "run", **settings, **QUIET)
    assert not (tmp_path / "run").exists()


def test_the_largest_seed_trains_and_samples_end_to_end(capsys, tmp_path):
    """SEED_MAX goes through the seeded parts of a real run: weights, batches, dynamic binarisation, step noise,
    the fixed sample grid, the split seed, and `vaelab sample`."""
    out = tmp_path / "run"
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\nsplit_seed = {SEED_MAX}\nbinarize = "dynamic"\n')
    assert main(["train", *TINY, "--config", str(config), "--seed", SEED_MAX, "--out", str(out)]) == 0
    assert vaelab.Run(out).config.train.seed == 2**32 - 1
    assert main(["sample", str(out), "-n", "4", "--seed", SEED_MAX, "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists()


def test_resume_may_only_grow_epochs(capsys, run):
    assert "--epochs: must be >= 1, got 0" in one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "0"])
    before = (run / "checkpoint.safetensors").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "1", "--no-progress"]) == 0
    assert "already finished its 1 epochs" in capsys.readouterr().out
    assert (run / "checkpoint.safetensors").read_bytes() == before


def test_a_checkpoint_with_an_absurd_config_is_refused_at_load(capsys, run, tmp_path):
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open is no dict)
        metadata = f.metadata()
    for section, key, value, needle in (
        ("model", "latent_dim", 10**12, "model.latent_dim must be <= 65536"),
        ("train", "sample_grid", 10**10, "train.sample_grid must be <= 1024"),
    ):
        config = json.loads(metadata["config"])
        config[section][key] = value
        bad = tmp_path / f"{key}.safetensors"
        save_file(tensors, str(bad), metadata={**metadata, "config": json.dumps(config)})
        err = one_line_error(capsys, ["sample", str(bad), "-o", str(tmp_path / "s.png")])
        assert "damaged metadata: config" in err and needle in err
    assert not (tmp_path / "s.png").exists()


# --------------------------------------------------------------------------- using a run


@pytest.mark.parametrize(
    "argv, needle",
    [
        (
            ["sample", "RUN", "-n", str(10**9)],
            ("1000000000 samples of 1x16x16 would need at least 2.06 TB of memory; this machine has"),
        ),
        (["sample", "RUN", "-n", "1e9"], "expected a whole number, got '1e9'"),
        (["sample", "RUN", "--seed", str(2**63)], "argument --seed: must be <= 4294967295"),
        (["sample", "RUN", "--temperature", "nan"], "argument --temperature: must be a finite number, got nan"),
        (["sample", "RUN", "--temperature", "inf"], "must be a finite number, got inf"),
        (["sample", "RUN", "--temperature", "-1"], "must be > 0, got -1"),
        (["reconstruct", "RUN", "--seed", str(2**63)], "must be <= 4294967295"),
        (
            ["evaluate", "RUN", "--iwae-k", str(10**9), "--chunk", str(10**9)],
            "the IWAE bound with k=1000000000 and chunk=1000000000 on batches of 1000 images would need at least",
        ),
        (["evaluate", "RUN", "--iwae-k", str(10**9)], "would need at least 4 TB of memory"),
        (["evaluate", "RUN", "--seed", str(2**63)], "--seed: must be <= 4294967295"),
        (["anomaly", "RUN", "--dataset", "shapes", "--score", "iwae", "--k", str(10**9)], "would need at least"),
        (["anomaly", "RUN", "--dataset", "shapes", "--seed", str(2**63)], "must be <= 4294967295"),
        (["plot", "RUN", "--range", "1e308"], "argument --range: must be <= 1000, got 1e+308"),
        (["plot", "RUN", "--range", "inf"], "must be a finite number, got inf"),
        (["plot", "RUN", "--range", "nan"], "must be a finite number, got nan"),
        (["plot", "RUN", "--seed", str(2**63)], "must be <= 4294967295"),
    ],
)
def test_use_requests_are_refused_before_any_work(capsys, run, tmp_path, argv, needle):
    argv = [str(run) if a == "RUN" else a for a in argv]
    out = ["-o", str(tmp_path / "out")] if argv[0] in ("sample", "reconstruct", "plot") else []
    assert needle in one_line_error(capsys, argv + out)
    assert not (tmp_path / "out").exists() and not (run / "eval.json").exists() and not (run / "plots").exists()


def test_api_use_requests_are_refused_before_any_work(run):
    with pytest.raises(VaelabError, match=r"IWAE bound with k=1000000000 .* would need at least 4 TB of memory"):
        vaelab.evaluate(run, iwae_k=10**9)
    with pytest.raises(VaelabError, match="seed must be a whole number, got True"):
        vaelab.evaluate(run, seed=True)
    with pytest.raises(VaelabError, match="would need at least"):
        vaelab.anomaly_scores(run, dataset="shapes", score="iwae", k=10**9)
    with pytest.raises(VaelabError, match="--range must be <= 1000"):
        vaelab.plot(run, latent_range=1e308)
    with pytest.raises(VaelabError, match="--range must be a finite number"):
        vaelab.plot(run, latent_range=float("nan"))
    assert not (run / "eval.json").exists() and not (run / "plots").exists()
    model = vaelab.load(run)
    with pytest.raises(VaelabError, match=r"1000000000 samples of 1x16x16 would need at least 2.06 TB"):
        model.sample(10**9)
    for bad, needle in ((float("nan"), "finite"), (float("inf"), "finite"), (-1.0, "> 0"), (0, "> 0")):
        with pytest.raises(VaelabError, match=f"temperature must be .*{needle}"):
            model.sample(2, temperature=bad)
    with pytest.raises(VaelabError, match="n must be >= 0"):
        model.sample(-1)


# --------------------------------------------------------------------------- the rules themselves


def test_checks_reject_bools_non_numbers_and_non_finite_values():
    assert checks.whole("x", 3, low=1, high=3) == 3
    assert checks.real("x", 2, low=0, low_open=True) == 2.0
    for value in (True, 1.0, "1", None):
        with pytest.raises(VaelabError, match="x must be a whole number"):
            checks.whole("x", value)
    for value in (True, "1", None):
        with pytest.raises(VaelabError, match="x must be a number"):
            checks.real("x", value)
    for value in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(VaelabError, match="x must be a finite number"):
            checks.real("x", value)
    with pytest.raises(VaelabError, match=r"^must be > 0, got 0$"):
        checks.real(None, 0, low=0, low_open=True)


def test_iwae_memory_counts_what_log_weights_allocates():
    """A huge chunk alone is harmless: a decoder pass never holds more than k x batch pairs."""
    checks.iwae_memory(100, 10**9, 1000, 10_000, (1, 28, 28))
    with pytest.raises(VaelabError, match="would need at least 4 TB"):  # the log-weights alone: 1e9 x 1000 x 4
        checks.iwae_memory(10**9, 256, 1000, 10_000, (1, 28, 28))
    with pytest.raises(VaelabError, match="would need at least"):  # 1e7 pairs per pass, 28x28, 2 float32 each
        checks.iwae_memory(10**7, 10**9, 1000, 10_000, (1, 28, 28))


def test_memory_is_read_and_sizes_are_written_in_decimal_units(monkeypatch):
    assert checks.machine_memory() > 2**28
    assert [checks.size_text(n) for n in (512, 3.7e12, 25.3e9, 1e18)] == ["512 B", "3.7 TB", "25.3 GB", "1e+03 PB"]
    monkeypatch.setattr(checks, "machine_memory", lambda: 24 * 10**9)
    with pytest.raises(VaelabError, match=r"^x would need at least 3.7 TB of memory; this machine has 24 GB$"):
        checks.memory("x", int(3.7e12))
    checks.memory("x", 24 * 10**9)


def test_configs_from_checkpoints_and_dicts_share_the_rules():
    with pytest.raises(VaelabError, match="model.latent_dim must be <= 65536"):
        from_dict({"model": {"latent_dim": 10**12}})
    with pytest.raises(VaelabError, match="train.lr must be a finite number"):
        from_dict({"train": {"lr": float("inf")}})
    assert from_dict({"train": {"seed": 2**32 - 1}}).train.seed == 2**32 - 1


def test_a_training_step_does_not_check_its_pixels(monkeypatch):
    """The batches of vaelab's training loop are converted from uint8: no aminmax, no host sync per step."""
    from vaelab.models import noise, vae
    from vaelab.training.step import train_step

    cfg = vaelab.presets()["cvae2"]
    model = vaelab.build_model(cfg.model, cfg.objective, (1, 28, 28))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    monkeypatch.setattr(vae, "checked_images", lambda x: pytest.fail("pixels checked inside a training step"))
    x = torch.rand(4, 1, 28, 28)
    with noise.step_noise(torch.Generator(), 0, 0, slice(0, 4), 4):
        train_step(model, opt, x, direct=False)
