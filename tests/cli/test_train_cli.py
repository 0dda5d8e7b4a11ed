"""End to end through the command line: every preset trains, samples, reconstructs and evaluates."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from vaelab.cli import main

SMALL = ["--epochs", "1", "--limit", "64", "--val-size", "32", "--batch-size", "32", "--no-progress"]


@pytest.mark.parametrize("preset", ["mlp2", "keras-conv2", "cvae2", "conv16"])
def test_each_mnist_preset_trains_and_samples(preset, data_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", preset, "--out", str(out), "--data-dir", str(data_root), *SMALL]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("epoch 1")]
    assert line and "train -ELBO" in line[0] and "val ELBO" in line[0] and "img/s" in line[0]
    _check_run(out, epochs=1, image_size=28 * 2)
    assert main(["sample", str(out), "-n", "9", "-o", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == (2 * (3 * 29 + 1),) * 2  # 3x3 tiles, 1px borders, x2


@pytest.mark.slow
def test_cifar128_trains_on_a_cifar_format_fixture(cifar_root, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--preset",
                "cifar128",
                "--out",
                str(out),
                "--data-dir",
                str(cifar_root),
                "--epochs",
                "1",
                "--val-size",
                "8",
                "--batch-size",
                "16",
                "--no-progress",
            ]
        )
        == 0
    )
    _check_run(out, epochs=1, image_size=32 * 2)
    assert Image.open(out / "samples" / "epoch_0001.png").mode == "RGB"
    assert main(["evaluate", str(out), "--json", "--data-dir", str(cifar_root)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["split"] == "test" and result["n"] == 20


def _check_run(out, epochs, image_size):
    assert (out / "config.toml").exists() and (out / "checkpoint.safetensors").exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, epochs + 1))
    for key in ("train_loss", "val_elbo", "val_recon", "val_kl", "seconds", "images_per_s"):
        assert all(isinstance(r[key], float) for r in records), key
    r = records[-1]
    assert r["val_elbo"] < 0 and r["val_recon"] > 0 and r["val_kl"] >= 0
    assert r["val_elbo"] == pytest.approx(-(r["val_recon"] + r["val_kl"]))
    for e in range(epochs + 1):
        assert (out / "samples" / f"epoch_{e:04d}.png").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("runs") / "mlp2"
    assert (
        main(["train", "--preset", "mlp2", "--out", str(out), "--data-dir", str(data_root), *SMALL, "--epochs", "2"])
        == 0
    )
    return out


def test_evaluate_json_is_deterministic_per_seed(trained, data_root, capsys):
    args = ["evaluate", str(trained), "--limit", "200", "--json", "--data-dir", str(data_root)]
    assert main([*args, "--seed", "1"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main([*args, "--seed", "1"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert main([*args, "--seed", "2"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert a == b and a["elbo"] != c["elbo"]
    assert set(a) >= {"split", "n", "elbo", "recon", "kl"} and a["n"] == 200 and a["split"] == "test"
    assert a["elbo"] == pytest.approx(-(a["recon"] + a["kl"]))


def test_reconstruct_writes_originals_over_reconstructions(trained, data_root, tmp_path):
    out = tmp_path / "r.png"
    assert main(["reconstruct", str(trained), "-n", "8", "-o", str(out), "--data-dir", str(data_root)]) == 0
    img = Image.open(out)  # one group: 8 originals over their 8 reconstructions, each 28 px upscaled 2x at least,
    assert img.width > 8 * 28 * 2 and 2 * 28 * 2 < img.height < 8 * 28 * 2  # labelled rows and a title


def test_resume_continues_to_more_epochs(trained, data_root, tmp_path, capsys):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    assert main(["train", "--resume", str(run), "--epochs", "3", "--data-dir", str(data_root), "--no-progress"]) == 0
    assert "resuming" in capsys.readouterr().out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[2]["step"] == 3 * 2  # 64 images / 32 per batch = 2 steps per epoch


def test_resume_matches_an_uninterrupted_run(data_root, tmp_path):
    # Bit-identical on the CPU; CUDA's convolution backward is not deterministic.
    common = ["--preset", "cvae2", "--data-dir", str(data_root), "--device", "cpu", *SMALL]
    assert main(["train", *common, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert main(["train", *common, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert (
        main(["train", "--resume", str(tmp_path / "b"), "--epochs", "2", "--data-dir", str(data_root), "--no-progress"])
        == 0
    )
    from vaelab import load

    a, b = load(tmp_path / "a"), load(tmp_path / "b")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
