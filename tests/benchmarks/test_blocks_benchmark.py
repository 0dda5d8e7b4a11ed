"""`benchmarks.blocks` prints a row per (case, variant) with finite, positive figures (not asserted: timings
are not tests)."""

import contextlib
import dataclasses
import io
import json
import math

import pytest
import torch
from test_benchmarks_run import run

from benchmarks import blocks
from vaelab import runtime

TINY = ["--batch", "4", "--steps", "1", "--repeats", "1", "--warmup", "1", "--threads", "1", "--peak-size", "128"]


@pytest.fixture
def workers_in_this_process(monkeypatch):
    """Each row's worker run here rather than in a fresh process (3 s of imports each); the thread count and
    the runtime's state it sets are put back afterwards."""

    def in_this_process(module: str, args: list[str]) -> dict:
        assert module == "benchmarks.blocks"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert blocks.main(args) == 0
        return json.loads(out.getvalue().strip().splitlines()[-1])

    monkeypatch.setattr(blocks, "in_fresh_process", in_this_process)
    monkeypatch.setattr(runtime, "_adaptive", runtime._adaptive)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def rows_of(lines: list[str]) -> dict[tuple[str, str], list[str]]:
    """The table's rows by (case, variant), the star of `vaelab train`'s pick kept on the variant."""
    header = next(i for i, line in enumerate(lines) if line.startswith("case"))
    return {(r[0], r[1]): r for r in (line.split() for line in lines[header + 1 :]) if len(r) == 10}


def test_every_case_and_variant_gets_a_row_of_finite_positive_figures(workers_in_this_process, capsys):
    assert blocks.main(["--cases", "resnet-mnist:w8", "hvae-mnist:w8", *TINY]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "fp32" in lines[0] and "bf16" in lines[0] and "1 thread" in lines[0]
    rows = rows_of(lines)
    cases = ("resnet-mnist:w8:d2", "hvae-mnist:w8:d1")
    assert {(c, v.rstrip("*")) for c, v in rows} == {(c, v) for c in cases for v in blocks.VARIANTS}
    for (_, variant), r in rows.items():
        img_s, ms, vs, params, gflop, gflops, of_peak, peak_mb = r[2:]
        figures = [float(img_s), float(ms), float(vs.rstrip("x")), float(params.replace(",", "")), float(gflop)]
        figures += [float(gflops), float(of_peak.rstrip("%")), float(peak_mb)]
        assert all(math.isfinite(f) for f in figures) and all(f > 0 for f in figures[:5] + figures[7:]), r
        assert figures[5] >= 0 and figures[6] >= 0, r  # a tiny model's share of the peak may round to 0
        if variant == "fp32-nchw":
            assert vs == "1.00x"
    for case in cases:  # one model per case: the same parameters and FLOPs per step in every row, one starred
        assert len({(r[5], r[6]) for (c, _), r in rows.items() if c == case}) == 1
        assert sum(v.endswith("*") for c, v in rows if c == case) == 1


def test_cases_and_variants_parse_and_typos_are_refused():
    name, case = blocks.parse_case("hvae-mnist:w64")
    assert name == "hvae-mnist:w64:d1" and case == dataclasses.replace(blocks.CASES["hvae-mnist"], width=64)
    assert blocks.parse_case("resnet-mnist:d0:w16")[0] == "resnet-mnist:w16:d0"
    assert blocks.parse_variant("bf16-cl+compile") == ("bf16", True, True)
    for bad in ("resnet-svhn", "resnet-mnist:64", "resnet-mnist:w0"):
        with pytest.raises(SystemExit, match="bad case"):
            blocks.parse_case(bad)
    with pytest.raises(SystemExit, match="bad variant"):
        blocks.parse_variant("fp16-cl")


@pytest.mark.slow
def test_the_benchmark_runs_through_python_m_benchmarks_with_each_row_in_a_fresh_process():
    lines = run("benchmarks", "blocks", "--cases", "hvae-cifar:w16", "--variants", "fp32-nchw", "bf16-cl", *TINY)
    rows = rows_of(lines)
    assert {(c, v.rstrip("*")) for c, v in rows} == {
        ("hvae-cifar:w16:d2", "fp32-nchw"),
        ("hvae-cifar:w16:d2", "bf16-cl"),
    }
    assert all(float(r[2]) > 0 and float(r[9]) > 0 for r in rows.values())
