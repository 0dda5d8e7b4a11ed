"""The benchmarks run and print their tables (figures themselves are not asserted: timings are not tests)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_train_benchmark_prints_a_row_per_case():
    out = subprocess.run([sys.executable, "-m", "benchmarks.train", "--cases", "mlp2:16", "cvae2:8",
                          "--steps", "2", "--repeats", "1"], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    lines = out.strip().splitlines()
    assert "fp32 matmul peak" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"mlp2:16", "cvae2:8"}
    assert float(rows["cvae2:8"][3]) == 32.7  # MFLOP per training image, counted (the 32.7)
