"""`--init-from RUN`: a new run starts from another run's weights (its moving average when it kept one)."""

from __future__ import annotations

import torch

import vaelab
from vaelab.cli import main
from vaelab.training.checkpoint import load_checkpoint

from clihelp import one_line_error

TINY = dict(
    dataset="shapes",
    image_size=16,
    latent_dim=2,
    limit=64,
    val_size=32,
    batch_size=32,
    sample_grid=4,
    progress=False,
    log=lambda line: None,
)


def _weights(run) -> dict[str, torch.Tensor]:
    return load_checkpoint(run, with_optimizer=False).model_state


def test_a_new_run_starts_from_the_source_weights(tiny_run, tmp_path):
    lines = []
    # a learning rate so small that one epoch cannot move the weights measurably: they are the source's
    run = vaelab.train(
        "mlp2", out=tmp_path / "tuned", epochs=1, lr=1e-12, init_from=str(tiny_run), **{**TINY, "log": lines.append}
    )
    source, tuned = _weights(tiny_run), _weights(run.path)
    for name, value in source.items():
        torch.testing.assert_close(tuned[name], value, atol=1e-6, rtol=0, msg=name)
    assert f"starting from the weights of {tiny_run.resolve()}" in lines
    assert f'init_from = "{tiny_run.resolve()}"' in (run.path / "config.toml").read_text()
    fresh = _weights(vaelab.train("mlp2", out=tmp_path / "fresh", epochs=1, lr=1e-12, seed=1, **TINY).path)
    assert not torch.allclose(fresh["encoder.1.weight"], source["encoder.1.weight"])  # the check can fail


def test_the_source_moving_average_is_taken(tmp_path):
    source = vaelab.train("mlp2", out=tmp_path / "ema", epochs=1, ema=0.5, **TINY)
    averaged = load_checkpoint(source.path, with_optimizer=False).ema_state
    run = vaelab.train("mlp2", out=tmp_path / "tuned", epochs=1, lr=1e-12, init_from=str(source.path), **TINY)
    tuned = _weights(run.path)
    for name, value in averaged.items():
        torch.testing.assert_close(tuned[name], value, atol=1e-6, rtol=0, msg=name)


def test_a_source_that_does_not_fit_is_one_line_and_no_run_folder(tiny_run, tmp_path, capsys):
    out = tmp_path / "run"
    err = one_line_error(
        capsys,
        [
            "train",
            "--preset",
            "mlp2",
            "--dataset",
            "shapes",
            "--image-size",
            "16",
            "--latent-dim",
            "3",
            "--init-from",
            str(tiny_run),
            "--out",
            str(out),
        ],
    )
    assert "--init-from" in err and "does not fit this model" in err
    assert not out.exists()
    err = one_line_error(capsys, ["train", "--init-from", str(tmp_path / "nowhere"), "--out", str(out)])
    assert "no such run or checkpoint" in err and not out.exists()


def test_resume_cannot_change_it(tiny_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    err = one_line_error(capsys, ["train", "--resume", str(run), "--init-from", str(tiny_run)])
    assert "train.init_from" in err
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
