"""`vaelab compare`: saved evaluations side by side, the training curves in one picture, refusals in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import vaelab
from vaelab.cli import main
from vaelab.training.checkpoint import CHECKPOINT_NAME

TINY = dict(
    dataset="shapes",
    image_size=16,
    limit=64,
    val_size=32,
    batch_size=32,
    sample_grid=4,
    progress=False,
    log=lambda line: None,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two evaluated two-epoch runs on the same data, both in folders named `run` (their labels must differ)."""
    base = tmp_path_factory.mktemp("compare")
    a, b = base / "a" / "run", base / "b" / "run"
    vaelab.train("mlp2", out=a, epochs=2, **TINY)
    vaelab.train("mlp2", out=b, epochs=2, latent_dim=3, **TINY)
    for run in (a, b):
        vaelab.evaluate(run, iwae_k=4, frechet=False, limit=32, progress=False)
    return a, b


@pytest.fixture(scope="module")
def mnist_run(runs, data_root):
    out = runs[0].parent.parent / "mnist"
    vaelab.train("mlp2", out=out, epochs=1, data_dir=data_root, **{**TINY, "dataset": "mnist", "image_size": None})
    return out


def _eval(run) -> dict:
    return json.loads((run / "eval.json").read_text())


def _row(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(name + "  "))


def test_compare_shows_both_evaluations_and_draws_both_curves(runs, tmp_path, capsys, monkeypatch):
    from vaelab.viz import figures

    drawn = []
    real_save = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: drawn.append(fig) or real_save(fig, path))
    a, b = runs
    assert main(["compare", str(a), str(b), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["a/run", "b/run"]  # both folders are named run
    for name, key in (("ELBO", "elbo"), ("recon", "recon"), ("KL", "kl"), ("NLL (IWAE)", "nll_iwae")):
        row = _row(out, name)
        cells = [f"{_eval(r)[key]:.2f} ± {_eval(r)[f'{key}_se']:.2f}" for r in (a, b)]
        assert cells[0] in row and cells[1] in row and row.index(cells[0]) < row.index(cells[1]), row
    assert "2 of 2" in _row(out, "active units") and "3 of 3" in _row(out, "active units")
    assert "test, 32 images, seed 0, k 4" in _row(out, "evaluated on")
    assert _row(out, "epochs").split()[1:] == ["2", "2"]
    assert "note:" not in out  # the same settings: nothing to warn about
    assert (tmp_path / "out" / "compare.png").stat().st_size > 0
    assert out.splitlines()[-1] == f"wrote {tmp_path / 'out' / 'compare.png'}"
    (fig,) = drawn
    val_lines = [line.get_label() for line in fig.axes[0].get_lines() if "after the epoch" in line.get_label()]
    assert sorted(label.split(":")[0] for label in val_lines) == ["a/run", "b/run"]
    assert all(len(line.get_xdata()) == 2 for line in fig.axes[0].get_lines())  # two epochs each


def test_json_has_both_runs(runs, tmp_path, capsys):
    a, b = runs
    assert main(["compare", str(a), str(b), "--json", "-o", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["run"] for r in out["runs"]] == [str(a), str(b)]
    for r, run in zip(out["runs"], runs):
        assert r["evaluation"] == _eval(run)
        assert r["epochs"] == 2 and r["dataset"] == "shapes" and r["parameters"] > 0
        seconds = [json.loads(line)["seconds"] for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert r["training_minutes"] == pytest.approx(sum(seconds) / 60)
    assert out["different_settings"] == {}
    assert out["figure"] == str(tmp_path / "compare.png")


def test_different_evaluation_settings_are_a_footnote(runs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(runs[1], other)
    evaluation = {**_eval(other), "k": 9, "n": 16}
    (other / "eval.json").write_text(json.dumps(evaluation))
    assert main(["compare", str(runs[0]), str(other), "-o", str(tmp_path)]) == 0
    note = capsys.readouterr().out.splitlines()[-2]
    assert note.startswith("note: evaluated with different settings (n 32, 16; k 4, 9)"), note


def test_another_dataset_is_refused_unless_asked(runs, mnist_run, tmp_path, capsys):
    a, b = runs
    out_dir = tmp_path / "out"
    assert main(["compare", str(a), str(b), str(mnist_run), "-o", str(out_dir)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert "different data" in captured.err and "--any-data" in captured.err
    assert not out_dir.exists()

    assert main(["compare", str(a), str(b), str(mnist_run), "--any-data", "-o", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["a/run", "b/run", "mnist"]
    assert f"not evaluated (vaelab evaluate {mnist_run})" in _row(out, "evaluated on")
    assert _row(out, "ELBO").split()[-1] == "-"
    assert (out_dir / "compare.png").exists()


@pytest.mark.parametrize("case", ["missing", "not a run", "twice", "twice as checkpoint"])
def test_refusals_are_one_line_and_write_nothing(runs, tmp_path, capsys, case):
    a = runs[0]
    (tmp_path / "empty").mkdir()
    second = {
        "missing": tmp_path / "nowhere",
        "not a run": tmp_path / "empty",
        "twice": a,
        "twice as checkpoint": a / CHECKPOINT_NAME,
    }[case]
    assert main(["compare", str(a), str(second), "-o", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1, captured.err
    assert captured.err.startswith("vaelab: error: ")
    assert not (tmp_path / "out").exists()


def test_one_run_is_fine_and_none_is_a_usage_error(runs, tmp_path, capsys):
    assert main(["compare", str(runs[0]), "-o", str(tmp_path)]) == 0
    assert (tmp_path / "compare.png").exists()
    with pytest.raises(SystemExit) as e:
        main(["compare"])
    assert e.value.code == 2


def test_runs_in_different_units_are_drawn_in_nats():
    """One run in bits/dim (an 8-bit likelihood) and one in nats: both curves in nats, the values as logged."""
    from vaelab.config import EIGHT_BIT_LIKELIHOODS
    from vaelab.presets import PRESETS
    from vaelab.report.compare import RunFacts, compare_figure

    logistic = PRESETS.find("cifar-hvae").config
    bernoulli = PRESETS.find("mlp2").config
    assert logistic.model.likelihood in EIGHT_BIT_LIKELIHOODS and logistic.data.binarize == "none"
    record = {"epoch": 1, "seconds": 60.0, "val_elbo": -700.0, "train_elbo": -710.0, "val_split": "val"}

    def facts(config, label):
        return RunFacts(Path(label), label, config, (1, 28, 28), None, 1, [record], None, None)

    fig = compare_figure([facts(logistic, "hvae"), facts(bernoulli, "mlp")])
    assert "nats" in fig.axes[0].get_ylabel()
    assert {float(line.get_ydata()[0]) for line in fig.axes[0].get_lines()} == {700.0, 710.0}
    fig = compare_figure([facts(logistic, "one"), facts(logistic, "two")])
    assert "bits/dim" in fig.axes[0].get_ylabel()
