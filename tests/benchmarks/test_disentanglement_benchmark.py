"""The disentanglement comparison runs end to end on tiny runs, resumes, and tabulates its seeds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = "--limit 128 --image-size 16 --batch-size 32"


def run(runs: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "benchmarks.disentanglement", "--runs", str(runs), "--epochs", "1"]
    cmd += ["--disentanglement-n", "40", "--dci-predictor", "logistic", *extra]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=os.environ)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


@pytest.mark.slow
def test_rows_and_seeds_make_one_table(tmp_path):
    lines = run(tmp_path, "--rows", "beta-vae-1,btcvae-6", "--seeds", "0,1", "--train-args", TINY)
    table = json.loads((tmp_path / "table.json").read_text())["rows"]
    assert list(table) == ["beta-vae-1", "btcvae-6"]
    for name, row in table.items():
        run_dirs = [tmp_path / f"{name}-s{seed}" for seed in (0, 1)]
        saved = [json.loads((d / "disentanglement-eval.json").read_text()) for d in run_dirs]
        assert row["mig"]["values"] == [s["mig"] for s in saved]
        assert row["elbo"]["mean"] == pytest.approx((saved[0]["elbo"] + saved[1]["elbo"]) / 2)
        assert row["mig"]["min"] <= row["mig"]["mean"] <= row["mig"]["max"]
    assert 'name = "btcvae"' in (tmp_path / "btcvae-6-s1" / "config.toml").read_text()
    assert "seed = 1" in (tmp_path / "btcvae-6-s1" / "config.toml").read_text()
    assert lines[-1].startswith("| β-TCVAE, β = 6 | ") and (tmp_path / "table.md").exists()

    # a second call trains and evaluates nothing again: the table comes from the saved runs
    again = run(tmp_path, "--rows", "beta-vae-1,btcvae-6", "--seeds", "0,1", "--train-args", TINY)
    assert not [line for line in again if line.lstrip().startswith("$")]
    assert again[-2:] == lines[-2:]


def test_an_unknown_row_is_refused(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.disentanglement", "--runs", str(tmp_path), "--rows", "beta-vae-9"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and "unknown row 'beta-vae-9'" in out.stderr
