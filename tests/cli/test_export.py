"""`vaelab export --format onnx`: the ONNX files agree with PyTorch (onnxruntime, two batch sizes) for a seed
preset and a hierarchy; missing packages and bad output folders are one-line errors with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vaelab
from vaelab.cli import main
from vaelab.export import onnx as onnx_export

from clihelp import one_line_error

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

HVAE = dict(encoder="hvae", decoder="hvae", width=8, depth=1, latent_dim=2, groups=1, resolutions=(7, 1))


def _train(out, preset, data_root, **extra):
    vaelab.train(
        preset, limit=64, epochs=1, data_dir=data_root, out=out, progress=False, log=lambda line: None, **extra
    )
    return out


@pytest.mark.parametrize("preset, extra", [("cvae2", {}), ("cvae2", HVAE)], ids=["cvae2", "hvae"])
def test_the_onnx_files_agree_with_pytorch(tmp_path, data_root, capsys, preset, extra):
    run = _train(tmp_path / "run", preset, data_root, **extra)
    out = tmp_path / "onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    model = vaelab.load(run)
    assert len(model.group_shapes) == (2 if extra else 1)
    info = json.loads((out / "vaelab-export.json").read_text())
    assert info["image_shape"] == [1, 28, 28] and info["latent_dim"] == model.latent_dim
    assert info["groups"] == len(model.group_shapes) and info["preset"] == model.config.preset
    encoder = ort.InferenceSession(str(out / "encoder.onnx"))
    decoder = ort.InferenceSession(str(out / "decoder.onnx"))
    assert [i.name for i in encoder.get_inputs()] == ["images"]
    assert [o.name for o in encoder.get_outputs()] == ["mu", "logvar"]
    assert [i.name for i in decoder.get_inputs()] == ["z"] and [o.name for o in decoder.get_outputs()] == ["images"]
    g = torch.Generator().manual_seed(0)
    for batch in (1, 5):
        x = torch.rand(batch, 1, 28, 28, generator=g)
        z = torch.randn(batch, model.latent_dim, generator=g) * 2
        mu, logvar = encoder.run(None, {"images": x.numpy()})
        (images,) = decoder.run(None, {"z": z.numpy()})
        with torch.no_grad():
            q = model.encode(x)
            want = model.decode(z)
        np.testing.assert_allclose(mu, q.mu.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(logvar, q.logvar.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(images, want.numpy(), atol=1e-4, rtol=0)
        assert images.shape == (batch, 1, 28, 28)


@pytest.fixture(scope="module")
def tiny_mnist_run(tmp_path_factory, data_root):
    return _train(tmp_path_factory.mktemp("export") / "run", "mlp2", data_root)


def test_without_the_packages_export_names_the_extra(tiny_mnist_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(onnx_export.importlib.util, "find_spec", lambda name: None)
    err = one_line_error(capsys, ["export", str(tiny_mnist_run), "-o", str(tmp_path / "out")])
    assert "pip install 'vaelab[onnx]'" in err
    assert not (tmp_path / "out").exists()


def test_a_failing_export_writes_nothing(tiny_mnist_run, tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported op aten::thing")

    monkeypatch.setattr(torch.onnx, "export", broken)
    err = one_line_error(capsys, ["export", str(tiny_mnist_run), "-o", str(tmp_path / "out")])
    assert "cannot export the encoder to ONNX" in err and "aten::thing" in err
    assert not any((tmp_path / "out").iterdir())


def test_bad_runs_and_output_folders_are_refused(tiny_mnist_run, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert "not a folder" in one_line_error(capsys, ["export", str(tiny_mnist_run), "-o", str(a_file)])
    assert "nope" in one_line_error(capsys, ["export", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    assert "invalid choice" in one_line_error(capsys, ["export", str(tiny_mnist_run), "--format", "tf", "-o", "x"])
    assert a_file.read_text() == "x" and not (tmp_path / "o").exists()
