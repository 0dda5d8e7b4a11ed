"""vaelab's own presets: they build on their data, folders default to folder-hvae, and data they do not fit
is refused in one line that names the fix."""

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.api import resolve_config
from vaelab.cli.main import main
from vaelab.data.catalog import image_shape
from vaelab.errors import VaelabError
from vaelab.models import build_model, count_parameters
from vaelab.presets import PRESETS

# What `vaelab presets` and docs/results.md print for them.
OWN_PARAMS = {
    "mnist-resnet": 166_372,
    "mnist-hvae": 308_528,
    "cifar-hvae": 439_616,
    "fashion-hvae": 338_688,
    "folder-hvae": 439_616,
    "shapes-vae": 690_517,
}


def test_own_presets_are_listed_as_vaelabs():
    own = {name for name in PRESETS.names() if not PRESETS[name].seed}
    assert own == set(OWN_PARAMS)


@pytest.mark.parametrize("name", sorted(OWN_PARAMS))
def test_own_preset_builds_on_its_data(name):
    cfg = PRESETS[name].config
    shape = image_shape(cfg.data.name, cfg.data.image_size, cfg.data.grayscale)
    model = build_model(cfg.model, cfg.objective, shape)
    assert count_parameters(model) == OWN_PARAMS[name]
    x = torch.rand(3, *shape)
    if cfg.data.binarize != "none" or cfg.model.likelihood == "bernoulli":
        x = (x > 0.5).float()
    else:
        x = torch.round(x * 255) / 255  # 8-bit pixel values
    terms = model(x)
    groups = len(model.group_shapes)
    assert groups == max(1, cfg.model.groups * len(cfg.model.resolutions)) if cfg.model.encoder == "hvae" else 1
    for value in terms.values():
        assert value.shape == (3,) and torch.isfinite(value).all()
    model.eval()
    assert model.sample(2, temperature=0.6).shape == (2, *shape)


def test_eight_bit_presets_keep_pixel_values():
    for name in ("cifar-hvae", "fashion-hvae", "folder-hvae"):
        cfg = PRESETS[name].config
        assert cfg.model.likelihood == "discretized-logistic-mixture" and cfg.data.binarize == "none"


def test_a_folder_defaults_to_folder_hvae_and_the_preset_needs_one(tmp_path):
    cfg = resolve_config(dataset=f"folder:{tmp_path}")
    assert cfg.preset == "folder-hvae" and cfg.data.name == f"folder:{tmp_path}" and cfg.data.image_size == 32
    assert resolve_config(dataset="mnist").preset == "cvae2"  # other data keeps the default preset
    assert resolve_config("conv16", dataset=f"folder:{tmp_path}").preset == "conv16"  # an explicit preset wins
    with pytest.raises(VaelabError, match="folder-hvae preset trains on your own images.*--dataset folder:PATH"):
        resolve_config("folder-hvae")


def test_binarising_colour_suggests_the_colour_hierarchies(tmp_path):
    with pytest.raises(VaelabError, match="--preset cifar-hvae"):
        resolve_config("mnist-hvae", dataset="cifar10")
    with pytest.raises(VaelabError, match="--preset folder-hvae"):
        resolve_config("cvae2", dataset=f"folder:{tmp_path}")


def _grey_folder(path, n=12, size=40):
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(path / f"{i}.png")
    return path


def test_a_preset_on_images_of_another_size_names_both_fixes(tmp_path, capsys):
    """fashion-hvae's 7x7 maps on 32-pixel images: one line, exit 2, no run folder; --image-size 28 or the
    suggested --resolutions then train."""
    photos = _grey_folder(tmp_path / "photos")
    common = ["train", "--preset", "fashion-hvae", "--dataset", f"folder:{photos}", "--grayscale", "--no-progress"]
    common += ["--epochs", "1", "--batch-size", "4", "--val-size", "2", "--width", "8"]
    out = tmp_path / "run"
    assert main([*common, "--image-size", "32", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "32x32" in err and "--image-size 28" in err and "--resolutions 8,1" in err
    assert not out.exists()
    assert main([*common, "--image-size", "28", "--out", str(out)]) == 0
    assert main([*common, "--image-size", "32", "--resolutions", "8,1", "--out", str(tmp_path / "run2")]) == 0


def test_an_eight_bit_preset_on_binarised_data_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "cifar-hvae", "--binarize", "dynamic", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "8-bit" in err and "--binarize none" in err
    assert not out.exists()
