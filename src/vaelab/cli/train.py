"""`vaelab train`: a preset, a TOML file and flag overrides, or --resume RUN."""

from __future__ import annotations

import argparse

from ..api import resolve_config
from ..config import nest_overrides
from ..errors import VaelabError
from ..training.distributed import from_env
from ..training.trainer import resume_run, start_run
from .args import (
    add_data_dir,
    ema_decay,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    seed,
)


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a VAE (a preset, a config file, overrides)",
        description="Train a preset; a --config TOML file and the flags below apply on top.",
    )
    p.add_argument("--preset", help="preset name (see `vaelab presets`; default: the config file's, else cvae2)")
    p.add_argument("--config", metavar="FILE.toml", help="TOML file with [data], [model], [objective], [train] tables")
    p.add_argument(
        "--resume", metavar="RUN", help="continue RUN from its last checkpoint (--epochs or --time-limit may extend it)"
    )
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<preset>-<timestamp>)")
    add_data_dir(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("overrides")
    g.add_argument(
        "--dataset", help="mnist, fashion-mnist, cifar10, shapes (shapes:colour, shapes:noise) or folder:PATH"
    )
    g.add_argument("--binarize", choices=["none", "static", "dynamic"])
    g.add_argument("--image-size", type=positive_int, help="side length for folder: and shapes datasets")
    g.add_argument("--grayscale", action="store_true", default=None, help="folder: read images as grey")
    g.add_argument(
        "--skip-bad-files",
        action="store_true",
        default=None,
        help="folder: leave out unreadable image files (their count is reported) instead of failing",
    )
    g.add_argument("--val-size", type=non_negative_int, help="validation images carved from train (0: use test)")
    g.add_argument("--limit", type=positive_int, help="train on the first N training images")
    g.add_argument(
        "--classes", type=class_list, metavar="0,1,...", help="train (and validate) only on images with these labels"
    )
    g.add_argument("--encoder", metavar="NAME", help="a registered encoder: a preset's or a plugin's (--import MODULE)")
    g.add_argument("--decoder", metavar="NAME", help="a registered decoder: a preset's or a plugin's (--import MODULE)")
    g.add_argument("--latent-dim", type=positive_int)
    g.add_argument(
        "--likelihood",
        help="bernoulli, gaussian, gaussian-learned, discretized-logistic or discretized-logistic-mixture",
    )
    g.add_argument("--sigma", type=positive_float, help="fixed std of the gaussian likelihood")
    g.add_argument("--mixtures", type=positive_int, help="components of the discretized-logistic-mixture (default 10)")
    g.add_argument("--width", type=positive_int, help="resnet and hvae networks: channels (default 32)")
    g.add_argument(
        "--depth", type=non_negative_int, help="resnet and hvae networks: residual blocks per resolution (default 2)"
    )
    g.add_argument(
        "--resolutions",
        type=int_list,
        metavar="14,7",
        help="resnet and hvae networks: the feature-map sizes, highest first (default: the image's 1/2 and 1/4)",
    )
    g.add_argument("--groups", type=positive_int, help="hvae: latent groups per resolution (default 1)")
    g.add_argument(
        "--groups-per-resolution",
        type=count_list,
        metavar="2,2,4,4",
        help="hvae: latent groups at each of --resolutions, highest first (instead of --groups; 0: blocks alone)",
    )
    g.add_argument("--kl", choices=["analytic", "mc"], help="analytic KL or the single-sample estimate")
    g.add_argument("--beta", type=non_negative_float, help="weight of the KL term in the loss")
    g.add_argument(
        "--objective",
        metavar="NAME",
        help="elbo (default); iwae: the importance-weighted bound; btcvae, factorvae: disentangling (see the guide)",
    )
    g.add_argument(
        "--kl-warmup-steps",
        type=non_negative_int,
        metavar="N",
        help="raise the KL's weight linearly from --beta-start to --beta over the first N steps",
    )
    g.add_argument("--beta-start", type=non_negative_float, help="the KL's weight at step 0 of a warm-up (default 0)")
    g.add_argument(
        "--free-bits",
        type=non_negative_float,
        metavar="NATS",
        help="the loss's KL counts at least this many nats per latent dim (or group), as in IAF",
    )
    g.add_argument("--free-bits-per", choices=["dim", "group"], help="free bits per latent dim or per group")
    g.add_argument("--iwae-k", type=positive_int, metavar="K", help="importance samples per image for --objective iwae")
    g.add_argument(
        "--tc-weight",
        type=non_negative_float,
        metavar="W",
        help="the total correlation's weight (default 1): beta of --objective btcvae (Chen et al. 2018), "
        "gamma of --objective factorvae (Kim & Mnih 2018)",
    )
    g.add_argument(
        "--mi-weight", type=non_negative_float, metavar="W", help="btcvae: the mutual information's weight (alpha, 1)"
    )
    g.add_argument(
        "--dwkl-weight", type=non_negative_float, metavar="W", help="btcvae: the dimension-wise KL's weight (gamma, 1)"
    )
    g.add_argument(
        "--tc-estimator",
        choices=["mss", "mws"],
        help="btcvae: log q(z) by minibatch stratified (mss, default) or weighted (mws) sampling",
    )
    g.add_argument(
        "--discriminator-width", type=positive_int, metavar="N", help="factorvae: units per hidden layer (1000)"
    )
    g.add_argument("--discriminator-depth", type=non_negative_int, metavar="N", help="factorvae: hidden layers (6)")
    g.add_argument("--discriminator-lr", type=positive_float, help="factorvae: the discriminator's Adam lr (1e-4)")
    g.add_argument("--optimizer", help="adam, adamw, adamax or rmsprop")
    g.add_argument("--lr", type=positive_float, help="learning rate")
    g.add_argument(
        "--weight-decay",
        type=non_negative_float,
        help="weight decay (default 0): decoupled for adamw, an L2 term in the gradient for the others",
    )
    g.add_argument(
        "--lr-schedule",
        choices=["constant", "cosine"],
        help="after the warm-up, keep --lr (constant, the default) or decay it to 0 by the last epoch (cosine)",
    )
    g.add_argument(
        "--warmup-steps", type=non_negative_int, metavar="N", help="raise the learning rate linearly over N steps"
    )
    g.add_argument(
        "--ema",
        type=ema_decay,
        metavar="DECAY",
        help="keep a moving average of the weights with this decay (e.g. 0.999), used to validate, "
        "evaluate and sample (--weights raw picks the weights themselves)",
    )
    g.add_argument(
        "--init-from",
        metavar="RUN",
        help="start from RUN's weights (its moving average when it kept one) instead of fresh ones: fine-tuning "
        "with another learning rate, schedule or data; the networks must be the same",
    )
    g.add_argument("--batch-size", type=positive_int)
    g.add_argument("--epochs", type=positive_int)
    g.add_argument("--seed", type=seed)
    g.add_argument(
        "--drop-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="drop the partial last batch of each epoch",
    )
    g.add_argument("--device", help="auto (CUDA when present), cpu, cuda or cuda:N")
    g.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        help="bf16: forward pass in bf16 autocast, losses in fp32 (faster on CPUs with AVX-512 BF16; "
        "changes the numbers slightly); auto (default): bf16 for convolutional models on such CPUs, "
        "else fp32",
    )
    g.add_argument("--checkpoint-every", type=positive_int, metavar="N", help="also checkpoint every N steps")
    g.add_argument(
        "--time-limit",
        type=positive_float,
        metavar="MINUTES",
        help="stop after the first epoch that ends past MINUTES of training time (the epochs' own time, summed "
        "over the run, resumes included; validation not counted). --epochs still sets the schedule's length "
        "(a cosine schedule will not have reached 0); `vaelab train --resume RUN --time-limit M` with a "
        "larger M continues it",
    )
    g.add_argument("--grad-clip", type=positive_float, help="clip the gradient's global norm to this")
    g.add_argument("--skip-grad-norm", type=positive_float, help="skip updates whose gradient norm is above this")
    g.add_argument("--max-skips", type=positive_int, help="stop after N skipped updates in a row (default 20)")
    g.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="CPU threads (default: one per core that other processes leave free; on a busy machine "
        "--threads 1 is often several times faster)",
    )
    g.add_argument(
        "--tensorboard",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also write TensorBoard event files to RUN/tensorboard (needs: pip install 'vaelab[tensorboard]'); "
        "a resumed run keeps its setting unless given --tensorboard or --no-tensorboard",
    )
    p.set_defaults(func=run)


OVERRIDES = [
    "dataset",
    "binarize",
    "image_size",
    "grayscale",
    "skip_bad_files",
    "val_size",
    "limit",
    "classes",
    "encoder",
    "decoder",
    "latent_dim",
    "likelihood",
    "sigma",
    "mixtures",
    "width",
    "depth",
    "resolutions",
    "groups",
    "groups_per_resolution",
    "kl",
    "beta",
    "objective",
    "kl_warmup_steps",
    "beta_start",
    "free_bits",
    "free_bits_per",
    "iwae_k",
    "tc_weight",
    "mi_weight",
    "dwkl_weight",
    "tc_estimator",
    "discriminator_width",
    "discriminator_depth",
    "discriminator_lr",
    "optimizer",
    "lr",
    "weight_decay",
    "lr_schedule",
    "warmup_steps",
    "ema",
    "init_from",
    "batch_size",
    "epochs",
    "seed",
    "drop_last",
    "device",
    "precision",
    "checkpoint_every",
    "time_limit",
    "grad_clip",
    "skip_grad_norm",
    "max_skips",
    "threads",
    "tensorboard",
]


def _whole_numbers(text: str, what: str, low: int, example: str) -> tuple[int, ...]:
    """'0,3' -> (0, 3): whole numbers >= `low`, comma separated."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what} like {example}, got {text!r}") from None
    if any(v < low for v in values):
        raise argparse.ArgumentTypeError(f"{what} must be >= {low}, got {text!r}")
    return values


def int_list(text: str) -> tuple[int, ...]:
    """'14,7' -> (14, 7): feature-map sizes."""
    return _whole_numbers(text, "sizes", 1, "14,7")


def count_list(text: str) -> tuple[int, ...]:
    """'2,2,4,4' -> (2, 2, 4, 4): a count at each resolution."""
    return _whole_numbers(text, "group counts", 0, "2,2,4,4")


def class_list(text: str) -> tuple[int, ...]:
    """'0,3' -> (0, 3): label values."""
    return _whole_numbers(text, "label values", 0, "0,1,2")


def run(args: argparse.Namespace) -> int:
    progress = not args.no_progress
    flags = {k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None}
    if args.resume:
        ignored = [flag for flag in ("preset", "config", "out") if getattr(args, flag)]
        if ignored:
            raise VaelabError(
                f"--resume continues a run with its saved config; --{ignored[0]} cannot be combined with it"
            )
        resume_run(args.resume, overrides=nest_overrides(flags), data_dir=args.data_dir, progress=progress)
        return 0
    cfg = resolve_config(args.preset, config=args.config, **flags)
    path = start_run(cfg, out=args.out, data_dir=args.data_dir, progress=progress)
    if from_env().is_main:
        print(f"done: {path}  (samples in {path / 'samples'}, checkpoint {path / 'checkpoint.safetensors'})")
    return 0
