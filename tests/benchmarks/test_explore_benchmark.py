"""`benchmarks.explore` prints a row per case with finite, positive latencies (not asserted against the
targets: timings are not tests)."""

import math

import pytest
import torch

pytest.importorskip("starlette")

from benchmarks import explore  # noqa: E402
from vaelab import runtime  # noqa: E402


def test_a_row_per_case_with_median_and_p95(capsys, monkeypatch):
    monkeypatch.setattr(runtime, "_adaptive", runtime._adaptive)
    threads = torch.get_num_threads()
    try:
        assert explore.main(["--cases", "cvae2", "--requests", "3", "--warmup", "1", "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.strip().splitlines()
    assert "/api/decode" in lines[0] and lines[1].split()[:4] == ["case", "latent", "groups", "image"]
    row = lines[2].split()
    assert row[:4] == ["cvae2", "2", "1", "1x28x28"]
    median, p95 = float(row[4]), float(row[5])
    assert 0 < median <= p95 and math.isfinite(p95) and row[6] == "50"


def test_percentile_interpolates_between_ranks():
    assert explore.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert explore.percentile([10.0, 20.0], 95) == pytest.approx(19.5)
    assert explore.percentile([7.0], 95) == 7.0
