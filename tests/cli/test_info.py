"""`vaelab presets` and `vaelab datasets`."""

from vaelab.cli import main


def test_presets_lists_seed_and_parameter_counts(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, params in [
        ("mlp2", "404,244"),
        ("keras-conv2", "550,629"),
        ("cvae2", "69,989"),
        ("conv16", "228,193"),
        ("cifar128", "8,155,075"),
    ]:
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert params in line and "seed 00" in line
    for name in ("mnist-resnet", "mnist-hvae"):  # vaelab's own: counted from the built model
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert "vaelab's own" in line and " params " in line and "seed" not in line.split("params")[1][:40]


def test_presets_lists_epochs_and_batch_size(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name, schedule in [
        ("mlp2", "10 epochs, batch 64"),
        ("keras-conv2", "10 epochs, batch 256"),
        ("cvae2", "10 epochs, batch 32"),
        ("conv16", "30 epochs, batch 128"),
        ("cifar128", "100 epochs, batch 128"),
    ]:
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert schedule in line, line


def test_datasets_reports_presence(capsys, tmp_path, cifar_root):
    assert main(["datasets", "--data-dir", str(cifar_root)]) == 0
    rows = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines()}
    assert "present" in rows["cifar10"] and "missing" in rows["mnist"] and "no files to fetch" in rows["shapes"]
