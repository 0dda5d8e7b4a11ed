"""Plugins: a run trained with a plugin's encoder and decoder opens again from the command line.

The plugin is a module written to a temporary folder. "A new process" is
simulated by forgetting its registrations and dropping it from sys.modules;
one test runs the real `python -m vaelab` to prove the path end to end.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
from torch import nn

import vaelab
from vaelab import plugins
from vaelab.cli import main
from vaelab.config import RunConfig, apply_overrides, from_dict, read_toml, to_dict
from vaelab.errors import VaelabError
from vaelab.models import build_model, noise
from vaelab.models.registry import DECODERS, ENCODERS
from vaelab.training import direct
from vaelab.training.checkpoint import load_checkpoint
from vaelab.training.direct.layers import rule_for
from vaelab.training.optim import build_optimizer
from vaelab.training.step import step_kind, train_step

from clihelp import one_line_error

MODULE = "vaelab_test_plugin_nets"
NAME = "plugin-tiny"
SOURCE = f'''
from torch import nn

import vaelab


@vaelab.register_encoder("{NAME}")
def encoder(image_shape, out_features):
    c, h, w = image_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, 16), nn.ReLU(), nn.Linear(16, out_features))


@vaelab.register_decoder("{NAME}")
def decoder(image_shape, latent_dim, out_channels):
    _, h, w = image_shape
    return nn.Sequential(nn.Linear(latent_dim, 16), nn.ReLU(), nn.Linear(16, out_channels * h * w),
                         nn.Unflatten(1, (out_channels, h, w)))
'''
TRAIN = [
    "--dataset",
    "shapes",
    "--image-size",
    "16",
    "--limit",
    "64",
    "--val-size",
    "32",
    "--epochs",
    "1",
    "--batch-size",
    "32",
    "--no-progress",
]


def write_module(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    importlib.invalidate_caches()  # the import system caches folder listings
    return path


def forget(*modules: str) -> None:
    """What a new process would not have: the plugin's registrations and the imported module."""
    ENCODERS.remove(NAME)
    DECODERS.remove(NAME)
    for module in modules:
        sys.modules.pop(module, None)


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    write_module(folder, MODULE, SOURCE)
    return folder


@pytest.fixture(scope="module")
def run(plugin_dir, tmp_path_factory) -> Path:
    """A run trained from the command line with the plugin's networks; then the plugin is forgotten."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    sys.path.insert(0, str(plugin_dir))
    try:
        assert (
            main(
                [
                    "--import",
                    MODULE,
                    "train",
                    "--preset",
                    "cvae2",
                    "--encoder",
                    NAME,
                    "--decoder",
                    NAME,
                    "--out",
                    str(out),
                    *TRAIN,
                ]
            )
            == 0
        )
    finally:
        sys.path.remove(str(plugin_dir))
        forget(MODULE)
    return out


@pytest.fixture(autouse=True)
def clean_registry():
    """Each test starts as a new process would: the plugin neither registered nor imported."""
    forget(MODULE)
    yield
    forget(MODULE)


@pytest.fixture
def no_entry_points(monkeypatch):
    """The installed plugins as a test says: none unless it sets some, loaded afresh."""
    found: list[EntryPoint] = []
    monkeypatch.setattr(plugins, "entry_points", lambda group: [p for p in found if p.group == group])
    monkeypatch.setattr(plugins, "_entry_points_loaded", False)
    monkeypatch.setattr(plugins, "_entry_point_failures", [])
    return found


# --------------------------------------------------------------------------- what the run records


def test_the_run_records_its_plugin_and_a_name_of_its_own(run):
    cfg = load_checkpoint(run, with_optimizer=False).config  # the checkpoint's JSON config
    assert cfg.plugins == (MODULE,)
    assert cfg.preset == f"custom-{NAME}"  # not cvae2, whose networks it does not have
    assert (cfg.model.encoder, cfg.model.decoder) == (NAME, NAME)
    toml = read_toml(run / "config.toml")
    assert toml["plugins"] == [MODULE] and toml["preset"] == f"custom-{NAME}"
    assert vaelab.presets()["cvae2"].preset == "cvae2"  # the preset itself is unchanged


def test_plugins_round_trip_through_toml_and_json():
    cfg = apply_overrides(RunConfig(), {"plugins": ["mynets", "pkg.more"]})
    assert cfg.plugins == ("mynets", "pkg.more")
    assert from_dict(to_dict(cfg)) == cfg
    assert RunConfig().plugins == () and from_dict(to_dict(RunConfig())) == RunConfig()


def test_plugins_must_be_module_names():
    with pytest.raises(VaelabError, match="plugins must list module names"):
        RunConfig(plugins=("../evil",))
    with pytest.raises(VaelabError, match="plugins must be a list"):
        apply_overrides(RunConfig(), {"plugins": "mynets"})


def test_preset_names(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    importlib.import_module(MODULE)
    assert vaelab.resolve_config("cvae2").preset == "cvae2" and vaelab.resolve_config("cvae2").plugins == ()
    assert vaelab.resolve_config("cvae2", latent_dim=4).preset == "cvae2"  # the preset's networks: its name
    cfg = vaelab.resolve_config("cvae2", encoder=NAME, decoder=NAME)
    assert cfg.preset == f"custom-{NAME}" and cfg.plugins == (MODULE,)
    assert vaelab.resolve_config("mlp2", encoder=NAME).preset == f"custom-{NAME}-mlp2"
    assert vaelab.resolve_config("mlp2", encoder="cvae2").preset == "custom-cvae2-mlp2"


def test_a_runs_config_toml_is_a_config_file_again(run, plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    saved = load_checkpoint(run, with_optimizer=False).config
    # its preset (custom-...) is no preset, and its parts come from the module it names, imported here
    assert vaelab.resolve_config(config=run / "config.toml") == saved
    with pytest.raises(VaelabError, match="unknown preset"):
        vaelab.resolve_config(f"custom-{NAME}")  # only a file may name a run's own preset


# --------------------------------------------------------------------------- opening the run again


def test_sample_imports_the_recorded_module(run, plugin_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    assert NAME not in ENCODERS and MODULE not in sys.modules
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").exists()
    assert ENCODERS.provider(NAME) == MODULE and MODULE in sys.modules


def test_python_load_imports_the_recorded_module(run, plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    model = vaelab.load(run)
    assert model.sample(2).shape[-2:] == (16, 16)
    assert ENCODERS.provider(NAME) == MODULE


def test_a_recorded_module_that_cannot_be_found_is_named(run, capsys):
    err = one_line_error(capsys, ["sample", str(run)])
    assert f"unknown encoder {NAME!r}" in err
    assert f"this run's encoder came from module {MODULE!r}" in err
    assert f"no module named {MODULE!r}" in err and f"--import {MODULE}" in err


def test_import_names_a_module_in_place_of_the_recorded_one(run, tmp_path, monkeypatch, capsys):
    """A plugin renamed since: --import the new name and the run opens (the recorded one is not needed)."""
    write_module(tmp_path / "new", "vaelab_test_renamed_nets", SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "new"))
    try:
        assert main(["sample", str(run), "--import", "vaelab_test_renamed_nets", "-o", str(tmp_path / "s.png")]) == 0
        assert ENCODERS.provider(NAME) == "vaelab_test_renamed_nets"
    finally:
        forget("vaelab_test_renamed_nets")


def test_a_module_that_no_longer_registers_the_part(run, tmp_path, monkeypatch, capsys):
    write_module(tmp_path / "old", MODULE, "X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "old"))
    err = one_line_error(capsys, ["evaluate", str(run)])
    assert f"module {MODULE!r}, which registers no encoder of that name now" in err


def test_a_part_registered_in_a_script_says_so(tmp_path):
    script = {"__name__": "__main__"}
    exec(compile(textwrap.dedent(SOURCE), "<notebook cell>", "exec"), script)
    run = vaelab.train(
        "mlp2",
        encoder=NAME,
        decoder=NAME,
        dataset="shapes",
        image_size=16,
        limit=64,
        val_size=32,
        epochs=1,
        out=tmp_path / "run",
        progress=False,
        log=lambda line: None,
    )
    assert run.config.plugins == ("__main__",)
    forget()
    with pytest.raises(VaelabError, match=r"registered in a script or notebook \(__main__\).*--import MODULE"):
        vaelab.load(run.path)


# --------------------------------------------------------------------------- --import


@pytest.mark.parametrize(
    "argv", [["--import", "vaelab_no_such_module", "presets"], ["presets", "--import", "vaelab_no_such_module"]]
)
def test_import_of_a_missing_module_is_one_line(capsys, argv):
    err = one_line_error(capsys, argv)
    assert "cannot import plugin module 'vaelab_no_such_module': no module named 'vaelab_no_such_module'" in err


def test_import_of_a_file_name_says_what_to_pass(capsys):
    assert "--import mynets" in one_line_error(capsys, ["--import", "some/where/mynets.py", "presets"])


def test_a_plugin_that_raises_is_one_line(tmp_path, monkeypatch, capsys):
    write_module(tmp_path, "vaelab_test_broken", "import vaelab\nraise RuntimeError('boom\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    err = one_line_error(capsys, ["--import", "vaelab_test_broken", "presets"])
    assert "cannot import plugin module 'vaelab_test_broken': RuntimeError: boom second line" in err
    sys.modules.pop("vaelab_test_broken", None)


def test_a_plugin_taking_a_built_in_name_is_one_line(tmp_path, monkeypatch, capsys):
    write_module(tmp_path, "vaelab_test_clash", "import vaelab\nvaelab.register_encoder('mlp2', lambda s, o: None)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    err = one_line_error(capsys, ["--import", "vaelab_test_clash", "presets"])
    assert "encoder 'mlp2' is already registered (by module 'vaelab.models.nets.mlp2')" in err
    sys.modules.pop("vaelab_test_clash", None)


# --------------------------------------------------------------------------- entry points


def test_an_installed_plugin_loads_when_a_name_is_not_found(run, plugin_dir, tmp_path, monkeypatch, no_entry_points):
    monkeypatch.syspath_prepend(str(plugin_dir))
    no_entry_points.append(EntryPoint(name="tiny-nets", value=MODULE, group=plugins.GROUP))
    assert ENCODERS["cvae2"] is not None and MODULE not in sys.modules  # a known name loads nothing
    assert main(["sample", str(run), "-o", str(tmp_path / "s.png")]) == 0
    assert ENCODERS.provider(NAME) == MODULE


def test_a_broken_installed_plugin_is_named_where_a_name_stays_unknown(run, monkeypatch, capsys, no_entry_points):
    no_entry_points.append(EntryPoint(name="broken", value="vaelab_no_such_plugin:setup", group=plugins.GROUP))
    assert ENCODERS["cvae2"] is not None  # nothing is loaded for a known name
    err = one_line_error(capsys, ["sample", str(run)])
    assert (
        "the vaelab.plugins entry point 'broken' (module 'vaelab_no_such_plugin') failed to load: "
        "no module named 'vaelab_no_such_plugin'"
    ) in err
    assert f"--import {MODULE}" in err


# --------------------------------------------------------------------------- registering again


def test_the_same_function_registered_again_replaces_it():
    cell = textwrap.dedent(SOURCE)
    notebook = {"__name__": "__main__"}
    exec(compile(cell, "<cell>", "exec"), notebook)
    first = ENCODERS[NAME]
    exec(compile(cell, "<cell>", "exec"), notebook)  # the cell run again: a new function object, same definition
    assert ENCODERS[NAME] is not first and ENCODERS[NAME] is notebook["encoder"]
    assert ENCODERS.provider(NAME) == "__main__"


def test_another_function_under_a_taken_name_is_an_error():
    @vaelab.register_encoder(NAME)
    def encoder(image_shape, out_features):
        return nn.Linear(1, out_features)

    @vaelab.register_encoder(NAME)  # the same function again: fine
    def encoder(image_shape, out_features):  # noqa: F811
        return nn.Linear(1, out_features)

    def other(image_shape, out_features):
        return nn.Linear(1, out_features)

    with pytest.raises(ValueError, match=f"encoder '{NAME}' is already registered \\(by module '{__name__}'\\)"):
        vaelab.register_encoder(NAME, other)
    assert ENCODERS.provider(NAME) == __name__


# --------------------------------------------------------------------------- the fast step


def plugin_model(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    importlib.import_module(MODULE)
    cfg = vaelab.resolve_config("mlp2", encoder=NAME, decoder=NAME)
    torch.manual_seed(0)
    return build_model(cfg.model, cfg.objective, (1, 16, 16)), cfg


def test_unflatten_keeps_the_direct_step(plugin_dir, monkeypatch):
    model, _ = plugin_model(plugin_dir, monkeypatch)
    assert type(model.decoder[-1]) is nn.Unflatten
    assert direct.direct_step(model) is not None
    assert step_kind(model) == "direct step"


def test_unflatten_gradients_match_autograd(plugin_dir, monkeypatch):
    results = []
    for use_direct in (True, False):
        model, cfg = plugin_model(plugin_dir, monkeypatch)
        opt = build_optimizer(model.parameters(), cfg.train)
        x = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1))
        with noise.step_noise(torch.Generator(), 3, 0, slice(0, 8), 8):
            terms, applied = train_step(model, opt, x, direct=use_direct)
        assert applied
        results.append((terms, {n: p.grad.clone() for n, p in model.named_parameters()}))
    (terms, grads), (ref_terms, ref_grads) = results
    torch.testing.assert_close(terms["loss"], ref_terms["loss"], rtol=1e-6, atol=1e-4)
    for name, ref in ref_grads.items():
        torch.testing.assert_close(grads[name], ref, rtol=1e-5, atol=1e-6)


def test_step_kind_says_why_it_is_autograd(plugin_dir, monkeypatch):
    model, _ = plugin_model(plugin_dir, monkeypatch)
    model.decoder.append(nn.Tanh())
    assert step_kind(model) == "autograd (the decoder's layer 4, Tanh, has no direct rule)"
    assert step_kind(model, direct=False) == "autograd (asked for)"
    assert rule_for(nn.Unflatten(1, (1, 4, 4))) is not None


# --------------------------------------------------------------------------- the real command line


def test_the_real_command_line(run, plugin_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vaelab",
            "--import",
            MODULE,
            "sample",
            str(run),
            "-n",
            "4",
            "-o",
            str(tmp_path / "s.png"),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "s.png").exists()
