"""Data-parallel training under torchrun, with PyTorch's own DistributedDataParallel.

`torchrun --nproc-per-node N -m vaelab train ...` starts N copies of the
command. Each reads its place from the environment torchrun sets (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), joins the process group
(nccl on CUDA, gloo on the CPU) and trains on its rows of every global batch
(`--batch-size` is the global batch). Every rank computes the same things
from the same seed; only rank 0 writes files and prints. Without torchrun
nothing here does anything: `Dist()` is the single process.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from ..errors import VaelabError
from .device import resolve_device

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank `rank` of `world` (rank 0 writes)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, n: int) -> slice:
        """This rank's rows of a global batch of n images: contiguous, sizes differing by at most one."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks (a new tensor; `t` itself is untouched)."""
        out = t.clone()
        if self.enabled:
            dist.all_reduce(out)
        return out

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether `flag` is true on any rank."""
        if not self.enabled:
            return flag
        return bool(self.sum(torch.tensor([float(flag)], device=device)) > 0)

    def all(self, flag: bool, device: torch.device) -> bool:
        """Whether `flag` is true on every rank."""
        return not self.any(not flag, device)

    def from_main(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0 only and hand its result (or its VaelabError) to every rank."""
        if not self.enabled:
            return fn()
        box: list = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except VaelabError as e:
                box[0] = ("error", str(e))
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            raise VaelabError(value)
        return value

    def main_first(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0, then on the others (for work that fills a shared cache, like a download).

        If it fails on rank 0, every rank raises its error (none waits forever).
        """
        kept: list = []
        self.from_main(lambda: kept.append(fn()))  # only the outcome is sent, the result stays on rank 0
        return kept[0] if self.is_main else fn()

    def check_in_sync(self, model: torch.nn.Module) -> None:
        """Stop if the ranks' weights differ (they never should: DDP averages every gradient)."""
        if not self.enabled:
            return
        flat = torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])
        low, high = flat.clone(), flat.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        if not torch.equal(low, high):
            raise VaelabError(
                f"the {self.world} ranks hold different weights (largest gap "
                f"{(high - low).abs().max().item():.3g}); the run is not data-parallel any more"
            )

    def sync_batchnorm(self, model: torch.nn.Module, log: Callable[[str], None]) -> torch.nn.Module:
        """BatchNorm layers normalise over the global batch (SyncBatchNorm), as one process would.

        SyncBatchNorm runs on GPUs only; on the CPU each rank keeps normalising
        over its own rows, which changes the results slightly, and says so.
        Same parameters and state names either way, so checkpoints are interchangeable.
        """
        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if not (self.enabled and has_bn):
            return model
        if next(model.parameters()).device.type == "cuda":
            return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        log(
            f"note: SyncBatchNorm needs CUDA; on the CPU each of the {self.world} ranks normalises its "
            f"BatchNorm layers over its own part of the batch, so results differ slightly from one process"
        )
        return model

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module a training step calls: `model` itself, or a DDP wrapper around it."""
        if not self.enabled:
            return model
        device = next(model.parameters()).device
        # Weights with a channel dim of size 1 (cvae2's first and last layers) are channels-last with
        # either stride on that dim, and their gradients come back with the other one; DDP then copies
        # 288 numbers with a stride instead of a block, and warns.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


SINGLE = Dist()  # one process, no torchrun: the default wherever a `Dist` is optional


def from_env() -> Dist:
    """The place torchrun gave this process (a single process when it did not start it)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        raise VaelabError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them)") from None
    if world < 1 or not 0 <= rank < world:
        raise VaelabError(f"RANK {rank} does not fit WORLD_SIZE {world}")
    return Dist(rank, world, local_rank)


@contextlib.contextmanager
def session(device_name: str) -> Iterator[tuple[Dist, torch.device]]:
    """This process's place and training device; joins (and finally leaves) the process group under torchrun.

    Under torchrun, `auto` and `cuda` mean this process's GPU, cuda:LOCAL_RANK;
    a numbered cuda:N is refused, since every rank would pick the same one.
    """
    d = from_env()
    if not d.enabled:
        yield d, resolve_device(device_name)
        return
    if device_name.startswith("cuda:"):
        raise VaelabError(
            f"--device {device_name} under torchrun: every rank would use the same GPU; pass "
            f"--device cuda and each rank takes cuda:LOCAL_RANK"
        )
    device = resolve_device(device_name)
    if device.type == "cuda":
        if d.local_rank >= torch.cuda.device_count():
            raise VaelabError(
                f"local rank {d.local_rank} has no GPU ({torch.cuda.device_count()} visible); lower --nproc-per-node"
            )
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    joined = not dist.is_initialized()
    if joined:
        # before the group exists (see _leave); imported by name, since `import torch._dynamo` here would make
        # `torch` a local variable of this function and break the CUDA branch above
        importlib.import_module("torch._dynamo")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", rank=d.rank, world_size=d.world)
    try:
        yield d, device
        if joined:  # leave together: a rank tearing down gloo while its peer still writes could abort
            dist.barrier()
    finally:
        if joined:
            _leave()


def _leave() -> None:
    """Free the process group, which stops its threads, while the interpreter is still whole.

    gloo's worker threads free each finished collective's tensors, and freeing a
    tensor Python has seen takes the GIL. A thread that asks for it while the
    interpreter shuts down dies inside a destructor, and the process aborts
    ("terminate called without an active exception", SIGABRT; one 2-rank CPU
    training run in 20 to 60 did here). `destroy_process_group` frees the
    group and joins these threads only if nothing else holds it. The DDP
    wrapper goes when `fit` returns; `torch._dynamo`, which DDP imports,
    keeps references to a group that exists when it is first imported, hence
    its import before `init_process_group`.
    """
    dist.destroy_process_group()
