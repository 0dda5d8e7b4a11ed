"""Run under torchrun with 2 ranks: train into argv[1], then write this process's thread names into argv[2].

After a data-parallel run the process group must be freed with its gloo
threads: a gloo thread still alive when the interpreter shuts down can
abort the process (see `vaelab.training.distributed._leave`).
"""

import os
import sys
from pathlib import Path

import vaelab

vaelab.train(
    "cvae2",
    dataset="shapes",
    image_size=32,
    limit=60,
    val_size=20,
    batch_size=12,
    epochs=1,
    device="cpu",
    precision="fp32",
    progress=False,
    out=sys.argv[1],
    log=lambda message: None,
)
names = sorted(Path(f"/proc/self/task/{tid}/comm").read_text().strip() for tid in os.listdir("/proc/self/task"))
(Path(sys.argv[2]) / f"threads-{os.environ['RANK']}.txt").write_text(" ".join(names))
