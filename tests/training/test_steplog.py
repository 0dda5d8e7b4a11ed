"""RUN/steps.jsonl (the loss between epochs), its repair on resume, the slowdown hint, and a loop that does not
reach up into evaluation or viz."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest
import torch

import vaelab
from vaelab.training import loop, steplog
from vaelab.training.checkpoint import Progress, load_checkpoint
from vaelab.training.distributed import Dist
from vaelab.training.rundir import RunDir
from vaelab.training.runfiles import STEPS_FIELDS, read_steps
from vaelab.training.steplog import StepLog, slowdown, slowdown_hint

TINY = dict(dataset="shapes", image_size=16, limit=256, val_size=32, batch_size=8, progress=False)  # 32 steps/epoch


def _steps(run) -> list[dict]:
    return [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]


def test_steps_jsonl_has_a_line_per_window_that_adds_up_to_the_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "LOG_EVERY", 10)
    run = vaelab.train("mlp2", epochs=2, out=tmp_path / "run", log=lambda line: None, **TINY)
    lines = _steps(run.path)
    assert [(r["step"], r["epoch"]) for r in lines] == [
        (10, 1),
        (20, 1),
        (30, 1),
        (32, 1),
        (42, 2),
        (52, 2),
        (62, 2),
        (64, 2),
    ]
    assert all(set(r) == set(STEPS_FIELDS) | {"beta"} for r in lines)  # no extra terms: an elbo run
    assert RunDir(run.path).read_steps_checked() == (lines, [])
    for r in lines:
        assert r["loss"] == pytest.approx(r["recon"] + r["kl"])  # mlp2: beta 1
        assert r["kl"] >= 0 and r["images_per_s"] > 0
    # every step in exactly one window: the windows' means, weighted by their steps, are the epoch's
    for epoch, record in enumerate(run.metrics, 1):
        windows = [
            (r, r["step"] - prev["step"] if prev else r["step"] - (epoch - 1) * 32)
            for prev, r in zip([None, *lines], lines)
            if r["epoch"] == epoch
        ]
        mean = sum(r["loss"] * n for r, n in windows) / sum(n for _, n in windows)
        assert mean == pytest.approx(record["train_loss"], rel=1e-9)


def test_a_crash_then_resume_drops_the_lines_past_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "LOG_EVERY", 5)
    kw = dict(epochs=2, checkpoint_every=12, log=lambda line: None, **TINY)
    straight = _steps(vaelab.train("mlp2", out=tmp_path / "straight", **kw).path)

    real, calls = loop.train_step, {"n": 0}

    def crashing(*args, **kwargs):  # a kill during step 20: nothing after step 19 is written
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", crashing)
    with pytest.raises(RuntimeError, match="killed"):
        vaelab.train("mlp2", out=tmp_path / "crashed", **kw)
    run = tmp_path / "crashed"
    assert load_checkpoint(run).step == 12
    assert [r["step"] for r in _steps(run)] == [5, 10, 12, 15]  # 12: flushed before the checkpoint
    with open(run / "steps.jsonl", "a") as f:
        f.write('{"step": 16, "epoch": 1, "lo')  # and a line torn by the kill
    monkeypatch.setattr(loop, "train_step", real)

    said = []
    vaelab.resume(run, progress=False, log=said.append)
    assert any("steps.jsonl: dropped 1 damaged line (line 5: not JSON)" in line for line in said), said
    assert _losses(_steps(run)) == _losses(straight)  # step 15 once, from the resumed run: bit-identical


def _losses(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in records]


def test_the_steps_file_reader_leaves_out_damaged_lines(tmp_path):
    good = {"step": 5, "epoch": 1, "loss": 2.0, "recon": 1.5, "kl": 0.5, "images_per_s": 900.0}
    path = tmp_path / "steps.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps(good),
                json.dumps({**good, "step": 5}),
                json.dumps({**good, "kl": "x"}),
                json.dumps({**good, "step": 10, "loss": float("nan")}),
                "[]",
                "",
            ]
        )
    )
    records, problems = read_steps(path)
    assert [r["step"] for r in records] == [5, 10]
    assert [str(p) for p in problems] == [
        "line 2: step 5 does not follow step 5",
        "line 3: 'kl' is 'x', not a number",
        "line 5: a list, not an object",
    ]
    assert read_steps(tmp_path / "missing.jsonl") == ([], [])


def test_the_hint_rule():
    assert slowdown([50.0, 2050.0, 1900.0, 110.0]) == (2050.0, 110.0)
    assert slowdown([50.0, 2000.0, 501.0]) is None  # above a quarter of the reference
    assert slowdown([50.0, 2000.0]) is None  # nothing to compare yet
    assert slowdown([9000.0, 2000.0, 1000.0]) is None  # the first window (warm-up) is no reference
    assert slowdown([50.0, 2000.0, 900.0], fraction=0.5) == (2000.0, 900.0)
    assert slowdown_hint(2050.0, 110.0) == (
        "vaelab: training slowed from 2,050 to 110 images/s; is the machine busy? On a busy CPU, --threads 1 is "
        "often much faster (see docs/performance.md)."
    )


def test_the_hint_is_said_once_per_run(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(steplog, "time", types.SimpleNamespace(perf_counter=lambda: clock["now"]))
    written, said = [], []
    log = StepLog(written.append, said.append, Dist())
    p, sums = Progress(), torch.zeros(4, dtype=torch.float64)

    def window(seconds: float, steps: int = 10, batch: int = 100) -> None:
        p.step, p.images = p.step + steps, p.images + steps * batch
        sums.add_(torch.tensor([3.0, -3.0, 2.0, 1.0], dtype=torch.float64) * steps * batch)
        clock["now"] += seconds
        log.flush(1, p, sums)

    for _epoch in range(2):
        log.start_epoch(sums, p)
        for seconds in (5.0, 0.5, 0.5, 8.0, 8.0, 0.001):  # warm-up, 2,000 img/s, then 125
            window(seconds, steps=10 if seconds > 0.001 else 1)  # the last: too short to judge
    assert said == [slowdown_hint(2000.0, 125.0)]
    assert written[1] == {"step": 20, "epoch": 1, "loss": 3.0, "recon": 2.0, "kl": 1.0, "images_per_s": 2000.0}
    assert log.flush(1, p, sums) is None  # no step since the last line: no line


def test_an_objectives_extra_terms_follow_the_kl():
    written = []
    log = StepLog(written.append, lambda line: None, Dist(), extra=("mi", "tc", "dwkl"))
    p, sums = Progress(), torch.zeros(7, dtype=torch.float64)  # loss, elbo, recon, kl, mi, tc, dwkl
    log.restart(sums, p)
    p.step, p.images = 2, 32
    sums += torch.tensor([3.0, -3.0, 2.0, 1.0, 0.25, 0.5, 0.25], dtype=torch.float64) * 32
    line = log.flush(1, p, sums)
    assert list(line) == ["step", "epoch", "loss", "recon", "kl", "mi", "tc", "dwkl", "images_per_s"]
    assert (line["mi"], line["tc"], line["dwkl"]) == (0.25, 0.5, 0.25) and written == [line]


def test_the_loop_does_not_import_evaluation_or_viz():
    code = (
        "import importlib.util, sys, types\n"
        "pkg = types.ModuleType('vaelab')\n"
        "pkg.__path__ = list(importlib.util.find_spec('vaelab').submodule_search_locations)\n"
        "sys.modules['vaelab'] = pkg  # the package without its __init__, which imports everything\n"
        "import vaelab.training.loop\n"
        "print(sorted(m for m in sys.modules if m.startswith(('vaelab.evaluation', 'vaelab.viz'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
