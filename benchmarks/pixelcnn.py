"""A reference for the 8-bit likelihood targets: the bits/dim a small PixelCNN reaches in the same wall time.

    python -m benchmarks.pixelcnn [--dataset fashion-mnist] [--minutes 21.07] [--channels 64] [--blocks 4]
                                  [--limit 2000] [--seed 0] [--data-dir DIR]

A pixel-autoregressive model (van den Oord et al. 2016: a 7x7 convolution masked to the pixels above and to
the left, then residual blocks of masked 3x3 convolutions) with vaelab's discretised mixture of 10 logistics
per pixel (`vaelab.models.likelihoods`, whose channel coupling orders R, G, B within a pixel as PixelCNN++
does). No latents: each pixel is predicted from the ones before it, the strongest kind of likelihood model one
can train in minutes, so its figure says how far below a VAE's bits/dim a target can sensibly be set. It trains
on the whole training split for --minutes (Adam 1e-3, batch 64, bf16 autocast where the CPU has native bf16,
as vaelab trains) and prints the test bits/dim (mean and standard error) on the first --limit test images,
the images `vaelab evaluate --limit` scores. Nothing is chosen on them: the settings are fixed above.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from vaelab import runtime
from vaelab.data.catalog import load_images
from vaelab.evaluation.summary import mean_and_se, nats_per_bit_dim
from vaelab.models.likelihoods import DiscretizedLogisticMixture

BATCH = 64
LIKELIHOOD = DiscretizedLogisticMixture(10)


class MaskedConv(nn.Conv2d):
    """A square convolution that sees only the pixels above and to the left of its centre; kind "A" also hides
    the centre itself (the first layer: a pixel never sees its own value), kind "B" keeps it."""

    def __init__(self, cin: int, cout: int, kernel: int, kind: str) -> None:
        super().__init__(cin, cout, kernel, padding=kernel // 2)
        mask = torch.ones_like(self.weight)
        centre = kernel // 2
        mask[:, :, centre, centre + (kind == "B") :] = 0
        mask[:, :, centre + 1 :] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.reduce = nn.Conv2d(channels, half, 1)
        self.mix = MaskedConv(half, half, 3, "B")
        self.expand = nn.Conv2d(half, channels, 1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.expand(F.gelu(self.mix(F.gelu(self.reduce(F.gelu(h))))))


def pixelcnn(image_channels: int, channels: int, blocks: int) -> nn.Sequential:
    """Images in [-1, 1] (B, C, H, W) -> the mixture's parameters for each pixel, from the pixels before it."""
    out = LIKELIHOOD.out_channels(image_channels)
    layers = [MaskedConv(image_channels, channels, 7, "A"), *[Block(channels) for _ in range(blocks)]]
    return nn.Sequential(*layers, nn.GELU(), nn.Conv2d(channels, out, 1))


def nll(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """-log p(x) in nats per image for images in [0, 1] (B, C, H, W)."""
    return -LIKELIHOOD.log_prob(net(x * 2 - 1), x)


def train(
    net: nn.Module, images: torch.Tensor, minutes: float, steps: int | None, seed: int, log=print
) -> tuple[int, float]:
    """Train on uint8 images for `minutes` of wall time (or `steps` steps) in batches of 64 (all of them when
    fewer); (steps taken, images/s)."""
    generator = torch.Generator().manual_seed(seed)
    precision = runtime.resolve_precision("auto", torch.device("cpu"), net)
    optimizer = torch.optim.Adam(net.parameters(), 1e-3)
    batch = min(BATCH, len(images))
    start, taken = time.perf_counter(), 0

    def done() -> bool:
        return taken >= steps if steps is not None else time.perf_counter() - start >= minutes * 60

    while not done():
        order = torch.randperm(len(images), generator=generator)
        for i in range(0, len(images) - batch + 1, batch):
            x = images[order[i : i + batch]].float() / 255
            with runtime.autocast(torch.device("cpu"), precision):
                loss = nll(net, x).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            taken += 1
            if taken % 500 == 0:
                bits = float(loss) / nats_per_bit_dim(x.shape[1:])
                log(f"{time.perf_counter() - start:7.0f} s  step {taken}  batch bits/dim {bits:.3f}")
            if done():
                break
    return taken, taken * batch / (time.perf_counter() - start)


@torch.no_grad()
def evaluate(net: nn.Module, images: torch.Tensor) -> tuple[float, float]:
    """(mean, standard error) of the test bits/dim, in fp32."""
    net.eval()
    per_image = torch.cat([nll(net, images[i : i + 250].float() / 255) for i in range(0, len(images), 250)])
    return mean_and_se(per_image / nats_per_bit_dim(images.shape[1:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pixelcnn", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--minutes", type=float, default=21.07, help="wall time of training (fashion-hvae's)")
    parser.add_argument("--steps", type=int, default=None, help="train this many steps instead of --minutes")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--limit", type=int, default=2000, help="score the first N test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    train_images = load_images(args.dataset, "train", data_dir=args.data_dir).images
    test_images = load_images(args.dataset, "test", data_dir=args.data_dir).images[: args.limit]
    net = pixelcnn(train_images.shape[1], args.channels, args.blocks)
    parameters = sum(p.numel() for p in net.parameters())
    steps, speed = train(net, train_images, args.minutes, args.steps, args.seed)
    mean, sem = evaluate(net, test_images)
    print(
        f"PixelCNN ({args.channels} channels, {args.blocks} blocks, {parameters:,} parameters) on {args.dataset}: "
        f"{steps} steps of {min(BATCH, len(train_images))}, {speed:.0f} images/s"
    )
    print(f"test bits/dim, first {len(test_images)} test images: {mean:.4f} ± {sem:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
