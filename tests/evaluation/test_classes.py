"""data.classes: train (and validate) on some labels only; config round trip; errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

import vaelab
from vaelab.cli import main
from vaelab.config import DataConfig, RunConfig, apply_overrides, from_dict, read_toml, to_dict, to_toml
from vaelab.data import load_images
from vaelab.training.data import prepare_splits


def test_toml_and_dict_round_trip_with_a_list(tmp_path):
    cfg = vaelab.resolve_config("mlp2", classes=[0, 3])
    assert cfg.data.classes == (0, 3)
    assert "classes = [0, 3]" in to_toml(cfg)
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert from_dict(read_toml(path)) == cfg
    assert from_dict(to_dict(cfg)) == cfg
    assert "classes" not in to_dict(vaelab.resolve_config("mlp2"))  # unset stays out of the file


@pytest.mark.parametrize(
    "value, needle",
    [
        (3, "must be a list"),
        ("0,1", "must be a list"),
        ([0, "1"], r"data.classes\[1\] must be of type int"),
        ([True], r"data.classes\[0\] must be of type int"),
        ([], "non-empty"),
        ([-1], "non-empty list of label values"),
    ],
)
def test_bad_classes_are_errors(value, needle):
    with pytest.raises(vaelab.VaelabError, match=needle):
        apply_overrides(RunConfig(), {"data": {"classes": value}})


def test_split_keeps_only_the_classes_and_the_same_validation_images():
    base = DataConfig(name="shapes", image_size=16, val_size=400, limit=None)
    full = prepare_splits(base)
    some = prepare_splits(dataclasses.replace(base, classes=(0, 2)))
    assert set(some.train.labels.unique().tolist()) == {0, 2} == set(some.val.labels.unique().tolist())
    keep = torch.isin(full.val.labels, torch.tensor([0, 2]))
    assert torch.equal(some.val.images, full.val.images[keep])  # carved first, then filtered
    assert len(some.train) == int(torch.isin(full.train.labels, torch.tensor([0, 2])).sum())
    limited = prepare_splits(dataclasses.replace(base, classes=(1,), limit=10))
    assert len(limited.train) == 10 and (limited.train.labels == 1).all()


def test_unknown_class_and_unlabelled_data_are_one_line_errors(tmp_path):
    with pytest.raises(vaelab.VaelabError, match="labels 0..2; no class 7"):
        prepare_splits(DataConfig(name="shapes", image_size=16, val_size=100, classes=(1, 7)))
    for i in range(4):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / f"{i}.png")
    with pytest.raises(vaelab.VaelabError, match="has no labels"):
        prepare_splits(DataConfig(name=f"folder:{tmp_path}", image_size=8, val_size=1, classes=(0,)))


def test_cli_flag_trains_on_those_classes_and_evaluate_follows(capsys, tmp_path):
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
                "16",
                "--classes",
                "2",
                "--limit",
                "64",
                "--val-size",
                "64",
                "--epochs",
                "1",
                "--out",
                str(run),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "classes = [2]" in (run / "config.toml").read_text()
    assert vaelab.Run(run).config.data.classes == (2,)
    r = vaelab.evaluate(run, iwae_k=0, frechet=False)
    assert r["classes"] == [2]
    assert r["n"] == int((load_images("shapes", "test", image_size=16).labels == 2).sum())


def test_cli_bad_classes_flag(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--classes", "0,x"])
    assert e.value.code == 2 and "expected label values" in capsys.readouterr().err
