"""A trained VAE as two ONNX files: the encoder (images -> the top posterior's mu, logvar) and the decoder
(top latents z -> the likelihood's mean image), each with a dynamic batch axis, and a JSON that describes them.

The decoder is `VAE.decode(z)` at temperature 0: for a hierarchy the lower
groups sit at their priors' means, so it is deterministic. Only that decoder
is exported; drawing the lower groups (`vaelab decode --temperature`) stays
in vaelab.

Exported in float32 on the CPU, in eval mode, with PyTorch's torch.export-based
exporter (`dynamo=True`, the default since torch 2.9; it needs `onnx` and
`onnxscript`). The older TorchScript exporter (`dynamo=False`) is deprecated,
and it cannot export the hierarchy: it traces the batch size and the feature
maps' sizes as constants.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import VaelabError
from ..files import write_bytes, write_text
from ..models.vae import VAE
from ..version import __version__

OPSET = 18
ENCODER_FILE, DECODER_FILE, INFO_FILE = "encoder.onnx", "decoder.onnx", "vaelab-export.json"
REQUIRED = ("onnx", "onnxscript")  # torch.onnx.export needs both; onnxruntime only runs the files
INSTALL_HINT = "pip install 'vaelab[onnx]'"


class _Encoder(nn.Module):
    """images (B, C, H, W) float in [0, 1] -> mu, logvar (B, D) of q(z_1|x)."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.vae.encode(images)
        return q.mu, q.logvar


class _Decoder(nn.Module):
    """z (B, D) -> the likelihood's mean image (B, C, H, W) in [0, 1], lower groups at their priors' means."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(z, temperature=0.0)


def check_onnx_installed() -> None:
    """A one-line error naming the extra when the packages the export needs are missing."""
    missing = [name for name in REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        raise VaelabError(f"exporting to ONNX needs {', '.join(missing)}: {INSTALL_HINT}")


def export_onnx(model: VAE, folder: str | Path, *, preset: str = "custom", weights: str = "") -> dict:
    """Write folder/encoder.onnx, folder/decoder.onnx and folder/vaelab-export.json; returns the JSON's dict.

    Each file is exported in memory first and written atomically; nothing is
    written unless both networks export.
    """
    check_onnx_installed()
    vae = copy.deepcopy(model).float().cpu().eval()
    vae.check_pixels = False  # the range check is a host-side branch: it cannot be part of a graph
    c, h, w = vae.image_shape
    d = vae.latent_dim
    encoder = _onnx_bytes(_Encoder(vae), torch.rand(2, c, h, w), ["images"], ["mu", "logvar"], "encoder")
    decoder = _onnx_bytes(_Decoder(vae), torch.randn(2, d), ["z"], ["images"], "decoder")
    info = {
        "format": "vaelab-onnx",
        "version": 1,
        "vaelab_version": __version__,
        "preset": preset,
        "weights": weights,
        "image_shape": [c, h, w],
        "latent_dim": d,
        "groups": len(vae.group_shapes),
        "opset": OPSET,
        "encoder": {
            "file": ENCODER_FILE,
            "inputs": {"images": ["batch", c, h, w]},
            "outputs": {"mu": ["batch", d], "logvar": ["batch", d]},
        },
        "decoder": {
            "file": DECODER_FILE,
            "inputs": {"z": ["batch", d]},
            "outputs": {"images": ["batch", c, h, w]},
        },
        "notes": "images: float32 in [0, 1]; mu, logvar: the posterior of the top latent group; the decoder gives "
        "the likelihood's mean image, with a hierarchy's lower groups at their priors' means",
    }
    folder = Path(folder)
    write_bytes(folder / ENCODER_FILE, encoder)
    write_bytes(folder / DECODER_FILE, decoder)
    write_text(folder / INFO_FILE, json.dumps(info, indent=2) + "\n")
    return info


def _onnx_bytes(net: nn.Module, example: torch.Tensor, inputs: list[str], outputs: list[str], part: str) -> bytes:
    """`net` exported on `example` as an ONNX model (bytes), the first axis of its input and outputs dynamic."""
    quiet = logging.getLogger("torch.onnx")  # it logs a line per torchvision op it skips
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the exporter's notes on what it did: not the user's business
            program = torch.onnx.export(
                net,
                (example,),
                dynamo=True,
                opset_version=OPSET,
                input_names=inputs,
                output_names=outputs,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                optimize=True,
                verify=False,
                verbose=False,
            )
            proto = program.model_proto
    except Exception as e:  # noqa: BLE001 (an op the exporter does not know can fail in many ways)
        reason = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise VaelabError(f"cannot export the {part} to ONNX: {reason}") from None
    finally:
        quiet.setLevel(level)
    first = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not first.dim_param:  # the exporter can quietly fall back to a fixed batch: refuse a file that would mislead
        raise VaelabError(f"cannot export the {part} to ONNX with a dynamic batch axis: its code fixes the batch size")
    return proto.SerializeToString()
