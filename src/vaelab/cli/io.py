"""`vaelab encode`, `vaelab decode` and `vaelab export`: a trained run's latents and networks, for use elsewhere."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..api import load
from ..errors import VaelabError
from ..export import images as image_files
from ..export import latents
from ..files import check_can_write, check_writable_folder, display_name
from .args import add_weights, non_negative_float, positive_int, seed

BATCH = 256  # images (or latents) through the network at once


def add_parsers(sub) -> None:
    p = sub.add_parser(
        "encode",
        help="the posterior (mu, logvar) of image files or folders, into an .npz",
        description="Encode image files, and every image under folders (recursively), resized to the run's image "
        "shape, into an .npz: mu and logvar (N, latent_dim) of q(z|x), the top group's for a hierarchy, and files.",
    )
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="image files or folders")
    p.add_argument("-o", "--output", required=True, metavar="FILE.npz", help="the latents file to write")
    p.add_argument("--batch-size", type=positive_int, default=BATCH)
    p.add_argument("--device", default="cpu")
    add_weights(p)
    p.set_defaults(func=encode)

    p = sub.add_parser(
        "decode",
        help="one PNG per row of latents from an .npz (z, else mu)",
        description="Decode each row of the .npz's z (else mu) into the likelihood's mean image, one PNG each, "
        "named after its files entry when there is one.",
    )
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("latents", metavar="LATENTS.npz", help="a file written by vaelab encode, or z (N, latent_dim)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the PNGs (made if missing)")
    p.add_argument(
        "--temperature",
        type=temperatures,
        default=(0.0,),
        help="a hierarchy's lower groups: 0 (default) their priors' means; T > 0 drawn at T (one value, or one "
        "per lower group, top first)",
    )
    p.add_argument("--seed", type=seed, default=0, help="the noise of --temperature")
    p.add_argument("--batch-size", type=positive_int, default=BATCH)
    p.add_argument("--device", default="cpu")
    add_weights(p)
    p.set_defaults(func=decode)

    p = sub.add_parser(
        "export",
        help="the encoder and decoder as ONNX files",
        description="Write DIR/encoder.onnx (images -> mu, logvar), DIR/decoder.onnx (z -> mean image) and "
        "DIR/vaelab-export.json; a hierarchy's decoder puts its lower groups at their priors' means.",
    )
    p.add_argument("run", metavar="RUN", help="run directory or checkpoint file")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (the only one)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the files (made if missing)")
    add_weights(p)
    p.set_defaults(func=export)


def encode(args: argparse.Namespace) -> int:
    check_can_write(args.output)
    model = load(args.run, device=args.device, weights=args.weights)
    x, files = image_files.read_image_paths(args.images, model.image_shape)
    with torch.no_grad():
        parts = [model.encode(batch.to(model.device)) for batch in x.split(args.batch_size)]
    mu = torch.cat([q.mu.float().cpu() for q in parts]).numpy()
    logvar = torch.cat([q.logvar.float().cpu() for q in parts]).numpy()
    path = latents.write_latents(
        args.output,
        mu,
        logvar,
        files,
        groups=len(model.group_shapes),
        image_shape=model.image_shape,
        preset=model.config.preset,
        weights=model.weights,
    )
    top = " (the top group's, of a hierarchy)" if len(model.group_shapes) > 1 else ""
    print(f"{len(files)} images encoded{top}: {display_name(str(path))}")
    return 0


def decode(args: argparse.Namespace) -> int:
    out = _output_folder(args.output)
    model = load(args.run, device=args.device, weights=args.weights)
    lower = _lower_temperatures(args.temperature, len(model.group_shapes) - 1)
    found = latents.read_latents(args.latents, model.latent_dim)
    names = image_files.png_names(found.files, len(found.z))
    check_writable_folder(out, "PNGs")
    generator = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        images = torch.cat(
            [
                model.decode(z.to(model.device), temperature=lower, generator=generator).float().cpu()
                for z in torch.from_numpy(found.z).split(args.batch_size)
            ]
        )
    image_files.write_pngs(images, out, names)
    print(f"{len(names)} images decoded from {found.key!r}: {display_name(str(out))}")
    return 0


def export(args: argparse.Namespace) -> int:
    from ..export import onnx  # torch.onnx only for this command

    onnx.check_onnx_installed()
    out = _output_folder(args.output)
    model = load(args.run, device="cpu", weights=args.weights)
    check_writable_folder(out, "ONNX files")
    info = onnx.export_onnx(model, out, preset=model.config.preset, weights=model.weights)
    print(
        f"encoder.onnx (images -> mu, logvar), decoder.onnx (z, {info['latent_dim']} wide -> images), "
        f"{onnx.INFO_FILE}: {display_name(str(out))}"
    )
    return 0


def temperatures(text: str) -> tuple[float, ...]:
    """--temperature of decode: one value >= 0, or several comma-separated (a hierarchy's lower groups)."""
    return tuple(non_negative_float(part) for part in text.split(","))


temperatures.__name__ = "temperature"


def _output_folder(text: str) -> Path:
    """-o DIR: a folder or a new name; a file (or anything else) there is refused before any work."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise VaelabError(f"-o {display_name(text)}: not a folder (a file is in the way)")
    return path


def _lower_temperatures(value: tuple[float, ...], lower: int) -> list[float]:
    """--temperature for the lower groups: one per group, the last value repeating; refused where nothing uses it."""
    values = list(value)
    if lower == 0:
        if any(values):
            raise VaelabError("--temperature draws a hierarchy's lower latent groups; this run has one latent group")
        return []
    if len(values) > lower:
        raise VaelabError(f"--temperature: at most one value per lower latent group ({lower}), not {len(values)}")
    return values + values[-1:] * (lower - len(values))
