"""The real datasets under VAELAB_DATA_DIR (CI: ../shared/data), loaded with download disabled."""

import pytest
import torch

from vaelab.data import dataset_status, load_images
from vaelab.errors import VaelabError

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _load(name, split, root):
    return load_images(name, split, data_dir=root, download=False)


def _check(images, n, shape):
    assert images.images.shape == (n, *shape) and images.images.dtype == torch.uint8
    assert images.images.is_contiguous()
    assert images.labels.shape == (n,) and images.labels.dtype == torch.int64
    assert 0 < images.images.float().mean() < 255


def test_mnist(real_root):
    train, test = _load("mnist", "train", real_root), _load("mnist", "test", real_root)
    _check(train, 60_000, (1, 28, 28))
    _check(test, 10_000, (1, 28, 28))
    assert torch.bincount(train.labels).tolist() == MNIST_TRAIN_COUNTS
    assert torch.bincount(test.labels).tolist() == MNIST_TEST_COUNTS
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert train.class_names == tuple("0123456789")


def test_fashion_mnist(real_root):
    train, test = _load("fashion-mnist", "train", real_root), _load("fashion-mnist", "test", real_root)
    _check(train, 60_000, (1, 28, 28))
    _check(test, 10_000, (1, 28, 28))
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert train.labels[:3].tolist() == [9, 0, 0]
    assert train.class_names[9] == "Ankle boot"


def test_cifar10(real_root):
    train, test = _load("cifar10", "train", real_root), _load("cifar10", "test", real_root)
    _check(train, 50_000, (3, 32, 32))
    _check(test, 10_000, (3, 32, 32))
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    # Per-batch class counts of data_batch_1 equal the original's (shared/data/cifar10/README.md).
    assert torch.bincount(train.labels[:10_000]).tolist() == [1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981]
    assert train.class_names[0] == "airplane" and train.class_names[9] == "truck"
    # Channel means in [0, 1] as in the README (R, G, B): catches a wrong plane order.
    means = train.images[:10_000].float().mean(dim=(0, 2, 3)) / 255
    assert means[0] > means[1] > means[2] and abs(means[2].item() - 0.4465) < 0.01


def test_status_all_present(real_root):
    rows = {row.name: row for row in dataset_status(real_root)}
    for name in ("mnist", "fashion-mnist", "cifar10"):
        assert rows[name].present, rows[name].missing
        assert rows[name].path == real_root / name


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_image_size_error_mentions_folder_and_shapes(real_root, name):
    with pytest.raises(VaelabError, match="folder:PATH and shapes"):
        load_images(name, "test", data_dir=real_root, image_size=32)
