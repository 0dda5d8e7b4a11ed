"""One self-contained checkpoint file per save, as safetensors: nothing in it is ever executed.

Tensors:  model.<name>            weights and buffers (state_dict)
          optimizer.<i>.<key>     the optimiser's per-parameter tensors
          rng.torch, rng.cuda.<i> random generator states
          progress.sums           running sums of the epoch in progress (mid-epoch saves)
Metadata (strings): format, version, config (JSON), image_shape,
          progress (JSON: where in the epoch the save was made), and the
          optimiser's non-tensor state (JSON).

Saving writes a temporary file in the same directory and renames it over the
old one, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .. import __version__
from ..config import RunConfig, from_dict, to_dict
from ..errors import VaelabError

FORMAT = "vaelab-checkpoint"
CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass
class Progress:
    """Where training is: enough to resume mid-epoch exactly where it stopped."""

    epoch: int = 0    # epochs finished
    step: int = 0     # optimiser steps taken, skipped ones included
    batch: int = 0    # batches done in the epoch in progress (0 at an epoch boundary)
    seconds: float = 0.0  # training time spent in the epoch in progress
    skipped: int = 0  # updates skipped by the numerical guards, in total
    images: int = 0   # images of the epoch in progress whose update was applied
    sums: torch.Tensor = field(default_factory=lambda: torch.zeros(4, dtype=torch.float64))
    # sums: loss, elbo, recon, kl summed over those images


@dataclass
class Checkpoint:
    """What a checkpoint holds, already split back into its parts."""

    config: RunConfig
    image_shape: tuple[int, int, int]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None
    rng_state: dict[str, torch.Tensor]
    version: str
    progress: Progress

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    @property
    def step(self) -> int:
        return self.progress.step


def save_checkpoint(path: str | Path, *, config: RunConfig, image_shape, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None, progress: Progress) -> None:
    """Write the checkpoint atomically (temp file + rename)."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors["progress.sums"] = progress.sums.detach().double().cpu()
    opt_meta: dict[str, Any] | None = None
    if optimizer is not None:
        state = optimizer.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for idx, per_param in state["state"].items():
            for key, value in per_param.items():
                if torch.is_tensor(value):
                    tensors[f"optimizer.{idx}.{key}"] = value.detach().contiguous().cpu()
                else:
                    scalars.setdefault(str(idx), {})[key] = value
        opt_meta = {"param_groups": state["param_groups"], "scalars": scalars,
                    "indices": [str(i) for i in state["state"]]}
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    metadata = {
        "format": FORMAT,
        "version": __version__,
        "config": json.dumps(to_dict(config)),
        "image_shape": json.dumps(list(image_shape)),
        "progress": json.dumps({k: v for k, v in asdict(progress).items() if k != "sums"}),
        "optimizer": json.dumps(opt_meta),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a checkpoint is an ordinary file
    try:
        save_file(tensors, tmp, metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def find_checkpoint(run: str | Path) -> Path:
    """A run directory or a checkpoint file -> the checkpoint file, or a clear error."""
    run = Path(run)
    path = run / CHECKPOINT_NAME if run.is_dir() else run
    if not path.exists():
        if run.is_dir():
            raise VaelabError(f"{run} is not a vaelab run: it has no {CHECKPOINT_NAME}")
        raise VaelabError(f"no such run or checkpoint: {run}")
    return path


def load_checkpoint(run: str | Path) -> Checkpoint:
    """Read a checkpoint safely (no unpickling); errors are one line."""
    path = find_checkpoint(run)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise VaelabError(f"{path} is not a vaelab checkpoint ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if metadata.get("format") != FORMAT:
        raise VaelabError(f"{path} is not a vaelab checkpoint (safetensors file without vaelab metadata)")
    try:
        config = from_dict(json.loads(metadata["config"]))
        image_shape = tuple(int(v) for v in json.loads(metadata["image_shape"]))
        opt_meta = json.loads(metadata["optimizer"])
        progress = (Progress(**json.loads(metadata["progress"])) if "progress" in metadata  # vaelab < 0.1.0 final
                    else Progress(epoch=int(metadata["epoch"]), step=int(metadata["step"])))
    except (KeyError, ValueError, TypeError) as e:
        raise VaelabError(f"{path} has damaged metadata ({e})") from None
    if "progress.sums" in tensors:
        progress.sums = tensors["progress.sums"]

    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    rng_state = {k[len("rng."):]: v for k, v in tensors.items() if k.startswith("rng.")}
    optimizer_state = None
    if opt_meta is not None:
        state: dict[int, dict[str, Any]] = {}
        for idx in opt_meta["indices"]:
            per_param = dict(opt_meta["scalars"].get(idx, {}))
            prefix = f"optimizer.{idx}."
            per_param.update({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            state[int(idx)] = per_param
        # JSON turned tuples such as Adam's betas into lists; give them back as PyTorch wrote them.
        groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
                  for g in opt_meta["param_groups"]]
        optimizer_state = {"state": state, "param_groups": groups}
    return Checkpoint(config, image_shape, model_state, optimizer_state, rng_state, metadata.get("version", "?"),
                      progress)


def load_model_state(model: torch.nn.Module, ckpt: Checkpoint, where: str = "checkpoint") -> None:
    """Load weights, with a one-line error when the checkpoint belongs to another model."""
    own = model.state_dict()
    missing = sorted(set(own) - set(ckpt.model_state))
    unexpected = sorted(set(ckpt.model_state) - set(own))
    wrong = sorted(k for k in set(own) & set(ckpt.model_state) if own[k].shape != ckpt.model_state[k].shape)
    if missing or unexpected or wrong:
        detail = (f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
                  else f"shape of {wrong[0]} is {tuple(ckpt.model_state[wrong[0]].shape)}, "
                       f"expected {tuple(own[wrong[0]].shape)}")
        raise VaelabError(f"{where} does not fit this model ({detail})")
    model.load_state_dict(ckpt.model_state)


def restore_rng(rng_state: dict[str, torch.Tensor]) -> None:
    if "torch" in rng_state:
        torch.set_rng_state(rng_state["torch"])
    cuda = [rng_state[k] for k in sorted((k for k in rng_state if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
