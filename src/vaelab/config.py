"""Typed, frozen configuration: what a run is, saved in every checkpoint.

A run is fully described by one `RunConfig` (data + model + objective +
training). Presets are `RunConfig` values; TOML files and command-line flags
are applied on top with `dataclasses.replace`. Unknown keys and values of the
wrong type raise `VaelabError` at once, never fall back to a default.

`None` is only ever the default of an optional field, so a TOML file can
simply leave such keys out.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import checks, plugins
from .errors import VaelabError


@dataclass(frozen=True)
class DataConfig:
    """Which images, and how they become a training batch."""

    name: str = "mnist"  # mnist | fashion-mnist | cifar10 | shapes | folder:PATH
    binarize: Literal["none", "static", "dynamic"] = "none"
    image_size: int | None = None  # folder and shapes only
    grayscale: bool = False  # folder only
    val_size: int | None = None  # images carved from train for validation (None: 5000, or a tenth of a smaller
    #                              training set); 0: validate on test
    split_seed: int = 0  # fixes which train images become the validation split
    limit: int | None = None  # train on the first N (non-validation) training images
    classes: tuple[int, ...] | None = None  # keep only images with these labels (train and validation)
    skip_bad_files: bool = False  # folder only: leave out unreadable image files (counted in a warning)


@dataclass(frozen=True)
class ModelConfig:
    """The composed parts of a VAE, each looked up by name in its registry."""

    encoder: str = "cvae2"
    decoder: str = "cvae2"
    latent_dim: int = 2
    posterior: str = "diagonal-gaussian"
    prior: str = "standard-normal"
    likelihood: str = "bernoulli"  # bernoulli | gaussian | gaussian-learned | discretized-logistic[-mixture]
    sigma: float = 1.0  # the fixed standard deviation of the gaussian likelihood
    mixtures: int = 10  # the components of the discretized-logistic-mixture likelihood (PixelCNN++ uses 10)
    # the residual networks (resnet, hvae; vaelab.models.blocks): channels, residual blocks per resolution (and,
    # in hvae's top-down half, per latent group), the feature-map sizes they run at (highest first; empty: the
    # image's 1/2 and 1/4), and hvae's latent groups per resolution, each of latent_dim channels on its map:
    # `groups` at every resolution, or `groups_per_resolution` (one count per resolution, highest first)
    width: int = 32
    depth: int = 2
    resolutions: tuple[int, ...] = ()
    groups: int = 1
    groups_per_resolution: tuple[int, ...] = ()


@dataclass(frozen=True)
class ObjectiveConfig:
    """The ELBO and how it is estimated. The loss minimised is recon + beta * kl (see vaelab.models.objectives),
    or a disentangling objective's (btcvae, factorvae), whose weights default to 1."""

    name: str = "elbo"  # elbo | iwae | btcvae | factorvae
    kl: Literal["analytic", "mc"] = "analytic"
    beta: float = 1.0
    kl_warmup_steps: int = 0  # beta rises linearly from beta_start to beta over these first steps (0: none)
    beta_start: float = 0.0
    free_bits: float = 0.0  # nats: the loss's KL part is max(free_bits, KL) per dim or group (IAF); 0: none
    free_bits_per: Literal["dim", "group"] = "dim"  # group: the whole latent is one group (no hierarchies yet)
    iwae_k: int = 1  # importance samples per image of the iwae objective
    # the total correlation's weight: btcvae's beta (Chen et al. 2018), factorvae's gamma (Kim & Mnih 2018)
    tc_weight: float = 1.0
    mi_weight: float = 1.0  # btcvae: the index-code mutual information's weight (alpha)
    dwkl_weight: float = 1.0  # btcvae: the dimension-wise KL's weight (gamma)
    tc_estimator: Literal["mss", "mws"] = "mss"  # btcvae: log q(z) by stratified or weighted minibatch sampling
    discriminator_width: int = 1000  # factorvae: units per hidden layer of the discriminator (the paper's 1000)
    discriminator_depth: int = 6  # factorvae: its hidden layers (the paper's 6)
    discriminator_lr: float = 1e-4  # factorvae: its Adam learning rate (the paper's; betas 0.5, 0.9)


@dataclass(frozen=True)
class TrainConfig:
    """The optimiser and the loop."""

    optimizer: str = "adam"  # adam | adamw | adamax | rmsprop (see vaelab.training.optim)
    lr: float = 1e-3
    weight_decay: float = 0.0  # decoupled for adamw, an L2 term in the gradient for the others
    # the learning rate at each step (vaelab.training.schedule.lr_at): linear warm-up from 0 over
    # warmup_steps, then constant, or cosine decay to 0 at the end of the last epoch
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    ema: float | None = None  # decay of an exponential moving average of the weights (e.g. 0.999), used to evaluate
    init_from: str | None = None  # start from this run's weights (its moving average when it kept one)
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0
    drop_last: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # bf16: the forward pass under bf16 autocast, losses in fp32;
    # auto: bf16 for convolutional models on CPUs with native bf16, else fp32
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    eval_batch_size: int = 1000
    sample_grid: int = 64  # fixed-noise samples drawn after every epoch
    checkpoint_every: int | None = None  # also checkpoint every N steps (mid-epoch)
    # minutes of training (the epochs' `seconds` in metrics.jsonl, summed over the whole run, resumes included;
    # validation not counted): stop after the first epoch that ends past them. `epochs` still sets the schedule
    time_limit: float | None = None
    grad_clip: float | None = None  # clip the gradient's global norm to this
    skip_grad_norm: float | None = None  # skip updates whose gradient norm is above this (VDVAE)
    max_skips: int = 20  # stop after this many consecutive skipped (non-finite) updates
    threads: int | None = None  # CPU threads; None: chosen for the machine (vaelab.runtime.resolve_threads)
    tensorboard: bool = False  # also write TensorBoard event files to RUN/tensorboard (vaelab.training.tensorboard)


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run's model and repeat its training."""

    preset: str = "custom"  # a preset's name, or custom-<encoder>[-<decoder>] for networks not the preset's
    plugins: tuple[str, ...] = ()  # the modules outside vaelab that registered its parts (vaelab.plugins)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        validate(self)


# The likelihoods that are probability masses over 8-bit pixel values (`discrete_8bit` in
# vaelab.models.likelihoods, a layer above this one; a test keeps the two in step).
EIGHT_BIT_LIKELIHOODS = ("discretized-logistic", "discretized-logistic-mixture")
MAX_MIXTURES = 256  # mixture components per pixel: VDVAE and NVAE use 10 to 30
MAX_WIDTH = 4096  # channels of the residual networks (VDVAE's largest: 512)
MAX_DEPTH = 256  # residual blocks per resolution, and latent groups per resolution (VDVAE's deepest: ~40)
MAX_DISCRIMINATOR_DEPTH = 64  # factorvae's discriminator: hidden layers (the paper's 6)
# each disentangling setting: the objectives it belongs to, and its value that leaves it unused
DISENTANGLING = {
    "tc_weight": (("btcvae", "factorvae"), 1.0),
    "mi_weight": (("btcvae",), 1.0),
    "dwkl_weight": (("btcvae",), 1.0),
    "tc_estimator": (("btcvae",), "mss"),
    "discriminator_width": (("factorvae",), 1000),
    "discriminator_depth": (("factorvae",), 6),
    "discriminator_lr": (("factorvae",), 1e-4),
}

SECTIONS = {"data": DataConfig, "model": ModelConfig, "objective": ObjectiveConfig, "train": TrainConfig}


def validate(cfg: RunConfig) -> None:
    """Range checks that a type alone cannot express, by the rules of `vaelab.checks` that the CLI and API share.

    A checkpoint's config is checked too when it is loaded, so a damaged or
    hand-edited one (latent_dim 10**12) is refused before anything is built.
    """
    d, m, o, t = cfg.data, cfg.model, cfg.objective, cfg.train
    for module in cfg.plugins:
        if not plugins.is_module_name(module):
            raise VaelabError(f"plugins must list module names such as mynets or mypackage.nets, not {module!r}")
    checks.whole("model.latent_dim", m.latent_dim, low=1, high=checks.MAX_LATENT_DIM)
    checks.real("model.sigma", m.sigma, low=0, low_open=True)
    checks.whole("model.mixtures", m.mixtures, low=1, high=MAX_MIXTURES)
    checks.whole("model.width", m.width, low=4, high=MAX_WIDTH)
    checks.whole("model.depth", m.depth, low=0, high=MAX_DEPTH)
    checks.whole("model.groups", m.groups, low=1, high=MAX_DEPTH)
    for g in m.groups_per_resolution:
        checks.whole("model.groups_per_resolution", g, low=0, high=MAX_DEPTH)
    for r in m.resolutions:
        checks.whole("model.resolutions", r, low=1, high=checks.MAX_IMAGE_SIZE)
    if m.likelihood in EIGHT_BIT_LIKELIHOODS and d.binarize != "none":
        raise VaelabError(
            f"the {m.likelihood} likelihood models 8-bit pixel values; it cannot be trained on binarised data "
            f"(data.binarize = {d.binarize}): use --binarize none"
        )
    checks.real("objective.beta", o.beta, low=0)
    _validate_objective(o)
    checks.real("train.lr", t.lr, low=0, low_open=True)
    checks.real("train.weight_decay", t.weight_decay, low=0)
    checks.whole("train.warmup_steps", t.warmup_steps, low=0)
    if t.ema is not None:
        checks.decay("train.ema", t.ema)
    if t.init_from is not None and not t.init_from.strip():
        raise VaelabError("train.init_from must name a run or checkpoint, not an empty string")
    checks.whole("train.batch_size", t.batch_size, low=1, high=checks.MAX_BATCH_SIZE)
    checks.whole("train.eval_batch_size", t.eval_batch_size, low=1, high=checks.MAX_BATCH_SIZE)
    checks.whole("train.epochs", t.epochs, low=1)  # a run of 0 epochs would write no checkpoint to load
    checks.seed("train.seed", t.seed)
    checks.whole("train.sample_grid", t.sample_grid, low=0, high=checks.MAX_SAMPLE_GRID)
    checks.whole("train.max_skips", t.max_skips, low=1)
    if t.threads is not None:
        checks.whole("train.threads", t.threads, low=1, high=checks.MAX_THREADS)
    if t.checkpoint_every is not None:
        checks.whole("train.checkpoint_every", t.checkpoint_every, low=1)
    if t.time_limit is not None:
        checks.real("train.time_limit", t.time_limit, low=0, low_open=True)
    if t.grad_clip is not None:
        checks.real("train.grad_clip", t.grad_clip, low=0, low_open=True)
    if t.skip_grad_norm is not None:
        checks.real("train.skip_grad_norm", t.skip_grad_norm, low=0, low_open=True)
    if d.val_size is not None:
        checks.whole("data.val_size", d.val_size, low=0)
    checks.seed("data.split_seed", d.split_seed)
    if d.limit is not None:
        checks.whole("data.limit", d.limit, low=1)
    if d.image_size is not None:
        checks.whole("data.image_size", d.image_size, low=4, high=checks.MAX_IMAGE_SIZE)
    if d.classes is not None and (len(d.classes) == 0 or min(d.classes) < 0):
        raise VaelabError("data.classes must be a non-empty list of label values >= 0")


def _validate_objective(o: ObjectiveConfig) -> None:
    """The objective's settings, and the combinations that mean nothing (refused, never ignored)."""
    checks.whole("objective.kl_warmup_steps", o.kl_warmup_steps, low=0)
    checks.real("objective.beta_start", o.beta_start, low=0)
    checks.real("objective.free_bits", o.free_bits, low=0)
    checks.whole("objective.iwae_k", o.iwae_k, low=1, high=checks.MAX_IWAE_K)
    if o.free_bits and o.kl != "analytic":
        raise VaelabError("objective.free_bits needs the KL per latent dimension: set objective.kl = 'analytic'")
    for name in ("tc_weight", "mi_weight", "dwkl_weight"):
        checks.real(f"objective.{name}", getattr(o, name), low=0)
    checks.whole("objective.discriminator_width", o.discriminator_width, low=1, high=MAX_WIDTH)
    checks.whole("objective.discriminator_depth", o.discriminator_depth, low=0, high=MAX_DISCRIMINATOR_DEPTH)
    checks.real("objective.discriminator_lr", o.discriminator_lr, low=0, low_open=True)
    for name, (objectives, unused) in DISENTANGLING.items():
        if o.name not in objectives and getattr(o, name) != unused:
            raise VaelabError(
                f"objective.{name} applies to the {' and '.join(objectives)} objective"
                f"{'s' if len(objectives) > 1 else ''}, not {o.name!r}: set name = '{objectives[0]}'"
            )
    if o.name in ("btcvae", "factorvae"):
        extras = [
            name
            for name, on in (("beta", o.beta != 1), ("kl_warmup_steps", o.kl_warmup_steps), ("free_bits", o.free_bits))
            if on
        ]
        if extras:
            raise VaelabError(
                f"the {o.name} objective weighs the total correlation with tc_weight (--tc-weight), not the KL: "
                f"leave {', '.join(extras)} at the default"
            )
    if o.name == "iwae":
        extras = [
            name
            for name, on in (("beta", o.beta != 1), ("kl_warmup_steps", o.kl_warmup_steps), ("free_bits", o.free_bits))
            if on
        ]
        if extras:
            raise VaelabError(f"the iwae objective has no KL weight: leave {', '.join(extras)} at the default")
    elif o.iwae_k != 1:
        raise VaelabError(f"objective.iwae_k applies to the iwae objective, not {o.name!r}: set name = 'iwae'")


# --------------------------------------------------------------------------- conversion


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Return `value` if it fits the annotation `hint` (ints widen to floats)."""
    origin = typing.get_origin(hint)
    if origin is tuple:  # tuple[int, ...]: a TOML/JSON list or a tuple of that type, kept as a tuple
        (inner, _) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise VaelabError(f"{where} must be a list, not {type(value).__name__} ({value!r})")
        return tuple(_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is Literal:
        if value not in typing.get_args(hint):
            choices = ", ".join(repr(a) for a in typing.get_args(hint))
            raise VaelabError(f"{where} must be one of {choices}, not {value!r}")
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in typing.get_args(hint):
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _check_type(value, inner, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return checks.real(where, value)  # widened; an int too large for a float is refused, not an OverflowError
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise VaelabError(f"{where} must be of type {hint.__name__}, not {type(value).__name__} ({value!r})")
    return value


def _section_from_dict(cls: type, values: dict[str, Any], base: Any, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise VaelabError(
            f"unknown key{'s' if len(unknown) > 1 else ''} in [{where}]: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(names))})"
        )
    checked = {k: _check_type(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return dataclasses.replace(base, **checked)


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Apply `{"section": {"key": value}}` (or `{"preset": ...}`) on top of `cfg`, strictly."""
    unknown = sorted(set(overrides) - set(SECTIONS) - {"preset", "plugins"})
    if unknown:
        raise VaelabError(f"unknown config section(s): {', '.join(unknown)} (known: {', '.join(SECTIONS)})")
    changes: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        if name in overrides:
            if not isinstance(overrides[name], dict):
                raise VaelabError(f"config section [{name}] must be a table")
            changes[name] = _section_from_dict(cls, overrides[name], getattr(cfg, name), name)
    if "preset" in overrides:
        changes["preset"] = _check_type(overrides["preset"], str, "preset")
    if "plugins" in overrides:
        changes["plugins"] = _check_type(overrides["plugins"], tuple[str, ...], "plugins")
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """Plain nested dict (JSON/TOML friendly); optional fields left at None are dropped."""

    def clean(d: dict[str, Any]) -> dict[str, Any]:
        return {k: (clean(v) if isinstance(v, dict) else v) for k, v in d.items() if v is not None}

    return clean(dataclasses.asdict(cfg))


def from_dict(values: dict[str, Any]) -> RunConfig:
    """Inverse of `to_dict`: every key must be known."""
    return apply_overrides(RunConfig(), values)


# --------------------------------------------------------------------------- TOML


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(cfg: RunConfig) -> str:
    """The resolved config as TOML: top-level keys, then one table per section."""
    d = to_dict(cfg)
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for section, values in d.items():
        if isinstance(values, dict):
            lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file into the nested-dict form `apply_overrides` takes."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise VaelabError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise VaelabError(f"{path} is not valid TOML: {e}") from None
    except RecursionError:
        raise VaelabError(f"{path} is not valid TOML: nested too deeply") from None
    except UnicodeDecodeError:
        raise VaelabError(f"{path} is not valid TOML: not UTF-8 text") from None


# --------------------------------------------------------------------------- flat overrides

# The flat names that the command line (--batch-size) and vaelab.train(batch_size=...) accept.
FLAT_KEYS: dict[str, tuple[str, str]] = {
    "dataset": ("data", "name"),
    "binarize": ("data", "binarize"),
    "image_size": ("data", "image_size"),
    "grayscale": ("data", "grayscale"),
    "val_size": ("data", "val_size"),
    "limit": ("data", "limit"),
    "skip_bad_files": ("data", "skip_bad_files"),
    "classes": ("data", "classes"),
    "encoder": ("model", "encoder"),
    "decoder": ("model", "decoder"),
    "latent_dim": ("model", "latent_dim"),
    "likelihood": ("model", "likelihood"),
    "sigma": ("model", "sigma"),
    "mixtures": ("model", "mixtures"),
    "width": ("model", "width"),
    "depth": ("model", "depth"),
    "resolutions": ("model", "resolutions"),
    "groups": ("model", "groups"),
    "groups_per_resolution": ("model", "groups_per_resolution"),
    "kl": ("objective", "kl"),
    "beta": ("objective", "beta"),
    "objective": ("objective", "name"),
    "kl_warmup_steps": ("objective", "kl_warmup_steps"),
    "beta_start": ("objective", "beta_start"),
    "free_bits": ("objective", "free_bits"),
    "free_bits_per": ("objective", "free_bits_per"),
    "iwae_k": ("objective", "iwae_k"),
    "tc_weight": ("objective", "tc_weight"),
    "mi_weight": ("objective", "mi_weight"),
    "dwkl_weight": ("objective", "dwkl_weight"),
    "tc_estimator": ("objective", "tc_estimator"),
    "discriminator_width": ("objective", "discriminator_width"),
    "discriminator_depth": ("objective", "discriminator_depth"),
    "discriminator_lr": ("objective", "discriminator_lr"),
    "optimizer": ("train", "optimizer"),
    "lr": ("train", "lr"),
    "weight_decay": ("train", "weight_decay"),
    "lr_schedule": ("train", "lr_schedule"),
    "warmup_steps": ("train", "warmup_steps"),
    "ema": ("train", "ema"),
    "init_from": ("train", "init_from"),
    "batch_size": ("train", "batch_size"),
    "epochs": ("train", "epochs"),
    "seed": ("train", "seed"),
    "drop_last": ("train", "drop_last"),
    "device": ("train", "device"),
    "precision": ("train", "precision"),
    "eval_batch_size": ("train", "eval_batch_size"),
    "sample_grid": ("train", "sample_grid"),
    "checkpoint_every": ("train", "checkpoint_every"),
    "time_limit": ("train", "time_limit"),
    "grad_clip": ("train", "grad_clip"),
    "skip_grad_norm": ("train", "skip_grad_norm"),
    "max_skips": ("train", "max_skips"),
    "threads": ("train", "threads"),
    "tensorboard": ("train", "tensorboard"),
}

# Settings a resumed run may change: they do not alter the numbers it produces.
RESUMABLE_CHANGES = {
    ("train", "epochs"),
    ("train", "device"),
    ("train", "eval_batch_size"),
    ("train", "checkpoint_every"),
    ("train", "time_limit"),  # where the run stops, not its numbers
    ("train", "max_skips"),
    ("train", "threads"),
    ("train", "tensorboard"),  # what is logged, not what is trained
}


def nest_overrides(flat: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"batch_size": 64} -> {"train": {"batch_size": 64}}; unknown names raise."""
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        if key not in FLAT_KEYS:
            raise VaelabError(f"unknown setting {key!r} (known: {', '.join(FLAT_KEYS)})")
        section, name = FLAT_KEYS[key]
        nested.setdefault(section, {})[name] = value
    return nested
