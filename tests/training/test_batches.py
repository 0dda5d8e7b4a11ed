"""Index-based batching, binarisation and the train/validation carve-out."""

import pytest
import torch

from vaelab.config import DataConfig
from vaelab.errors import VaelabError
from vaelab.training.batches import Batches, binarize_static
from vaelab.training.data import prepare_splits


def _images(n=10):
    return torch.arange(n * 4, dtype=torch.uint8).reshape(n, 1, 2, 2)


def test_epoch_covers_every_image_once_in_a_seeded_order():
    b = Batches(_images(), 3, shuffle=True, seed=7)
    assert len(b) == 4
    batches = list(b.epoch(1))
    assert [len(x) for x in batches] == [3, 3, 3, 1]
    seen = torch.cat(batches)[:, 0, 0, 0] * 255 / 4
    assert sorted(seen.round().long().tolist()) == list(range(10))
    again = torch.cat(list(Batches(_images(), 3, shuffle=True, seed=7).epoch(1)))
    assert torch.equal(torch.cat(batches), again)
    assert not torch.equal(b.order(1), b.order(2))


def test_drop_last_and_values():
    b = Batches(_images(), 3, drop_last=True)
    assert len(b) == 3 and b.num_images == 9
    x = next(iter(b))
    assert x.dtype == torch.float32 and x.max() <= 1
    torch.testing.assert_close(x[0].flatten(), torch.tensor([0.0, 1, 2, 3]) / 255)


def test_drop_last_with_too_few_images_is_an_error():
    with pytest.raises(VaelabError, match="nothing to train on"):
        Batches(_images(2), 3, drop_last=True)


def test_static_and_dynamic_binarisation():
    images = torch.tensor([0, 127, 128, 255], dtype=torch.uint8).reshape(1, 1, 2, 2)
    assert binarize_static(images).flatten().tolist() == [0, 0, 255, 255]
    torch.manual_seed(0)
    grey = torch.full((2000, 1, 2, 2), 64, dtype=torch.uint8)
    x = torch.cat(list(Batches(grey, 500, dynamic_binarize=True)))
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert abs(x.mean().item() - 64 / 255) < 0.02
    batches = Batches(grey, 500, dynamic_binarize=True, seed=1)
    assert not torch.equal(torch.cat(list(batches.epoch(1))), torch.cat(list(batches.epoch(2))))  # every epoch anew
    assert torch.equal(torch.cat(list(batches.epoch(1))), torch.cat(list(batches.epoch(1))))  # from (seed, epoch)


def test_validation_is_a_seeded_disjoint_carve_out(data_root):
    cfg = DataConfig(name="mnist", val_size=1000, split_seed=3, limit=500)
    s = prepare_splits(cfg, data_root)
    assert len(s.val) == 1000 and len(s.train) == 500 and s.val_name == "val"
    full = prepare_splits(DataConfig(name="mnist", val_size=1000, split_seed=3), data_root)
    assert len(full.train) == 59_000
    train_rows = {bytes(r) for r in full.train.images.flatten(1).numpy()}
    val_rows = [bytes(r) for r in full.val.images.flatten(1).numpy()]
    # MNIST holds a handful of duplicate images; the carve-out itself must not share indices.
    assert sum(r in train_rows for r in val_rows) < 10
    again = prepare_splits(cfg, data_root)
    assert torch.equal(again.val.images, s.val.images) and torch.equal(again.val.labels, s.val.labels)
    assert s.train.labels is not None and s.val.labels is not None


def test_val_size_zero_validates_on_test(data_root):
    s = prepare_splits(DataConfig(name="mnist", val_size=0, binarize="static"), data_root)
    assert s.val_name == "test" and len(s.val) == 10_000 and len(s.train) == 60_000
    assert set(s.train.images.unique().tolist()) == {0, 255}


def test_val_size_too_large(data_root):
    with pytest.raises(VaelabError, match="leaves no training images"):
        prepare_splits(DataConfig(name="mnist", val_size=60_000), data_root)
