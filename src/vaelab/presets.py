"""Presets: named, complete run configs. Presets are data, not code.

The five seed presets reproduce the systems in `shared/seeds/` layer for
layer (their trainable parameter counts equal the seeds' own summaries).
Where a seed was loose or wrong, the description says what we chose.
"""

from __future__ import annotations

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
COLOUR_PRESET = "conv16"  # what the refusal to binarise colour images suggests (see the README's own-images recipe)


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
