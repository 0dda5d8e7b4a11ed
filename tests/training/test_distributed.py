"""Data-parallel training: torchrun with 2 CPU ranks (gloo) against one process with the same global batch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vaelab
from vaelab.errors import VaelabError
from vaelab.models import noise
from vaelab.models.latent import DiagGaussian
from vaelab.training.batches import Batches
from vaelab.training.distributed import Dist, session

# Batch 15 over 2 ranks splits 8 + 7; 100 images end on a partial batch of 10 (5 + 5).
# fp32: in bf16 each rank's rows (8 and 7) round differently from the whole batch's; this checks DDP's arithmetic
ARGS = [
    "--preset",
    "cvae2",
    "--dataset",
    "shapes",
    "--image-size",
    "32",
    "--limit",
    "100",
    "--val-size",
    "30",
    "--batch-size",
    "15",
    "--device",
    "cpu",
    "--precision",
    "fp32",
    "--no-progress",
]
TIMING = {"seconds", "images_per_s"}
HERE = Path(__file__).parent


def _run(*args: str, ranks: int = 0) -> subprocess.CompletedProcess:
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}"] if ranks else []
    cmd = [sys.executable, *launch, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _metrics(run: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if k not in TIMING}
        for line in (run / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.mark.slow
def test_two_gloo_ranks_train_and_resume_like_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for run, ranks in ((one, 0), (two, 2)):
        first = _run("-m", "vaelab", "train", *ARGS, "--epochs", "1", "--out", str(run), ranks=ranks)
        assert first.returncode == 0, first.stderr
        then = _run("-m", "vaelab", "train", "--resume", str(run), "--epochs", "2", "--no-progress", ranks=ranks)
        assert then.returncode == 0, then.stderr
    assert "x 2 ranks" in first.stdout and first.stdout.count("epoch 1 ") == 1  # rank 0 alone reports

    a, b = vaelab.load(one).state_dict(), vaelab.load(two).state_dict()
    for k in a:  # every rank checks at each epoch's end that all hold the same weights (see below)
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    ma, mb = _metrics(one), _metrics(two)
    assert [m["step"] for m in mb] == [7, 14]
    for x, y in zip(ma, mb):
        for key, value in x.items():
            assert y[key] == (pytest.approx(value, rel=1e-5) if isinstance(value, float) else value), key
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


@pytest.mark.slow
def test_ranks_with_different_weights_are_caught_on_every_rank():
    out = _run(str(HERE / "ddp_drift.py"), ranks=2)
    assert out.returncode == 0, out.stderr
    assert sorted(re.findall(r"rank (\d) caught: the 2 ranks hold different weights", out.stdout)) == ["0", "1"]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="names threads from /proc")
def test_a_data_parallel_run_frees_its_process_group_and_threads(tmp_path):
    out = _run(str(HERE / "ddp_leaves.py"), str(tmp_path / "run"), str(tmp_path), ranks=2)
    assert out.returncode == 0, out.stderr
    for rank in (0, 1):
        names = (tmp_path / f"threads-{rank}.txt").read_text()
        assert "gloo" not in names, f"rank {rank} still runs {names}"


def test_rows_split_a_batch_into_contiguous_near_equal_parts():
    for n in range(0, 40):
        for world in (1, 2, 3, 8):
            parts = [Dist(rank, world).rows(n) for rank in range(world)]
            assert [p.start for p in parts] == [0] + [p.stop for p in parts[:-1]] and parts[-1].stop == n
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_step_noise_gives_each_rank_its_rows_of_the_global_draw():
    q = DiagGaussian(torch.zeros(7, 3), torch.zeros(7, 3))
    g = torch.Generator()
    with noise.step_noise(g, seed=5, step=11, rows=slice(0, 7), batch=7):
        whole, several = q.rsample(), q.rsample(4)  # (7, 3) and (4, 7, 3)
    for rows in (slice(0, 4), slice(4, 7)):
        part = DiagGaussian(torch.zeros(rows.stop - rows.start, 3), torch.zeros(rows.stop - rows.start, 3))
        with noise.step_noise(g, seed=5, step=11, rows=rows, batch=7):
            assert torch.equal(part.rsample(), whole[rows])
            assert torch.equal(part.rsample(4), several[:, rows])
    with noise.step_noise(g, seed=5, step=12, rows=slice(0, 7), batch=7):
        assert not torch.equal(q.rsample(), whole)  # another step, other noise
    torch.manual_seed(3)
    outside = q.rsample()
    torch.manual_seed(3)
    assert torch.equal(outside, torch.randn(7, 3))  # no step installed: the global generator, as usual
    with pytest.raises(ValueError, match="rows"), noise.step_noise(g, 0, 0, slice(0, 2), 7):
        q.rsample()


def test_batches_hand_each_rank_its_rows_of_the_same_global_batches():
    images = torch.randint(0, 256, (23, 1, 4, 4), dtype=torch.uint8)
    for dynamic in (False, True):
        whole = list(Batches(images, 6, shuffle=True, seed=2, dynamic_binarize=dynamic).epoch(3))
        shards = [
            list(Batches(images, 6, shuffle=True, seed=2, dynamic_binarize=dynamic, shard=Dist(rank, 2)).epoch(3))
            for rank in range(2)
        ]
        for i, batch in enumerate(whole):
            assert torch.equal(torch.cat([shards[0][i], shards[1][i]]), batch)


def test_batchnorm_is_synchronised_on_gpus_and_reported_on_the_cpu():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    said = []
    assert Dist(0, 1).sync_batchnorm(model, said.append) is model and not said
    assert Dist(0, 2).sync_batchnorm(model, said.append) is model
    assert len(said) == 1 and "SyncBatchNorm needs CUDA" in said[0]


def test_a_numbered_gpu_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(VaelabError, match="cuda:LOCAL_RANK"), session("cuda:1"):
        pass
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(VaelabError, match="does not fit"), session("cpu"):
        pass
