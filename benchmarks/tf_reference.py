"""The seed 003 recipe in TensorFlow, timed the way benchmarks.train times vaelab: the reference to beat.

    PYTHON_WITH_TF benchmarks/tf_reference.py [--batch 32] [--steps 200] [--repeats 3]
    PYTHON_WITH_TF benchmarks/tf_reference.py --recipe MNIST_DIR [--epochs 10]

Runs with any Python that has TensorFlow (it imports neither torch nor
vaelab); `python -m benchmarks.train --reference PYTHON_WITH_TF` runs it
beside vaelab's cases in the same run. The model, loss and optimiser are the
tutorial's: two strided convolutions, a dense layer, three transposed
convolutions, the single-sample Monte Carlo ELBO, Adam(1e-4), batch 32, and
its `@tf.function` train step. Prints one JSON line: images/s and ms/step
(best of --repeats blocks of --steps steps, after warm-up). With --recipe,
runs the whole tutorial instead on the MNIST files in MNIST_DIR (static
binarisation at 0.5, tf.data shuffle and batch, the test ELBO after every
epoch as the tutorial computes it) and prints one JSON line per epoch with
the wall time since the start, then a summary line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import time
from pathlib import Path

import numpy as np
import tensorflow as tf


def cvae(latent_dim: int = 2):
    layers = tf.keras.layers
    encoder = tf.keras.Sequential(
        [
            layers.InputLayer(input_shape=(28, 28, 1)),
            layers.Conv2D(32, 3, strides=2, activation="relu"),
            layers.Conv2D(64, 3, strides=2, activation="relu"),
            layers.Flatten(),
            layers.Dense(2 * latent_dim),
        ]
    )
    decoder = tf.keras.Sequential(
        [
            layers.InputLayer(input_shape=(latent_dim,)),
            layers.Dense(7 * 7 * 32, activation="relu"),
            layers.Reshape((7, 7, 32)),
            layers.Conv2DTranspose(64, 3, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(32, 3, strides=2, padding="same", activation="relu"),
            layers.Conv2DTranspose(1, 3, strides=1, padding="same"),
        ]
    )
    return encoder, decoder


def log_normal(z, mean, logvar):
    return tf.reduce_sum(-0.5 * ((z - mean) ** 2 * tf.exp(-logvar) + logvar + math.log(2 * math.pi)), axis=1)


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX image file (gzipped) as float32 (N, 28, 28, 1), binarised at 0.5 as the tutorial does."""
    data = gzip.decompress(path.read_bytes())
    n, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    images = np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols, 1) / 255.0
    return np.where(images > 0.5, 1.0, 0.0).astype("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recipe", metavar="MNIST_DIR", help="train the whole tutorial on these MNIST files")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    encoder, decoder = cvae()
    variables = encoder.trainable_variables + decoder.trainable_variables
    optimizer = tf.keras.optimizers.Adam(1e-4)

    def elbo(x):
        mean, logvar = tf.split(encoder(x), 2, axis=1)
        z = tf.random.normal(tf.shape(mean)) * tf.exp(0.5 * logvar) + mean
        logits = decoder(z)
        logpx_z = -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(logits=logits, labels=x), axis=[1, 2, 3])
        return logpx_z + log_normal(z, 0.0, 0.0) - log_normal(z, mean, logvar)

    @tf.function
    def train_step(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(elbo(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    if args.recipe:
        recipe(args, train_step, tf.function(elbo))
        return

    x = tf.constant((np.random.default_rng(0).random((args.batch, 28, 28, 1)) > 0.5).astype("float32"))
    for _ in range(20):
        train_step(x)
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.steps):
            loss = train_step(x)
        loss.numpy()  # wait for the last step
        best = min(best, (time.perf_counter() - start) / args.steps)
    print(
        json.dumps(
            {
                "case": f"tensorflow-cvae2:{args.batch}",
                "ms_per_step": best * 1e3,
                "images_per_s": args.batch / best,
                "tensorflow": tf.__version__,
            }
        )
    )


def recipe(args, train_step, elbo) -> None:
    """The tutorial's training loop, timed from the first batch; its test ELBO after every epoch."""
    root = Path(args.recipe)
    train = read_idx_images(root / "train-images-idx3-ubyte.gz")
    test = read_idx_images(root / "t10k-images-idx3-ubyte.gz")
    train_ds = tf.data.Dataset.from_tensor_slices(train).shuffle(len(train)).batch(args.batch)
    test_ds = tf.data.Dataset.from_tensor_slices(test).shuffle(len(test)).batch(args.batch)
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        epoch_start = time.perf_counter()
        for x in train_ds:
            train_step(x)
        train_seconds = time.perf_counter() - epoch_start
        mean = tf.keras.metrics.Mean()
        for x in test_ds:
            mean(elbo(x))
        print(
            json.dumps(
                {
                    "epoch": epoch,
                    "test_elbo": float(mean.result()),
                    "train_seconds": train_seconds,
                    "wall_seconds": time.perf_counter() - start,
                }
            ),
            flush=True,
        )
    print(
        json.dumps(
            {
                "recipe": "tensorflow-cvae2",
                "epochs": args.epochs,
                "test_elbo": float(mean.result()),
                "wall_seconds": time.perf_counter() - start,
                "tensorflow": tf.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
