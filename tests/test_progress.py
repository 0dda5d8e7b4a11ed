"""Progress of long waits: a line every N seconds on standard error when it is not a terminal, never on stdout,
nothing with progress off; the commands and the API pass the switch down."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys

import torch

import vaelab
from vaelab import progress
from vaelab.cli import main
from vaelab.cli.main import build_parser
from vaelab.data.imageset import ImageSet
from vaelab.evaluation.classifier import load_or_train
from vaelab.progress import QUIET, ProgressBar, Reporter, duration

LINE = re.compile(r"vaelab: [^:]+(: [^:]+)?: [\d,]+/[\d,]+ \w+ \(\d+%\), \d+ (s|min)(, ~\d+ (s|min) left)?(, .+)?")


class Clock:
    """A stand-in for `time` in vaelab.progress: monotonic() is what the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_the_periodic_line_says_how_far_and_how_long(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress, "time", clock)
    out = io.StringIO()
    bar = Reporter("evaluating").bar(10_000, "IWAE k=100")
    bar._stream = out  # what sys.stderr would be
    clock.now += 10
    bar.update(500)  # before the interval: nothing
    assert out.getvalue() == ""
    clock.now += 25
    bar.update(700)
    assert out.getvalue() == "vaelab: evaluating: IWAE k=100: 1,200/10,000 images (12%), 35 s, ~4 min left\n"
    bar.set_note("loss 12.34")
    clock.now += progress.INTERVAL_S
    bar.update(0.4)  # fractions of a unit add up; what is shown is rounded
    assert out.getvalue().splitlines()[-1].endswith(", loss 12.34") and "1,200/10,000" in out.getvalue()


def test_lines_only_every_interval_and_never_when_disabled():
    out = io.StringIO()
    with ProgressBar(100, "ELBO", stream=out, interval=0) as bar:
        for _ in range(4):
            bar.update(25)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all(LINE.fullmatch(line) for line in lines), lines
    assert lines[-1].startswith("vaelab: ELBO: 100/100 images (100%)")

    out = io.StringIO()
    with ProgressBar(100, "ELBO", stream=out, interval=3600) as bar:  # a short wait prints nothing
        bar.update(100)
    with ProgressBar(100, "ELBO", stream=out, interval=0, enabled=False) as bar:
        bar.update(100)
    with QUIET.bar(100, "ELBO") as bar:
        bar._stream = out
        bar.update(100)
    assert out.getvalue() == ""


def test_a_total_not_known_and_the_durations():
    out = io.StringIO()
    ProgressBar(None, "reading", unit="files", stream=out, interval=0).update(3)
    assert re.fullmatch(r"vaelab: reading: 3 files, \d+ s\n", out.getvalue())
    assert [duration(s) for s in (0.2, 35, 99, 240, 5000, 7500)] == [
        "0 s",
        "35 s",
        "99 s",
        "4 min",
        "83 min",
        "2 h 05 min",
    ]


def test_evaluate_shows_each_pass_on_stderr_and_stops_with_progress_off(tiny_run, monkeypatch, capsys):
    monkeypatch.setattr(progress, "INTERVAL_S", 0.0)
    vaelab.evaluate(tiny_run, limit=64, iwae_k=3, frechet=False, write=False)
    out, err = capsys.readouterr()
    assert out == ""
    for what in ("ELBO", "IWAE k=3", "posterior statistics"):
        assert re.search(rf"^vaelab: evaluating: {what}: [\d,]+/64 images", err, re.MULTILINE), err
    assert all(LINE.fullmatch(line) for line in err.splitlines()), err

    vaelab.evaluate(tiny_run, limit=64, iwae_k=3, frechet=False, write=False, progress=False)
    assert capsys.readouterr() == ("", "")


def test_training_and_anomaly_show_progress_and_the_cli_turns_it_off(tiny_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "INTERVAL_S", 0.0)
    vaelab.train(
        "mlp2",
        dataset="shapes",
        image_size=16,
        limit=48,
        val_size=16,
        batch_size=16,
        epochs=1,
        out=tmp_path / "run",
        log=lambda line: None,
    )
    err = capsys.readouterr().err
    assert re.search(r"^vaelab: training epoch 1/1: 3/3 batches \(100%\)", err, re.MULTILINE), err

    vaelab.anomaly_scores(tiny_run, dataset="shapes", limit=40, score="iwae", k=2)
    assert re.search(r"^vaelab: scoring: IWAE k=2: 40/40 images", capsys.readouterr().err, re.MULTILINE)

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    assert main(["evaluate", str(run), "--limit", "32", "--iwae-k", "2", "--no-frechet", "--json"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("{") and "vaelab: evaluating: ELBO" in err  # the result alone on stdout
    assert main(["evaluate", str(run), "--limit", "32", "--iwae-k", "2", "--no-frechet", "--no-progress"]) == 0
    assert main(["anomaly", str(run), "--dataset", "shapes", "--limit", "32", "--no-progress"]) == 0
    assert "vaelab: " not in capsys.readouterr().err
    assert build_parser().parse_args(["report", str(run), "--no-progress"]).no_progress


def test_classifier_training_shows_progress(monkeypatch, tmp_path):
    monkeypatch.setattr(progress, "INTERVAL_S", 0.0)
    images = (torch.rand(64, 1, 16, 16) * 255).to(torch.uint8)
    data = ImageSet(images=images, labels=torch.arange(64) % 2, class_names=("a", "b"))
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    load_or_train("toy", data, data, cache_dir=tmp_path, epochs=2, batch_size=16, progress=Reporter("evaluating"))
    assert re.search(
        r"^vaelab: evaluating: training the Fréchet classifier: 8/8 batches \(100%\)", err.getvalue(), re.MULTILINE
    ), err.getvalue()


def test_progress_imports_nothing_of_vaelabs():
    code = (
        "import importlib.util, sys, types\n"
        "pkg = types.ModuleType('vaelab')\n"
        "pkg.__path__ = list(importlib.util.find_spec('vaelab').submodule_search_locations)\n"
        "sys.modules['vaelab'] = pkg  # the package without its __init__, which imports everything\n"
        "import vaelab.progress\n"
        "print(sorted(m for m in sys.modules if m.startswith('vaelab')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['vaelab', 'vaelab.progress']"
