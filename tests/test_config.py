"""Configs are strict: unknown keys and wrong types are errors, not silent defaults."""

import pytest

from vaelab.api import resolve_config
from vaelab.config import RunConfig, apply_overrides, from_dict, nest_overrides, read_toml, to_dict, to_toml
from vaelab.errors import VaelabError
from vaelab.presets import PRESETS


@pytest.mark.parametrize("name", PRESETS.names())
def test_toml_round_trip(tmp_path, name):
    cfg = PRESETS[name].config
    path = tmp_path / "c.toml"
    path.write_text(to_toml(cfg))
    assert from_dict(read_toml(path)) == cfg
    assert from_dict(to_dict(cfg)) == cfg


def test_unknown_key_is_an_error():
    with pytest.raises(VaelabError, match="unknown key in \\[train\\]: bach_size"):
        apply_overrides(RunConfig(), {"train": {"bach_size": 3}})
    with pytest.raises(VaelabError, match="unknown config section"):
        apply_overrides(RunConfig(), {"trian": {}})
    with pytest.raises(VaelabError, match="unknown setting"):
        nest_overrides({"epoch": 3})


def test_wrong_types_and_values_are_errors():
    with pytest.raises(VaelabError, match="train.batch_size must be of type int"):
        apply_overrides(RunConfig(), {"train": {"batch_size": "64"}})
    with pytest.raises(VaelabError, match="train.batch_size must be of type int"):
        apply_overrides(RunConfig(), {"train": {"batch_size": True}})
    with pytest.raises(VaelabError, match="data.binarize must be one of"):
        apply_overrides(RunConfig(), {"data": {"binarize": "yes"}})
    with pytest.raises(VaelabError, match="train.lr must be > 0"):
        apply_overrides(RunConfig(), {"train": {"lr": -1.0}})
    with pytest.raises(VaelabError, match="model.groups_per_resolution must be >= 0, got -1"):
        apply_overrides(RunConfig(), {"model": {"groups_per_resolution": [2, -1]}})
    counts = apply_overrides(RunConfig(), {"model": {"groups_per_resolution": [2, 4]}}).model.groups_per_resolution
    assert counts == (2, 4)  # a TOML list, kept as a tuple


def test_int_widens_to_float():
    assert apply_overrides(RunConfig(), {"objective": {"beta": 2}}).objective.beta == 2.0


def test_precedence_preset_file_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "mlp2"\n[train]\nepochs = 3\nlr = 0.01\n')
    cfg = resolve_config(config=path, lr=0.5)
    assert cfg.preset == "mlp2" and cfg.model.encoder == "mlp2"
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.5
    assert resolve_config("conv16", config=path).model.encoder == "conv16"  # an explicit preset wins


def test_bad_toml_is_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train\n")
    with pytest.raises(VaelabError, match="not valid TOML"):
        read_toml(path)
    with pytest.raises(VaelabError, match="config file not found"):
        read_toml(tmp_path / "none.toml")


def test_unknown_preset():
    with pytest.raises(VaelabError, match="unknown preset 'nope'"):
        resolve_config("nope")
