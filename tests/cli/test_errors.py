"""User errors: one line on stderr, exit code 2, no traceback, nothing already written lost."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vaelab.cli import main

from clihelp import one_line_error


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--preset", "nope"], "unknown preset 'nope'"),
        (["train", "--batch-size", "0"], "must be >= 1"),
        (["train", "--lr", "fast"], "expected a number"),
        (["train", "--binarize", "maybe"], "invalid choice"),
        (["train", "--optimizer", "sgd", "--epochs", "1", "--dataset", "shapes"], "unknown optimizer 'sgd'"),
        (["train", "--dataset", "nosuchset"], "nosuchset"),
        (["train", "--config", "/nonexistent/x.toml"], "config file not found"),
        (["evaluate", "/nonexistent/run"], "no such run"),
        (["sample", "/nonexistent/run"], "no such run"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    assert needle in one_line_error(capsys, argv)


def test_a_folder_that_is_not_a_run(capsys, tmp_path):
    assert "is not a vaelab run" in one_line_error(capsys, ["evaluate", str(tmp_path)])


def test_a_file_that_is_not_a_checkpoint(capsys, tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_text("hello")
    assert "not a vaelab checkpoint" in one_line_error(capsys, ["sample", str(bad)])


def test_missing_data_offline_names_file_and_directory(capsys, tmp_path):
    err = one_line_error(
        capsys, ["train", "--preset", "mlp2", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run")]
    )
    assert "train-images-idx3-ubyte.gz" in err and str(tmp_path / "mnist") in err
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_out_dir_holding_a_run_is_not_overwritten(capsys, tmp_path):
    run = tmp_path / "run"
    args = [
        "train",
        "--dataset",
        "shapes",
        "--preset",
        "mlp2",
        "--image-size",
        "32",
        "--limit",
        "32",
        "--val-size",
        "16",
        "--epochs",
        "1",
        "--out",
        str(run),
        "--no-progress",
    ]
    assert main(args) == 0
    before = (run / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    assert "already holds a run" in one_line_error(capsys, args)
    assert (run / "checkpoint.safetensors").read_bytes() == before


def test_resume_refuses_config_changes_that_alter_results(capsys, tmp_path):
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
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
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    err = one_line_error(capsys, ["train", "--resume", str(run), "--lr", "0.1", "--batch-size", "8"])
    assert "train.lr (0.001 -> 0.1)" in err and "train.batch_size (64 -> 8)" in err
    assert "--preset cannot be combined" in one_line_error(capsys, ["train", "--resume", str(run), "--preset", "x"])


def test_real_process_exit_code_and_stderr(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "vaelab", "train", "--preset", "nope"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "vaelab: error: unknown preset 'nope' (known: cifar-hvae, cifar128, conv16, cvae2, fashion-hvae, "
        "folder-hvae, keras-conv2, mlp2, mnist-hvae, mnist-resnet, shapes-vae)"
    ]
