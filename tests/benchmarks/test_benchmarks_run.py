"""The benchmarks run and print their tables (figures themselves are not asserted: timings are not tests)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict | None = None) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()


@pytest.mark.slow
def test_train_benchmark_prints_a_row_per_case():
    lines = run(
        "benchmarks.train", "--cases", "mlp2:16", "cvae2:8:bf16", "cvae2:8:nchw", "--steps", "2", "--repeats", "1"
    )
    assert "fp32 matmul peak" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert set(rows) == {"mlp2:16:fp32", "cvae2:8:bf16", "cvae2:8:fp32:nchw"}
    # MFLOP per training image, counted (the 32.7), whatever kernel computes it
    assert float(rows["cvae2:8:bf16"][3]) == float(rows["cvae2:8:fp32:nchw"][3]) == 32.7
    assert lines[5].startswith("fastest cvae2 case:")


@pytest.mark.skipif(
    not any(shutil.which(cxx) for cxx in ("g++", "clang++", "c++")),
    reason="torch.compile on the CPU needs a C++ compiler",
)
@pytest.mark.slow
def test_a_compile_case_reports_its_first_step_apart():
    lines = run("benchmarks.train", "--cases", "cvae2:4:compile", "--steps", "2", "--repeats", "1")
    assert lines[2].split()[0] == "cvae2:4:fp32:compile"
    first = next(line for line in lines if line.startswith("cvae2:4:fp32:compile: first step"))
    assert float(first.split()[3]) > 0


def test_case_names_parse_into_preset_batch_precision_and_flags():
    from benchmarks.train import parse_case

    assert parse_case("cvae2") == ("cvae2", None, "fp32", set())
    assert parse_case("cvae2:128:bf16:nchw:compile") == ("cvae2", 128, "bf16", {"nchw", "compile"})
    assert parse_case("conv16:auto") == ("conv16", None, "auto", set())


def test_a_mistyped_case_is_refused_before_anything_runs():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", "--cases", "cvae2:fp16"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "bad case 'cvae2:fp16'" in out.stderr


@pytest.mark.slow
def test_evaluate_benchmark_counts_iwae_as_k_decoder_passes():
    lines = run("benchmarks.evaluate", "--cases", "elbo", "iwae:20:64", "--images", "4", "--repeats", "1")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert set(rows) == {"elbo", "iwae:20:64"}
    elbo_mflop, iwae_mflop = float(rows["elbo"][5]), float(rows["iwae:20:64"][5])
    assert 15 < iwae_mflop / elbo_mflop < 25  # K=20 decodes per image against one


@pytest.mark.slow
def test_data_and_scaling_benchmarks_run_without_real_data():
    lines = run("benchmarks.data", "--batch", "64", "--epochs", "1", env={"VAELAB_DATA_DIR": ""})
    assert "random" in lines[0] and len(lines) == 4
    lines = run("benchmarks.scaling", "--k", "4", "8", "--repeats", "1", env={"VAELAB_DATA_DIR": ""})
    assert lines[0].startswith("training: skipped") and "size x2.00 -> time x" in lines[-1]


@pytest.mark.slow
def test_time_to_quality_stops_at_the_target(data_root):
    lines = run(
        "benchmarks.time_to_quality",
        "--target",
        "-500",
        "--limit",
        "2000",
        "--max-epochs",
        "2",
        "--data-dir",
        str(data_root),
    )
    assert lines[-1].startswith("reached") and "after 1 epochs" in lines[-1]


@pytest.mark.slow
def test_threads_benchmark_prints_a_row_per_case_load_and_setting():
    lines = run(
        "benchmarks.threads",
        "--cases",
        "mlp2:16",
        "--threads",
        "1",
        "auto",
        "--load",
        "0",
        "1",
        "--steps",
        "2",
        "--repeats",
        "1",
    )
    rows = [line.split() for line in lines[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("mlp2:16", "0", "1"),
        ("mlp2:16", "0", "auto"),
        ("mlp2:16", "1", "1"),
        ("mlp2:16", "1", "auto"),
    ]
    assert rows[0][4] == "1.00x" and all(float(r[3]) > 0 for r in rows)
