"""Presets: named, complete run configs. Presets are data, not code.

The five seed presets reproduce the systems in `shared/seeds/` layer for
layer (their trainable parameter counts equal the seeds' own summaries).
Where a seed was loose or wrong, the description says what we chose.
vaelab's own strong presets (`mnist-resnet`, `mnist-hvae`, `fashion-hvae`,
`cifar-hvae`, `folder-hvae`) use the residual networks; `shapes-vae` is the
convolutional VAE of the disentanglement studies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import DataConfig, ModelConfig, ObjectiveConfig, RunConfig, TrainConfig
from .registry import Registry


@dataclass(frozen=True)
class Preset:
    name: str
    seed: str  # the seed write-up it reproduces, or "" for vaelab's own
    description: str  # one line for `vaelab presets`
    notes: str  # choices and deviations, for the docs
    config: RunConfig


PRESETS: Registry[Preset] = Registry("preset")

DEFAULT_PRESET = "cvae2"
FOLDER_PRESET = "folder-hvae"  # the default for --dataset folder:PATH, and what the refusal to binarise colour suggests
FOLDER_PLACEHOLDER = "folder:"  # folder-hvae's dataset until --dataset folder:PATH names the folder


def _add(
    name: str,
    seed: str,
    description: str,
    notes: str,
    *,
    data: DataConfig,
    model: ModelConfig,
    objective: ObjectiveConfig,
    train: TrainConfig,
) -> None:
    cfg = RunConfig(preset=name, data=data, model=model, objective=objective, train=train)
    PRESETS.register(name, Preset(name, seed, description, notes, cfg))


_add(
    "mlp2",
    "004 (tf.keras blog)",
    "MLP 784-256-2 on MNIST, summed BCE + KL, Adam, batch 64, 10 epochs",
    "Grey levels in [0,1] as Bernoulli targets (as the seed). The final sigmoid is the "
    "Bernoulli's logit link. Glorot-uniform init, zero biases (Keras defaults).",
    data=DataConfig(name="mnist"),
    model=ModelConfig(encoder="mlp2", decoder="mlp2", latent_dim=2, likelihood="bernoulli"),
    objective=ObjectiveConfig(kl="analytic", beta=1.0),
    train=TrainConfig(optimizer="adam", lr=1e-3, batch_size=64, epochs=10),
)

_add(
    "keras-conv2",
    "002 (Keras intro)",
    "4-conv encoder, dense 32, latent 2 on MNIST, BCE + 0.392 KL, RMSprop, batch 256, 10 epochs",
    "The seed's per-pixel mean BCE + 5e-4 * mean-over-dims KL equals summed BCE + beta KL "
    "with beta = 784 * 5e-4 * 2 / 2 = 0.392. The seed samples with exp(log var) as the std: "
    "fixed, z = mu + exp(log var / 2) * eps. RMSprop with Keras' defaults (lr 1e-3, rho 0.9, eps 1e-7); "
    "its first steps overshoot (log var jumps to ~38 for one step, so epoch 1's mean training loss is huge; "
    "the seed's own loss plot starts at epoch 2).",
    data=DataConfig(name="mnist"),
    model=ModelConfig(encoder="keras-conv2", decoder="keras-conv2", latent_dim=2, likelihood="bernoulli"),
    objective=ObjectiveConfig(kl="analytic", beta=0.392),
    train=TrainConfig(optimizer="rmsprop", lr=1e-3, batch_size=256, epochs=10),
)

_add(
    "cvae2",
    "003 (TensorFlow CVAE tutorial)",
    "2-conv CVAE, latent 2, statically binarised MNIST, single-sample MC ELBO, Adam 1e-4, batch 32",
    "Binarised once at 0.5 (pixel >= 128). Trains on all 60,000 training images and validates "
    "on the test set each epoch, as the tutorial does (val_size = 0). Glorot-uniform init.",
    data=DataConfig(name="mnist", binarize="static", val_size=0),
    model=ModelConfig(encoder="cvae2", decoder="cvae2", latent_dim=2, likelihood="bernoulli"),
    objective=ObjectiveConfig(kl="mc", beta=1.0),
    train=TrainConfig(optimizer="adam", lr=1e-4, batch_size=32, epochs=10, sample_grid=16),
)

_add(
    "conv16",
    "001 (MATLAB example)",
    "2-conv encoder, latent 16, Gaussian (sigma 1) recon + KL on MNIST, Adam 1e-3, batch 128, 30 epochs",
    "MATLAB's mse() is half the summed squared error: a Gaussian with sigma = 1 up to a constant, "
    "which vaelab includes so the ELBO is in nats. Partial last batch dropped, as the seed does.",
    data=DataConfig(name="mnist"),
    model=ModelConfig(encoder="conv16", decoder="conv16", latent_dim=16, likelihood="gaussian", sigma=1.0),
    objective=ObjectiveConfig(kl="analytic", beta=1.0),
    train=TrainConfig(optimizer="adam", lr=1e-3, batch_size=128, epochs=30, drop_last=True),
)

_add(
    "cifar128",
    "000 (TensorFlow CIFAR-10 blog)",
    "4 conv+BN down, 2 dense + 6 convT+BN up, latent 128 on CIFAR-10, BCE + KL, Adam, batch 128, 100 epochs",
    "The seed's KL treats log var as log sigma: fixed, the correct KL is used. Its BCE is a mean "
    "over the 3 channels, i.e. summed BCE / 3; vaelab reports the summed BCE in nats and keeps the "
    "seed's balance with beta = 3 (Adam is invariant to the overall scale). Keras BatchNorm defaults.",
    data=DataConfig(name="cifar10"),
    model=ModelConfig(encoder="cifar128", decoder="cifar128", latent_dim=128, likelihood="bernoulli"),
    objective=ObjectiveConfig(kl="analytic", beta=3.0),
    train=TrainConfig(optimizer="adam", lr=1e-3, batch_size=128, epochs=100),
)

_add(
    "mnist-resnet",
    "",
    "residual VAE, 32-D latent, dynamically binarised MNIST, blocks at 14 and 7 px, Adam 1e-3 cosine, EMA, 60 epochs",
    "The strong single-latent baseline between the seed presets and the hierarchy: VDVAE's residual blocks "
    "(32 channels, 2 per resolution) to a 32-D Gaussian latent and back, Bernoulli likelihood on MNIST binarised "
    "afresh each epoch (the likelihood benchmark of the papers). Validates on 5,000 training images.",
    data=DataConfig(name="mnist", binarize="dynamic"),
    model=ModelConfig(encoder="resnet", decoder="resnet", latent_dim=32, width=32, depth=2, resolutions=(14, 7)),
    objective=ObjectiveConfig(kl="analytic"),
    train=TrainConfig(
        optimizer="adam", lr=1e-3, lr_schedule="cosine", warmup_steps=200, ema=0.999, batch_size=128, epochs=60
    ),
)

_add(
    "mnist-hvae",
    "",
    "hierarchical VAE, 8 latent groups at 1x1 and 7x7, dynamically binarised MNIST, KL warm-up, free bits, EMA, 70 "
    "epochs",
    "VDVAE/NVAE-style top-down hierarchy: 4 groups of 8 channels at 1x1 and 4 at 7x7, 64 channels, one residual "
    "block per resolution and group, Bernoulli likelihood on MNIST binarised afresh each epoch. KL warm-up over "
    "5,000 steps and 0.5 free nats per group keep the top groups in use. Chosen on the validation split against "
    "blocks at 14x14 (slower, worse ELBO after 3 epochs) and against no free bits (the 1x1 groups collapsed).",
    data=DataConfig(name="mnist", binarize="dynamic"),
    model=ModelConfig(encoder="hvae", decoder="hvae", latent_dim=8, width=64, depth=1, resolutions=(7, 1), groups=4),
    objective=ObjectiveConfig(kl="analytic", kl_warmup_steps=5000, free_bits=0.5, free_bits_per="group"),
    train=TrainConfig(
        optimizer="adam", lr=2e-3, lr_schedule="cosine", warmup_steps=200, ema=0.999, batch_size=128, epochs=70
    ),
)

_add(
    "cifar-hvae",
    "",
    "hierarchical VAE, 8 latent groups at 16, 8, 4 and 1 px, CIFAR-10 at 8 bits, logistic mixture, EMA, 22 epochs",
    "VDVAE/NVAE-style top-down hierarchy on colour images: 2 groups of 16 channels at each of 16x16, 8x8, 4x4 and "
    "1x1, 64 channels, 2 residual blocks per resolution and group, a discretised mixture of 10 logistics per pixel "
    "(PixelCNN++), so the ELBO is a bound on the likelihood of the 8-bit images in bits per dim. Sized to train "
    "in about 90 minutes on a 2-core CPU; a short KL warm-up and 0.5 free nats per group keep every group in use.",
    data=DataConfig(name="cifar10"),
    model=ModelConfig(
        encoder="hvae",
        decoder="hvae",
        latent_dim=16,
        likelihood="discretized-logistic-mixture",
        width=64,
        depth=2,
        resolutions=(16, 8, 4, 1),
        groups=2,
    ),
    objective=ObjectiveConfig(kl="analytic", kl_warmup_steps=500, free_bits=0.5, free_bits_per="group"),
    train=TrainConfig(
        optimizer="adam", lr=2e-3, lr_schedule="cosine", warmup_steps=200, ema=0.999, batch_size=128, epochs=22
    ),
)

_add(
    "fashion-hvae",
    "",
    "hierarchical VAE, 8 latent groups at 1x1 and 7x7, Fashion-MNIST at 8 bits, logistic mixture, EMA, 15 epochs",
    "mnist-hvae's hierarchy on the grey levels of Fashion-MNIST: a discretised mixture of 10 logistics per pixel, "
    "so the ELBO bounds the likelihood of the 8-bit images in bits per dim. 4 groups of 8 channels at 1x1 and 4 "
    "at 7x7, 64 channels, one residual block per resolution and group; KL warm-up over 2,000 steps and 0.5 free "
    "nats per group.",
    data=DataConfig(name="fashion-mnist"),
    model=dataclasses.replace(PRESETS["mnist-hvae"].config.model, likelihood="discretized-logistic-mixture"),
    objective=dataclasses.replace(PRESETS["mnist-hvae"].config.objective, kl_warmup_steps=2000),
    train=dataclasses.replace(PRESETS["mnist-hvae"].config.train, epochs=15),
)

_add(
    "folder-hvae",
    "",
    "cifar-hvae's hierarchy for your own images (--dataset folder:PATH) at 32 px, or 64 with --image-size 64",
    "The default for --dataset folder:PATH. cifar-hvae's networks and objective on a folder of images resized to "
    "32x32 (colour, or grey with --grayscale). At --image-size 64 the same maps (16 px and below) serve, and the "
    "output layer lays out a 4x4 patch per position: add 32 to --resolutions for finer detail at about 4 times "
    "the cost. The epochs suit a few thousand to tens of thousands of images: --epochs or --time-limit for more "
    "or less.",
    data=DataConfig(name=FOLDER_PLACEHOLDER, image_size=32),
    model=PRESETS["cifar-hvae"].config.model,
    objective=PRESETS["cifar-hvae"].config.objective,
    train=dataclasses.replace(PRESETS["cifar-hvae"].config.train, epochs=30),
)

_add(
    "shapes-vae",
    "",
    "the disentanglement studies' conv VAE on shapes (64 px), latent 10, Bernoulli: beta-VAE, beta-TCVAE, FactorVAE",
    "Burgess et al. 2018's encoder and decoder as Locatello et al. 2019 trained every model of their comparison "
    "with (4 strided convs to 4x4, dense 256, 10 latent dims), a Bernoulli likelihood on the binary shapes images, "
    "Adam, batch 64. The objective is the ELBO (beta-VAE with beta = 1); the comparison's other rows are flags: "
    "--beta 4, --objective btcvae --tc-weight 6, --objective factorvae --tc-weight 35. Their papers train for "
    "300,000 steps at Adam 1e-4; this preset's budget is about a quarter of an hour on a 2-core CPU (14,000 steps), "
    "so its learning rate is 1e-3, chosen on the validation split.",
    data=DataConfig(name="shapes"),
    model=ModelConfig(encoder="shapes-conv", decoder="shapes-conv", latent_dim=10, likelihood="bernoulli"),
    objective=ObjectiveConfig(kl="analytic"),
    train=TrainConfig(optimizer="adam", lr=1e-3, batch_size=64, epochs=50),
)
