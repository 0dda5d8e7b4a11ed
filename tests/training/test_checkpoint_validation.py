"""A checkpoint's metadata is checked once, when it is read: damage gives one line naming the file, never a
traceback or a hang; `sample` and `evaluate` do not read the optimiser's state at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save_file

from vaelab.cli import main
from vaelab.config import to_dict
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.presets import PRESETS
from vaelab.training.checkpoint import Progress, load_checkpoint, save_checkpoint
from vaelab.training.optim import build_optimizer
from vaelab.training.step import train_step

from clihelp import one_line_error

SHAPE = (1, 8, 8)
CONFIG = to_dict(PRESETS["mlp2"].config)


def _rewrite(path, metadata=None, tensors=None, drop=()):
    """Rewrite a checkpoint in place with some metadata entries and tensors replaced (or dropped)."""
    with safe_open(str(path), framework="pt") as f:
        meta, old = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta = {k: v for k, v in {**meta, **(metadata or {})}.items() if k not in drop}
    save_file({k: v for k, v in {**old, **(tensors or {})}.items() if k not in drop}, str(path), metadata=meta)


def _metadata(path) -> dict:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """mlp2 on 1x8x8 images after one Adam step: every kind of entry a checkpoint has, in 0.3 MB."""
    cfg = PRESETS["mlp2"].config
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.objective, SHAPE)
    optimizer = build_optimizer(model.parameters(), cfg.train)
    train_step(model, optimizer, torch.rand(4, *SHAPE))
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.safetensors"
    save_checkpoint(
        path,
        config=cfg,
        image_shape=SHAPE,
        model=model,
        optimizer=optimizer,
        progress=Progress(epoch=2, step=7, seconds=1.5),
    )
    return path


@pytest.fixture
def ckpt(tiny_checkpoint, tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    shutil.copy(tiny_checkpoint, path)
    return path


def _deep(n: int) -> str:
    return '{"model": ' + "[" * n + "]" * n + "}"


OPTIMIZER_WITHOUT_INDICES = "without indices"
CASES = [
    ("config", _deep(100_000), "config: not JSON (nested too deeply)"),
    ("config", "[]", "config: a list, not an object"),
    (
        "config",
        json.dumps({**CONFIG, "model": {**CONFIG["model"], "latent_dim": 1e12}}),
        "model.latent_dim must be of type int",
    ),
    (
        "config",
        json.dumps({**CONFIG, "train": {**CONFIG["train"], "sample_grid": 1e10}}),
        "train.sample_grid must be of type int",
    ),
    ("config", json.dumps({**CONFIG, "model": [{}]}), "config: "),
    ("image_shape", "[1, 8]", "is not [channels, height, width]"),
    ("image_shape", "[1, -8, 8]", "is not [channels, height, width]"),
    ("image_shape", "[1, 8, true]", "is not [channels, height, width]"),
    ("image_shape", "[1, 8, 8.0]", "is not [channels, height, width]"),
    ("image_shape", "[1, 100000000, 8]", "is out of range"),
    ("image_shape", "[7, 8, 8]", "is out of range"),
    ("image_shape", "{}", "is not [channels, height, width]"),
    ("progress", '{"epoch": -1}', "epoch is -1, not a whole number >= 0"),
    ("progress", '{"epoch": "3"}', "epoch is '3', not a whole number >= 0"),
    ("progress", '{"epoch": 2, "step": 7.5}', "step is 7.5, not a whole number >= 0"),
    ("progress", '{"epoch": true}', "epoch is True"),
    ("progress", '{"seconds": -1.0}', "seconds is -1.0, not a number >= 0"),
    ("progress", '{"seconds": NaN}', "seconds is nan"),
    ("progress", '{"epochs": 2}', "unknown key 'epochs'"),
    ("progress", "[2, 7]", "progress: a list, not an object"),
    ("progress", "{", "progress: not JSON"),
    ("optimizer", OPTIMIZER_WITHOUT_INDICES, "optimizer: indices is not a list"),
    ("optimizer", '{"param_groups": [{"params": "all"}], "scalars": {}, "indices": []}', "param_groups is not"),
    ("optimizer", '{"param_groups": [], "scalars": [], "indices": ["0"]}', "scalars is not"),
    ("optimizer", '{"param_groups": [], "scalars": {}, "indices": ["-1"]}', "indices is not"),
    ("optimizer", "[1]", "param_groups is not"),
]


def _damage(path, key: str, value: str) -> None:
    if value == OPTIMIZER_WITHOUT_INDICES:
        value = json.dumps({k: v for k, v in json.loads(_metadata(path)["optimizer"]).items() if k != "indices"})
    _rewrite(path, {key: value})


@pytest.mark.parametrize("key, value, why", CASES, ids=[f"{k}-{v[:30]}" for k, v, _ in CASES])
def test_damaged_metadata_is_one_line_naming_the_file(ckpt, key, value, why):
    _damage(ckpt, key, value)
    with pytest.raises(VaelabError) as e:
        load_checkpoint(ckpt)
    message = str(e.value)
    assert message.startswith(f"{ckpt} has damaged metadata: {key}: ") and why in message, message
    assert "\n" not in message and len(message) < 400, message


@pytest.mark.parametrize(
    "drop, why",
    [("config", "config: missing"), ("progress", "progress: missing"), ("image_shape", "image_shape: missing")],
)
def test_a_missing_entry_is_one_line(ckpt, drop, why):
    _rewrite(ckpt, drop=[drop])
    with pytest.raises(VaelabError, match=why):
        load_checkpoint(ckpt)


def test_the_old_progress_entries_still_load_and_are_checked(ckpt):
    _rewrite(ckpt, {"epoch": "3", "step": "9"}, drop=["progress"])
    assert (load_checkpoint(ckpt).epoch, load_checkpoint(ckpt).step) == (3, 9)
    _rewrite(ckpt, {"epoch": "-3"})
    with pytest.raises(VaelabError, match="progress: epoch is -3"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize(
    "name, tensor, why",
    [
        ("progress.sums", torch.zeros(3, dtype=torch.float64), "progress.sums holds 3"),
        ("progress.sums", torch.zeros(4, dtype=torch.int64), "not a row of 4 or more floats"),
        ("progress.sums", torch.zeros(2, 2, dtype=torch.float64), "holds 4 torch.float64 values"),
        ("rng.torch", torch.zeros(10, dtype=torch.uint8), "rng.torch is not a generator state"),
        ("rng.cuda.x", torch.zeros(16, dtype=torch.uint8), "unknown generator 'cuda.x'"),
    ],
)
def test_damaged_progress_and_generator_tensors_are_one_line(ckpt, name, tensor, why):
    _rewrite(ckpt, tensors={name: tensor})
    with pytest.raises(VaelabError, match=why):
        load_checkpoint(ckpt)


def test_running_sums_of_an_objectives_extra_terms_load_whole(ckpt):
    _rewrite(ckpt, tensors={"progress.sums": torch.arange(7, dtype=torch.float32)})  # β-TCVAE's: 4 + mi, tc, dwkl
    assert torch.equal(load_checkpoint(ckpt).progress.sums, torch.arange(7, dtype=torch.float64))


def test_without_the_optimizer_its_state_is_neither_read_nor_checked(ckpt):
    _rewrite(ckpt, {"optimizer": "not json at all"})
    loaded = load_checkpoint(ckpt, with_optimizer=False)
    assert loaded.optimizer_state is None and loaded.image_shape == SHAPE and loaded.epoch == 2
    with pytest.raises(VaelabError, match="optimizer: not JSON"):
        load_checkpoint(ckpt)


def test_a_good_checkpoint_loads_typed(ckpt):
    loaded = load_checkpoint(ckpt)
    assert (
        loaded.image_shape == SHAPE and loaded.progress.seconds == 1.5 and loaded.progress.sums.dtype == torch.float64
    )
    assert sorted(loaded.optimizer_state["state"]) == list(range(len(loaded.optimizer_state["state"])))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=10,
)
progress_like = st.dictionaries(
    st.sampled_from(["epoch", "step", "batch", "seconds", "skipped", "images"]), json_values
)
config_like = st.builds(
    lambda section, key, value: {**CONFIG, section: {**CONFIG.get(section, {}), key: value}},
    st.sampled_from(["model", "train", "data", "objective"]),
    st.sampled_from(["latent_dim", "sample_grid", "epochs", "name", "beta", "classes", "x"]),
    json_values,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(["config", "image_shape", "progress", "optimizer", "format"]),
    value=st.text(max_size=20)
    | json_values.map(json.dumps)
    | progress_like.map(json.dumps)
    | config_like.map(json.dumps),
    with_optimizer=st.booleans(),
)
def test_any_metadata_loads_typed_or_fails_in_one_line(tiny_checkpoint, tmp_path, key, value, with_optimizer):
    path = tmp_path / "checkpoint.safetensors"
    shutil.copy(tiny_checkpoint, path)
    _rewrite(path, {key: value})
    try:
        loaded = load_checkpoint(path, with_optimizer=with_optimizer)
    except VaelabError as e:
        assert str(path) in str(e) and "\n" not in str(e), str(e)
        return
    assert all(type(v) is int and v >= 1 for v in loaded.image_shape) and len(loaded.image_shape) == 3
    p = loaded.progress
    assert all(type(v) is int and v >= 0 for v in (p.epoch, p.step, p.batch, p.skipped, p.images))
    assert isinstance(p.seconds, (int, float)) and p.seconds >= 0


# --------------------------------------------------------------------------- the commands


@pytest.fixture
def run(tiny_run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    capsys.readouterr()
    return copy


def _optimizer(run) -> dict:
    return json.loads(_metadata(run / "checkpoint.safetensors")["optimizer"])


def test_sample_needs_no_optimizer_state_but_resume_does(run, tmp_path, capsys):
    _rewrite(run / "checkpoint.safetensors", {"optimizer": '{"param_groups": 3}'})
    assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").stat().st_size > 0
    err = one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    assert "has damaged metadata: optimizer: param_groups is not" in err


@pytest.mark.parametrize(
    "damage, why",
    [
        (lambda opt: {**opt, "param_groups": [{**opt["param_groups"][0], "params": [0, 1]}]}, "parameter group"),
        (lambda opt: {**opt, "param_groups": opt["param_groups"] * 2}, "parameter groups"),
        (lambda opt: {**opt, "param_groups": [{**opt["param_groups"][0], "lr": "fast"}]}, "lr is 'fast'"),
        (lambda opt: {**opt, "param_groups": [{**opt["param_groups"][0], "betas": [0.9]}]}, "betas is (0.9,)"),
        (lambda opt: {**opt, "param_groups": [{**opt["param_groups"][0], "eps": 10**400}]}, "int too large"),
    ],
)
def test_an_optimizer_state_that_does_not_fit_is_one_line(run, capsys, damage, why):
    _rewrite(run / "checkpoint.safetensors", {"optimizer": json.dumps(damage(_optimizer(run)))})
    err = one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    assert "the checkpoint's optimizer state does not fit this model" in err and why in err, err


def test_an_optimizer_tensor_of_another_shape_is_one_line(run, capsys):
    _rewrite(run / "checkpoint.safetensors", tensors={"optimizer.0.exp_avg": torch.zeros(3, 3)})
    err = one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    assert "does not fit this model (exp_avg has shape (3, 3)" in err, err


def test_an_optimizer_state_missing_an_entry_is_one_line(run, capsys):
    _rewrite(run / "checkpoint.safetensors", drop=["optimizer.1.exp_avg"])
    err = one_line_error(capsys, ["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    assert (
        "damaged metadata: optimizer: parameter 1 has state ['exp_avg_sq', 'step'], parameter 0 has "
        "['exp_avg', 'exp_avg_sq', 'step']" in err
    ), err


def test_deeply_nested_config_is_one_line_for_sample_and_resume(run, capsys):
    _rewrite(run / "checkpoint.safetensors", {"config": _deep(100_000)})
    for argv in (
        ["sample", str(run)],
        ["train", "--resume", str(run), "--no-progress"],
        ["plot", str(run)],
        ["report", str(run), "--no-eval"],
    ):
        assert "config: not JSON (nested too deeply)" in one_line_error(capsys, argv)


def _cli(*argv: str) -> subprocess.CompletedProcess:
    """`vaelab ARGV` in a process of its own: a command that hangs fails the test after 60 s."""
    return subprocess.run(
        [sys.executable, "-m", "vaelab", *argv], capture_output=True, text=True, timeout=60, check=False
    )


def test_a_fifo_or_a_folder_as_checkpoint_is_refused_at_once(run, tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    (run / "checkpoint.safetensors").unlink()
    os.mkfifo(run / "checkpoint.safetensors")
    for argv, path in ((["sample", str(fifo)], fifo), (["evaluate", str(run)], run / "checkpoint.safetensors")):
        proc = _cli(*argv)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.splitlines() == [f"vaelab: error: {path} is a FIFO, not a checkpoint file"]
    (run / "checkpoint.safetensors").unlink()
    (run / "checkpoint.safetensors").mkdir()
    proc = _cli("sample", str(run))
    folder = run / "checkpoint.safetensors"
    assert proc.stderr.splitlines() == [f"vaelab: error: {folder} is a directory, not a checkpoint file"]


CLASSIFIER_FIFO = """
import os, sys, torch
from vaelab.data.imageset import ImageSet
from vaelab.errors import VaelabError
from vaelab.evaluation.classifier import load_or_train
images = ImageSet(torch.randint(0, 256, (8, 1, 8, 8), dtype=torch.uint8), torch.arange(8) % 2, ("a", "b"))
path = load_or_train("toy", images, images, cache_dir=sys.argv[1], epochs=1).path
path.unlink()
os.mkfifo(path)
try:
    load_or_train("toy", images, images, cache_dir=sys.argv[1], epochs=1)
except VaelabError as e:
    print(e)
"""


def test_a_fifo_as_cached_classifier_is_refused_at_once(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", CLASSIFIER_FIFO, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("is a FIFO, not a cached Fréchet classifier file"), proc.stdout
