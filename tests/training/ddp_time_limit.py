"""Run under torchrun with 2 ranks: train into argv[1] with a time limit, on clocks that disagree.

Each rank's loop clock moves only during training steps: rank 0's 5 s a step (6 steps, 0.5 min an
epoch), rank 1's a hundred times faster, so that on its own it would stop after the first epoch. Rank 0's
clock decides: every rank must stop after epoch 2 of a 1-minute limit.
"""

import os
import sys
from types import SimpleNamespace

import vaelab
from vaelab.training import loop

now, rate, real_step = [0.0], 5.0 if os.environ["RANK"] == "0" else 500.0, loop.train_step


def step(*args, **kwargs):
    now[0] += rate
    return real_step(*args, **kwargs)


loop.train_step = step
loop.time = SimpleNamespace(perf_counter=lambda: now[0])
vaelab.train(
    "mlp2",
    dataset="shapes",
    image_size=16,
    limit=96,
    val_size=32,
    batch_size=16,
    epochs=6,
    time_limit=1.0,
    sample_grid=4,
    device="cpu",
    progress=False,
    out=sys.argv[1],
)
