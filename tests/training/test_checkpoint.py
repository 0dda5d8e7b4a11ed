"""Checkpoints: one safetensors file, saved atomically, reloaded tensor for tensor."""

import json
import os

import pytest
import torch

from vaelab.config import apply_overrides
from vaelab.errors import VaelabError
from vaelab.models import build_model
from vaelab.presets import PRESETS
from vaelab.training.checkpoint import Progress, load_checkpoint, load_model_state, restore_rng, save_checkpoint
from vaelab.training.optim import build_optimizer
from vaelab.training.step import train_step

from fsfaults import fail_writes


def _trained(name="cifar128", shape=(3, 32, 32), optimizer="adam"):
    cfg = apply_overrides(PRESETS[name].config, {"train": {"optimizer": optimizer}})
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.objective, shape)
    opt = build_optimizer(model.parameters(), cfg.train)
    for _ in range(2):
        train_step(model, opt, torch.rand(4, *shape))
    return cfg, model, opt


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_round_trip_every_tensor(tmp_path, optimizer):
    cfg, model, opt = _trained(optimizer=optimizer)  # cifar128 has BatchNorm buffers too
    path = tmp_path / "checkpoint.safetensors"
    rng_before = torch.get_rng_state()
    save_checkpoint(
        path, config=cfg, image_shape=(3, 32, 32), model=model, optimizer=opt, progress=Progress(epoch=3, step=17)
    )

    ckpt = load_checkpoint(tmp_path)  # a run directory works as well as the file
    assert ckpt.config == cfg and ckpt.image_shape == (3, 32, 32) and (ckpt.epoch, ckpt.step) == (3, 17)
    assert ckpt.progress.sums.shape == (4,) and ckpt.progress.batch == 0

    fresh = build_model(cfg.model, cfg.objective, (3, 32, 32))
    load_model_state(fresh, ckpt)
    for (k, a), (k2, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k

    fresh_opt = build_optimizer(fresh.parameters(), cfg.train)
    fresh_opt.load_state_dict(ckpt.optimizer_state)
    a, b = opt.state_dict(), fresh_opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for idx in a["state"]:
        for key, value in a["state"][idx].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][idx][key])), (idx, key)

    torch.rand(10)  # move the RNG on, then restore it
    restore_rng(ckpt.rng_state)
    assert torch.equal(torch.get_rng_state(), rng_before)


def test_training_continues_identically_after_reload(tmp_path):
    cfg, model, opt = _trained("cvae2", (1, 28, 28))
    save_checkpoint(
        tmp_path / "c.safetensors",
        config=cfg,
        image_shape=(1, 28, 28),
        model=model,
        optimizer=opt,
        progress=Progress(epoch=1, step=2),
    )
    x = torch.rand(8, 1, 28, 28)
    ckpt = load_checkpoint(tmp_path / "c.safetensors")
    fresh = build_model(cfg.model, cfg.objective, (1, 28, 28))
    load_model_state(fresh, ckpt)
    fresh_opt = build_optimizer(fresh.parameters(), cfg.train)
    fresh_opt.load_state_dict(ckpt.optimizer_state)
    torch.manual_seed(5)
    train_step(model, opt, x)
    torch.manual_seed(5)
    train_step(fresh, fresh_opt, x)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    cfg, model, opt = _trained("mlp2", (1, 28, 28))
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(
        path, config=cfg, image_shape=(1, 28, 28), model=model, optimizer=opt, progress=Progress(epoch=1, step=1)
    )
    before = path.read_bytes()

    fail_writes(monkeypatch)  # the disk fills up half way through the write
    with pytest.raises(VaelabError, match="no space left on device"):
        save_checkpoint(
            path, config=cfg, image_shape=(1, 28, 28), model=model, optimizer=opt, progress=Progress(epoch=2, step=2)
        )
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["checkpoint.safetensors"]


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(VaelabError, match="not a vaelab checkpoint"):
        load_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(VaelabError, match="not a vaelab run"):
        load_checkpoint(tmp_path)
    with pytest.raises(VaelabError, match="no such run"):
        load_checkpoint(tmp_path / "missing")


def test_plain_safetensors_without_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "w.safetensors")
    with pytest.raises(VaelabError, match="without vaelab metadata"):
        load_checkpoint(tmp_path / "w.safetensors")


def test_checkpoint_of_another_model_is_refused(tmp_path):
    cfg, model, opt = _trained("mlp2", (1, 28, 28))
    save_checkpoint(
        tmp_path / "c.safetensors",
        config=cfg,
        image_shape=(1, 28, 28),
        model=model,
        optimizer=None,
        progress=Progress(epoch=1, step=1),
    )
    other = PRESETS["cvae2"].config
    with pytest.raises(VaelabError, match="does not fit this model"):
        load_model_state(
            build_model(other.model, other.objective, (1, 28, 28)), load_checkpoint(tmp_path / "c.safetensors")
        )


def test_metadata_is_plain_json(tmp_path):
    from safetensors import safe_open

    cfg, model, opt = _trained("mlp2", (1, 28, 28))
    save_checkpoint(
        tmp_path / "c.safetensors",
        config=cfg,
        image_shape=(1, 28, 28),
        model=model,
        optimizer=opt,
        progress=Progress(epoch=1, step=1),
    )
    with safe_open(str(tmp_path / "c.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(meta["config"])["preset"] == "mlp2"
    assert meta["format"] == "vaelab-checkpoint"
