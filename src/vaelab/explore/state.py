"""What the latent explorer serves: a loaded model, its test images, and the pictures it draws from them.

No web framework here: `Explorer` takes checked values and returns PNG bytes, one model call at a time
(one lock), so that `app.py` is only routes and validation and the benchmark can time either layer.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import torch
from PIL import Image

from ..data.catalog import image_shape
from ..data.folder import decode_image
from ..errors import VaelabError
from ..evaluation.scores import posterior_stats
from ..models.vae import VAE, build_model
from ..presets import PRESETS
from ..runtime import memory_format_for
from ..training.data import load_split
from ..training.trainer import load_model
from ..viz.grid import png_bytes, tile

SUBSET = 2000  # test images encoded at startup: the map's points and the KL that orders the sliders
SLIDER_RANGE = 4.0  # sliders span [-4, 4]: the top prior is N(0, I)
MAX_PIXELS = 4096 * 4096  # an upload declaring more pixels is refused from its header


@dataclass(frozen=True)
class Points:
    """The map of a 2-D latent: posterior means of a seeded subset of the test images."""

    xy: torch.Tensor  # (N, 2) float32
    labels: torch.Tensor | None  # (N,) int64
    indices: torch.Tensor  # (N,) int64: which test images


class Explorer:
    """A model in eval mode with its test images: the KL order of its top latents, the map of a 2-D latent,
    and decode / sample / interpolate / reconstruct as PNG bytes."""

    def __init__(
        self,
        model: VAE,
        images: torch.Tensor,
        *,
        labels: torch.Tensor | None = None,
        class_names: tuple[str, ...] | None = None,
        dynamic_binarize: bool = False,
        subset: int = SUBSET,
        seed: int = 0,
    ) -> None:
        if len(images) == 0:
            raise VaelabError("the explorer needs test images; this run's test split is empty")
        self.model = model.eval()
        if memory_format_for(model, model.device) == torch.channels_last:
            model.to(memory_format=torch.channels_last)  # oneDNN's faster layout on the CPU; values unchanged
        self.images = images  # (N, C, H, W) uint8: the test split
        self.labels = labels
        self.class_names = class_names
        self.lock = threading.Lock()
        pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:subset]
        with self.lock, torch.inference_mode():
            stats = posterior_stats(model, images[pick], seed=seed, dynamic_binarize=dynamic_binarize)
        d = model.latent_dim
        self.kl_per_dim = stats.kl_per_dim[:d]  # (D,) the top group's, nats
        self.order = torch.argsort(self.kl_per_dim, descending=True, stable=True).tolist()
        self.points = (
            Points(stats.mu[:, :2].contiguous(), None if labels is None else labels[pick], pick)
            if self.has_map
            else None
        )

    @property
    def has_map(self) -> bool:
        """A 2-D latent of one group is shown as a map; anything else as sliders."""
        return self.model.latent_dim == 2 and len(self.model.group_shapes) == 1

    def info(self) -> dict:
        m = self.model
        config = getattr(m, "config", None)
        return {
            "latent_dim": m.latent_dim,
            "groups": [list(shape) for shape in m.group_shapes],
            "image_shape": list(m.image_shape),
            "order": self.order,
            "kl_per_dim": [round(float(v), 4) for v in self.kl_per_dim],
            "labels": list(self.class_names) if self.class_names else None,
            "test_images": len(self.images),
            "map": self.has_map,
            "slider_range": [-SLIDER_RANGE, SLIDER_RANGE],
            "preset": getattr(config, "preset", None),
            "dataset": getattr(getattr(config, "data", None), "name", None),
            "weights": getattr(m, "weights", None),
        }

    def decode(self, z: list[float], *, temperature: float = 0.0, seed: int = 0) -> bytes:
        """One image for top latents `z`; a hierarchy's lower groups drawn at `temperature` from `seed`."""
        z_top = torch.tensor([z], dtype=torch.float32)  # (1, D)
        return self._png(self._decode(z_top, temperature, seed))

    def sample(self, n: int, *, temperature: float, seed: int) -> bytes:
        """A grid of n samples, every group drawn at `temperature` (0: the prior means, all alike)."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.model.latent_dim, generator=g) * temperature  # (n, D)
        return self._png(self._decode(z, temperature, seed), ncol=math.ceil(math.sqrt(n)))

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, *, steps: int, temperature: float, seed: int) -> bytes:
        """A strip: the two images (uint8 (C, H, W)) at its ends, between them the decoded posterior means on
        the straight line from a's top latents to b's."""
        with self.lock, torch.inference_mode():
            mu = self.model.encode(torch.stack([a, b]).to(self.model.device)).mu.float().cpu()  # (2, D)
        t = torch.linspace(0, 1, steps).unsqueeze(1)  # (steps, 1)
        decoded = self._decode((1 - t) * mu[0] + t * mu[1], temperature, seed)
        originals = torch.stack([a, b]).float().div(255)
        return self._png(torch.cat([originals[:1], decoded, originals[1:]]), ncol=steps + 2)

    def reconstruct(self, x: torch.Tensor) -> bytes:
        """The image (uint8 (C, H, W)) beside its reconstruction through every group's posterior mean."""
        with self.lock, torch.inference_mode():
            recon = self.model.reconstruct(x.unsqueeze(0)).float().cpu()
        return self._png(torch.cat([x.unsqueeze(0).float().div(255), recon]), ncol=2)

    def test_image(self, index: int) -> torch.Tensor:
        return self.images[index]

    def read_upload(self, data: bytes) -> torch.Tensor:
        """An uploaded image file as uint8 (C, H, W) of the model's shape (VaelabError if it is not one)."""
        c, h, w = self.model.image_shape
        if c not in (1, 3) or h != w:
            raise VaelabError(f"this model's images ({c}x{h}x{w}) cannot be read from image files")
        return decode_image(data, size=h, grayscale=c == 1, max_pixels=MAX_PIXELS)

    def _decode(self, z: torch.Tensor, temperature: float, seed: int) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] on the CPU for top latents (B, D)."""
        g = torch.Generator().manual_seed(seed)  # the lower groups' noise is drawn on the CPU
        with self.lock, torch.inference_mode():
            return self.model.decode(z.to(self.model.device), temperature=temperature, generator=g).float().cpu()

    @staticmethod
    def _png(images: torch.Tensor, ncol: int = 1) -> bytes:
        if len(images) == 1:
            pixels = (images[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, C)
            return png_bytes(Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels))
        return png_bytes(Image.fromarray(tile(images, ncol=ncol)))


def load_explorer(run, *, device: str = "cpu", weights: str = "ema", data_dir=None, subset: int = SUBSET) -> Explorer:
    """The `Explorer` of a run directory or checkpoint: its model and its dataset's test split."""
    model = load_model(run, device=device, weights=weights)
    data = model.config.data
    test = load_split(data, "test", data_dir)
    return Explorer(
        model,
        test.images,
        labels=test.labels,
        class_names=test.class_names,
        dynamic_binarize=data.binarize == "dynamic",
        subset=subset,
    )


def untrained_explorer(preset: str, *, images: int = 256, seed: int = 0) -> Explorer:
    """An `Explorer` of a preset's freshly built (untrained) model on random test images with ten labels:
    what the benchmark times and the tests drive, with no run folder and no dataset."""
    cfg = PRESETS[preset].config
    shape = image_shape(cfg.data.name, cfg.data.image_size, cfg.data.grayscale)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the weights' initialisation
    model = build_model(cfg.model, cfg.objective, shape)
    model.config = cfg
    pixels = torch.randint(0, 256, (images, *shape), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (images,), generator=g)
    return Explorer(model, pixels, labels=labels, class_names=tuple(map(str, range(10))), seed=seed)
