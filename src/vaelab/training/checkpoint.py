"""One self-contained checkpoint file per save, as safetensors: nothing in it is ever executed.

Tensors:  model.<name>            weights and buffers (state_dict)
          optimizer.<i>.<key>     the optimiser's per-parameter tensors
          auxiliary_optimizer.<i>.<key>  the same of the objective's own optimiser (FactorVAE's discriminator)
          ema.<name>              the moving average of each parameter (runs with train.ema)
          rng.torch, rng.cuda.<i> random generator states
          progress.sums           running sums of the epoch in progress (mid-epoch saves): loss, elbo,
                                  recon, kl, then the objective's `extra_terms` (4 before vaelab had them)
Metadata (strings): format, version, config (JSON), image_shape,
          progress (JSON: where in the epoch the save was made), and the
          optimisers' non-tensor state (JSON: optimizer, auxiliary_optimizer).

Saving writes a temporary file in the same directory and renames it over the
old one (`vaelab.files.write_bytes`), so a crash mid-write leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import reprlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ..config import RunConfig, from_dict, to_dict
from ..errors import VaelabError
from ..files import check_readable_file, write_bytes
from ..version import __version__
from .runfiles import is_count, kind_of, parse_json

FORMAT = "vaelab-checkpoint"
CHECKPOINT_NAME = "checkpoint.safetensors"


@dataclass
class Progress:
    """Where training is: enough to resume mid-epoch exactly where it stopped."""

    epoch: int = 0  # epochs finished
    step: int = 0  # optimiser steps taken, skipped ones included
    batch: int = 0  # batches done in the epoch in progress (0 at an epoch boundary)
    seconds: float = 0.0  # training time spent in the epoch in progress
    skipped: int = 0  # updates skipped by the numerical guards, in total
    images: int = 0  # images of the epoch in progress whose update was applied
    sums: torch.Tensor = field(default_factory=lambda: torch.zeros(4, dtype=torch.float64))
    # sums: loss, elbo, recon, kl, then the objective's `extra_terms` (the loop widens these), over those images


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
    ema_state: dict[str, torch.Tensor] = field(default_factory=dict)  # {parameter name: average}, if kept
    auxiliary_optimizer_state: dict[str, Any] | None = None  # the objective's own optimiser's, if it has one

    @property
    def epoch(self) -> int:
        return self.progress.epoch

    @property
    def step(self) -> int:
        return self.progress.step


def save_checkpoint(
    path: str | Path,
    *,
    config: RunConfig,
    image_shape,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    progress: Progress,
    ema: dict[str, torch.Tensor] | None = None,
    auxiliary_optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Write the checkpoint atomically (temp file + rename); `ema`: {parameter name: average} (`EMA.state_dict`);
    `auxiliary_optimizer`: the objective's own (FactorVAE's discriminator's), beside the run's optimiser."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v.detach().contiguous().cpu() for k, v in (ema or {}).items()}
    tensors["progress.sums"] = progress.sums.detach().double().cpu()
    opt_meta = _optimizer_entries(optimizer, "optimizer", tensors)
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
    if auxiliary_optimizer is not None:
        metadata["auxiliary_optimizer"] = json.dumps(
            _optimizer_entries(auxiliary_optimizer, "auxiliary_optimizer", tensors)
        )
    write_bytes(path, save(tensors, metadata=metadata), durable=True)


def _optimizer_entries(
    optimizer: torch.optim.Optimizer | None, prefix: str, tensors: dict[str, torch.Tensor]
) -> dict[str, Any] | None:
    """An optimiser's state: its per-parameter tensors added to `tensors` as `<prefix>.<i>.<key>`, the rest
    returned for the metadata (JSON); None for no optimiser."""
    if optimizer is None:
        return None
    state = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in state["state"].items():
        for key, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return {"param_groups": state["param_groups"], "scalars": scalars, "indices": [str(i) for i in state["state"]]}


def find_checkpoint(run: str | Path) -> Path:
    """A run directory or a checkpoint file -> the checkpoint file, or a clear error."""
    run = Path(run)
    path = run / CHECKPOINT_NAME if run.is_dir() else run
    if not path.exists():
        if run.is_dir():
            raise VaelabError(f"{run} is not a vaelab run: it has no {CHECKPOINT_NAME}")
        raise VaelabError(f"no such run or checkpoint: {run}")
    check_readable_file(path, "checkpoint")  # a FIFO or a device would block the reader forever
    return path


def load_checkpoint(run: str | Path, *, with_optimizer: bool = True) -> Checkpoint:
    """Read a checkpoint safely (no unpickling), its metadata checked once here; errors are one line.

    `with_optimizer=False` (enough to use the model) neither reads nor checks
    the optimiser's state: `optimizer_state` is then None.
    """
    path = find_checkpoint(run)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {
                k: f.get_tensor(k)
                for k in f.keys()
                if with_optimizer or not k.startswith(("optimizer.", "auxiliary_optimizer."))
            }
    except (SafetensorError, OSError, ValueError) as e:
        raise VaelabError(f"{path} is not a vaelab checkpoint ({_why(e)})") from None
    if metadata.get("format") != FORMAT:
        raise VaelabError(f"{path} is not a vaelab checkpoint (safetensors file without vaelab metadata)")

    def checked(what: str, parse: Callable[[], Any]) -> Any:
        try:
            return parse()
        except (VaelabError, KeyError, ValueError, TypeError, OverflowError, RecursionError) as e:
            raise VaelabError(f"{path} has damaged metadata: {what}: {_why(e)}") from None

    config = checked("config", lambda: _config(_json(metadata, "config")))
    image_shape = checked("image_shape", lambda: _image_shape(_json(metadata, "image_shape")))
    progress = checked("progress", lambda: _progress(metadata, tensors.get("progress.sums")))
    rng_state = checked("rng", lambda: _rng_state(tensors))
    optimizer_state = checked("optimizer", lambda: _optimizer_state(metadata, tensors)) if with_optimizer else None
    auxiliary_state = (
        checked("auxiliary_optimizer", lambda: _optimizer_state(metadata, tensors, "auxiliary_optimizer"))
        if with_optimizer and "auxiliary_optimizer" in metadata
        else None
    )
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    ema_state = checked("ema", lambda: _ema_state(tensors, model_state, config))
    return Checkpoint(
        config,
        image_shape,
        model_state,
        optimizer_state,
        rng_state,
        str(metadata.get("version", "?")),
        progress,
        ema_state,
        auxiliary_state,
    )


# --------------------------------------------------------------------------- the metadata's schema
# Each raises ValueError (or what `from_dict` raises) saying what is wrong; `load_checkpoint` names the file.

MAX_SIDE = 4096  # pixels: an image side beyond this is damage, not data


def _json(metadata: dict[str, str], key: str) -> Any:
    if key not in metadata:
        raise ValueError("missing")
    return parse_json(metadata[key])


def _config(values: Any) -> RunConfig:
    if not isinstance(values, dict):
        raise TypeError(f"{kind_of(values)}, not an object")
    return from_dict(values)


def _image_shape(values: Any) -> tuple[int, int, int]:
    if not (isinstance(values, list) and len(values) == 3 and all(is_count(v, 1) for v in values)):
        raise ValueError(f"{reprlib.repr(values)} is not [channels, height, width] in whole numbers >= 1")
    c, h, w = values
    if c > 4 or h > MAX_SIDE or w > MAX_SIDE:
        raise ValueError(f"{values} is out of range (1 to 4 channels, sides up to {MAX_SIDE})")
    return c, h, w


def _progress(metadata: dict[str, str], sums: torch.Tensor | None) -> Progress:
    if "progress" in metadata:
        values = _json(metadata, "progress")
        if not isinstance(values, dict):
            raise TypeError(f"{kind_of(values)}, not an object")
    else:  # vaelab < 0.1.0 final: epoch and step as entries of their own
        values = {key: _json(metadata, key) for key in ("epoch", "step")}
    names = {f.name for f in fields(Progress)} - {"sums"}
    if values.keys() - names:
        raise ValueError(f"unknown key {min(values.keys() - names)!r}")
    for key, value in values.items():
        if key == "seconds":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"seconds is {reprlib.repr(value)}, not a number >= 0")
            values[key] = float(value)
        elif not is_count(value):
            raise ValueError(f"{key} is {reprlib.repr(value)}, not a whole number >= 0")
    progress = Progress(**values)
    if sums is not None:
        if sums.dim() != 1 or sums.numel() < 4 or not sums.is_floating_point():  # how many: the loop checks
            raise ValueError(f"progress.sums holds {sums.numel()} {sums.dtype} values, not a row of 4 or more floats")
        progress.sums = sums.double()
    return progress


def _rng_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    rng = {k[len("rng.") :]: v for k, v in tensors.items() if k.startswith("rng.")}
    for name, state in rng.items():
        if name != "torch" and not (name.startswith("cuda.") and name[5:].isascii() and name[5:].isdigit()):
            raise ValueError(f"unknown generator {name!r}")
        size = torch.get_rng_state().shape if name == "torch" else state.shape
        if state.dtype != torch.uint8 or state.dim() != 1 or state.shape != size:
            raise ValueError(f"rng.{name} is not a generator state ({state.dtype}, shape {tuple(state.shape)})")
    return rng


def _ema_state(
    tensors: dict[str, torch.Tensor], model_state: dict[str, torch.Tensor], config: RunConfig
) -> dict[str, torch.Tensor]:
    """The `ema.<name>` tensors: present exactly when the config keeps an EMA, each a float tensor shaped
    like the model's tensor of that name (that the model has it is `load_ema_state`'s check)."""
    ema = {k[len("ema.") :]: v for k, v in tensors.items() if k.startswith("ema.")}
    if config.train.ema is None and ema:
        raise ValueError("ema tensors in a run without train.ema")
    if config.train.ema is not None and not ema:
        raise ValueError(f"train.ema is {config.train.ema} but the checkpoint holds no ema tensors")
    for name, value in ema.items():
        own = model_state.get(name)
        if own is None or not value.is_floating_point() or value.shape != own.shape:
            raise ValueError(f"ema.{name} ({value.dtype}, shape {tuple(value.shape)}) has no model tensor to match")
    return ema


def _optimizer_state(
    metadata: dict[str, str], tensors: dict[str, torch.Tensor], key: str = "optimizer"
) -> dict[str, Any] | None:
    meta = _json(metadata, key)
    if meta is None:
        return None
    groups, scalars, indices = (
        meta.get(k) if isinstance(meta, dict) else None for k in ("param_groups", "scalars", "indices")
    )
    if not (
        isinstance(groups, list)
        and all(
            isinstance(g, dict) and isinstance(g.get("params"), list) and all(is_count(i) for i in g["params"])
            for g in groups
        )
    ):
        raise ValueError("param_groups is not a list of groups, each with a list of parameter numbers")
    if not (isinstance(indices, list) and all(isinstance(i, str) and i.isascii() and i.isdigit() for i in indices)):
        raise ValueError("indices is not a list of parameter numbers")
    if not (isinstance(scalars, dict) and all(isinstance(v, dict) for v in scalars.values())):
        raise ValueError("scalars is not an object of objects")
    state: dict[int, dict[str, Any]] = {}
    for idx in indices:
        per_param = dict(scalars.get(idx, {}))
        prefix = f"{key}.{idx}."
        per_param.update({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
        state[int(idx)] = per_param
    entries = {idx: sorted(per_param) for idx, per_param in state.items()}
    for idx, names in entries.items():  # one optimiser keeps the same entries for every parameter
        if names != entries[min(entries)]:
            raise ValueError(
                f"parameter {idx} has state {reprlib.repr(names)}, parameter {min(entries)} has "
                f"{reprlib.repr(entries[min(entries)])}"
            )
    # JSON turned tuples such as Adam's betas into lists; give them back as PyTorch wrote them.
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any], where: str) -> None:
    """`optimizer.load_state_dict(state)`, with a one-line error when the state does not fit this optimiser:
    other parameter groups, settings of another kind, per-parameter tensors of another shape."""
    try:
        for mine, saved in zip(optimizer.param_groups, state["param_groups"]):  # their number: load_state_dict
            wrong = [k for k in mine.keys() & saved.keys() if k != "params" and not _same_kind(mine[k], saved[k])]
            if wrong:
                raise ValueError(f"{wrong[0]} is {reprlib.repr(saved[wrong[0]])}")
        optimizer.load_state_dict(state)
        for param, per_param in optimizer.state.items():
            for key, value in per_param.items():
                if torch.is_tensor(value) and value.dim() and value.shape != param.shape:
                    raise ValueError(f"{key} has shape {tuple(value.shape)} for a parameter of {tuple(param.shape)}")
    except (ValueError, KeyError, TypeError, OverflowError, RuntimeError) as e:
        raise VaelabError(f"{where}: the checkpoint's optimizer state does not fit this model ({_why(e)})") from None


def _same_kind(mine: Any, saved: Any) -> bool:
    """Whether a saved optimiser setting can stand where this optimiser has `mine` (a number for a number...)."""
    if isinstance(mine, (tuple, list)):
        return isinstance(saved, (tuple, list)) and len(saved) == len(mine) and all(map(_same_kind, mine, saved))
    if mine is None or isinstance(mine, bool):
        return saved is None or isinstance(saved, bool)
    if isinstance(mine, (int, float)):
        return isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved)
    return type(saved) is type(mine)


def _why(e: BaseException) -> str:
    """An exception as a short line: its first line, or its type."""
    if isinstance(e, KeyError) and e.args:
        return f"missing {e.args[0]!r}"
    text = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def load_model_state(model: torch.nn.Module, ckpt: Checkpoint, where: str = "checkpoint") -> None:
    """Load weights, with a one-line error when the checkpoint belongs to another model."""
    own = model.state_dict()
    missing = sorted(set(own) - set(ckpt.model_state))
    unexpected = sorted(set(ckpt.model_state) - set(own))
    wrong = sorted(k for k in set(own) & set(ckpt.model_state) if own[k].shape != ckpt.model_state[k].shape)
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[:3]}"
            if missing
            else f"unexpected {unexpected[:3]}"
            if unexpected
            else f"shape of {wrong[0]} is {tuple(ckpt.model_state[wrong[0]].shape)}, "
            f"expected {tuple(own[wrong[0]].shape)}"
        )
        raise VaelabError(f"{where} does not fit this model ({detail})")
    model.load_state_dict(ckpt.model_state)


def load_ema_state(model: torch.nn.Module, ckpt: Checkpoint, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The checkpoint's averaged weights, checked to be exactly `model`'s parameters (a one-line error if not)."""
    names = [name for name, _ in model.named_parameters()]
    missing = sorted(set(names) - set(ckpt.ema_state))
    unexpected = sorted(set(ckpt.ema_state) - set(names))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise VaelabError(f"{where}: the checkpoint's EMA weights do not fit this model ({detail})")
    return ckpt.ema_state


def restore_rng(rng_state: dict[str, torch.Tensor]) -> None:
    if "torch" in rng_state:
        torch.set_rng_state(rng_state["torch"])
    cuda = [rng_state[k] for k in sorted((k for k in rng_state if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
