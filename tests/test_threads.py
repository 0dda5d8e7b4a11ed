"""CPU threads: --threads, OMP_NUM_THREADS, else one per core that other processes leave free."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vaelab import runtime
from vaelab.cli import main
from vaelab.config import RESUMABLE_CHANGES

from clihelp import one_line_error


@pytest.fixture
def auto(monkeypatch):
    """resolve_threads as on a 2-core machine with no OMP_NUM_THREADS; returns a setter for the others' load."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "_default_threads", 2)

    def others(load):
        monkeypatch.setattr(runtime, "other_cpu_load", lambda *a: load)

    return others


def test_the_users_choice_wins(auto):
    auto(5.0)
    assert runtime.resolve_threads(2) == (2, "--threads")


def test_omp_num_threads_is_a_choice(auto, monkeypatch):
    auto(5.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert runtime.resolve_threads(None) == (2, "OMP_NUM_THREADS")


@pytest.mark.parametrize("load, threads", [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (7.0, 1)])
def test_one_thread_per_core_left_free(auto, load, threads):
    auto(load)
    assert runtime.resolve_threads(None)[0] == threads


def test_no_proc_stat_keeps_one_per_core(auto):
    auto(None)
    assert runtime.resolve_threads(None) == (2, "one per core")


def test_other_processes_load_is_measured():
    runtime.other_cpu_load.cache_clear()
    try:
        idle = runtime.other_cpu_load(0.3)
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            runtime.other_cpu_load.cache_clear()
            busy = runtime.other_cpu_load(0.5)
        finally:
            spinner.kill()
            spinner.wait()
    finally:
        runtime.other_cpu_load.cache_clear()
    if idle is None:
        pytest.skip("no /proc/stat here")
    assert busy > 0.5  # a spinning process keeps (at least) about one core busy; our own time is not counted


def test_the_first_line_says_how_many_threads(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--preset",
                "mlp2",
                "--dataset",
                "shapes",
                "--image-size",
                "16",
                "--limit",
                "32",
                "--val-size",
                "16",
                "--epochs",
                "1",
                "--threads",
                "1",
                "--out",
                str(tmp_path / "run"),
                "--no-progress",
            ]
        )
        == 0
    )
    first = capsys.readouterr().out.splitlines()[0]
    assert "1 thread (--threads)" in first
    assert "threads = 1" in (tmp_path / "run" / "config.toml").read_text()


def test_threads_are_checked_and_may_change_on_resume(capsys):
    assert "--threads: must be >= 1" in one_line_error(capsys, ["train", "--threads", "0"])
    assert ("train", "threads") in RESUMABLE_CHANGES


def test_a_run_that_slows_down_lowers_threads_it_chose_itself(auto, monkeypatch):
    import functools

    import torch

    from vaelab.training.steplog import slowdown_hint

    before = torch.get_num_threads()
    monkeypatch.setattr(runtime, "other_cpu_load", functools.cache(lambda *a: 1.0))  # one core taken by others
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(runtime, "_adaptive", False)  # --threads or OMP_NUM_THREADS: the user's count stays
        assert runtime.fewer_threads_if_busy() is None and torch.get_num_threads() == 2
        monkeypatch.setattr(runtime, "_adaptive", True)
        change = runtime.fewer_threads_if_busy()
        assert change == "1 thread (other processes keep 1.0 of 2 cores busy)" and torch.get_num_threads() == 1
        assert runtime.fewer_threads_if_busy() is None  # already there
        assert "now training with 1 thread (other processes" in slowdown_hint(2000.0, 300.0, change)
    finally:
        torch.set_num_threads(before)


def test_threads_come_back_when_the_other_work_is_gone(auto, monkeypatch):
    """A run lowered to 1 thread by a slowdown gets its 2 threads back at the next epoch's start once the other
    processes are gone, says so, and may be lowered again later."""
    import functools

    import torch

    from vaelab.training.checkpoint import Progress
    from vaelab.training.distributed import Dist
    from vaelab.training.steplog import StepLog

    before = torch.get_num_threads()
    load = {"others": 1.0}
    monkeypatch.setattr(runtime, "other_cpu_load", functools.cache(lambda *a: load["others"]))
    said = []
    log = StepLog(None, said.append, Dist())
    try:
        torch.set_num_threads(2)
        monkeypatch.setattr(runtime, "_adaptive", True)
        assert runtime.fewer_threads_if_busy() is not None and torch.get_num_threads() == 1
        log.hinted = True  # as after the slowdown hint
        log.start_epoch(torch.zeros(4, dtype=torch.float64), Progress())
        assert torch.get_num_threads() == 1 and said == []  # the other work is still there
        load["others"] = 0.0
        log.start_epoch(torch.zeros(4, dtype=torch.float64), Progress())
        assert torch.get_num_threads() == 2 and not log.hinted
        assert said == ["vaelab: the CPU is free again; now training with 2 threads (one per core: the CPU is idle)."]
        log.start_epoch(torch.zeros(4, dtype=torch.float64), Progress())
        assert len(said) == 1  # at the full count nothing is looked at or said
        monkeypatch.setattr(runtime, "_adaptive", False)  # the user's count is never raised either
        torch.set_num_threads(1)
        assert runtime.more_threads_if_idle() is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_prepare_device_says_whether_it_chose(auto, monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        auto(0.0)
        runtime.prepare_device(torch.device("cpu"), None)
        assert runtime._adaptive
        runtime.prepare_device(torch.device("cpu"), 1)
        assert not runtime._adaptive
    finally:
        torch.set_num_threads(before)
