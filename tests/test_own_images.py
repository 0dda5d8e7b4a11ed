"""Your own images: colour is never binarised unless asked, small folders validate on a tenth, the README's
recipe runs as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main

from clihelp import one_line_error

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def photos(tmp_path) -> Path:
    """30 small colour images in two class folders."""
    rng = np.random.default_rng(0)
    for i in range(30):
        folder = tmp_path / "photos" / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return tmp_path / "photos"


def _train(photos: Path, out: Path, *flags: str) -> list[str]:
    return [
        "train",
        "--dataset",
        f"folder:{photos}",
        "--image-size",
        "16",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--no-progress",
        *flags,
    ]


def test_a_folder_trains_folder_hvae_in_colour_and_binarising_presets_are_refused(photos, tmp_path, capsys):
    assert main(_train(photos, tmp_path / "run")) == 0  # no --preset: folder-hvae, 8-bit colour
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("training folder-hvae on folder:")
    config = (tmp_path / "run" / "config.toml").read_text()
    assert 'binarize = "none"' in config and 'likelihood = "discretized-logistic-mixture"' in config
    err = one_line_error(capsys, _train(photos, tmp_path / "cvae2", "--preset", "cvae2"))
    assert "binarises its images" in err and "--preset folder-hvae" in err and "--binarize static" in err
    assert not (tmp_path / "cvae2").exists()


def test_nor_cifar10(capsys, tmp_path):
    err = one_line_error(capsys, ["train", "--dataset", "cifar10", "--out", str(tmp_path / "run")])
    assert "colour images of cifar10" in err


def test_binarising_colour_when_asked_and_grey_images(photos, tmp_path, capsys):
    assert main(_train(photos, tmp_path / "asked", "--preset", "cvae2", "--binarize", "static")) == 0
    grey = _train(photos, tmp_path / "grey", "--preset", "cvae2", "--grayscale")
    assert main(grey) == 0  # grey pictures binarise as digits do


def test_a_small_folder_validates_on_a_tenth(photos, tmp_path, capsys):
    assert main(_train(photos, tmp_path / "run", "--preset", "conv16", "--batch-size", "8")) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "(25 train / 2 val images" in first  # 27 of 30 are train (10% held out as test), a tenth of them val


def test_the_readme_recipe_runs_as_written(photos, tmp_path, capsys, monkeypatch):
    section = README.read_text().split("## Train on your own images", 1)[1].split("\n## ", 1)[0]
    commands = [line for line in re.findall(r"```\n(.*?)```", section, re.S)[0].splitlines() if line.strip()]
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shlex.split(command.replace("PATH", str(photos)))
        assert argv[0] == "vaelab"
        if argv[1] == "train":
            argv += ["--epochs", "1", "--image-size", "16", "--batch-size", "8"]  # shortened, for 30 small images
        if argv[1] == "report":
            argv += ["--no-eval"]
        assert main(argv[1:]) == 0, command
    assert (tmp_path / "runs" / "mine" / "report.html").is_file()
