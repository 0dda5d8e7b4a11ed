"""The Fréchet distance against closed forms, and the classifier whose features it uses."""

from __future__ import annotations

import pytest
import torch

from vaelab.data import ImageSet
from vaelab.evaluation.classifier import classifier_dir, load_or_train
from vaelab.evaluation.frechet import frechet_distance, frechet_from_stats, gaussian_stats


def feats(n=500, f=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, f, generator=g, dtype=torch.float64) @ torch.randn(f, f, generator=g, dtype=torch.float64)


def random_spd(f, g):
    a = torch.randn(f, f, generator=g, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(f, dtype=torch.float64)


def test_identical_sets_are_at_distance_zero():
    a = feats()
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_a_pure_mean_shift_costs_its_squared_length():
    a = feats()
    shift = torch.tensor([1.0, -2.0, 0.5, 0, 0, 3.0, 0, 0], dtype=torch.float64)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift.pow(2).sum()), rel=1e-8, abs=1e-8)


def test_symmetric():
    a, b = feats(seed=1), feats(n=300, seed=2) * 1.5 + 0.3
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    assert frechet_distance(a, b) > 0


def test_commuting_covariances_match_the_closed_form():
    # S_a = Q diag(a) Q^T, S_b = Q diag(b) Q^T: FD = |dmu|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    g = torch.Generator().manual_seed(3)
    for f in (1, 3, 10):
        q, _ = torch.linalg.qr(torch.randn(f, f, generator=g, dtype=torch.float64))
        a, b = torch.rand(f, generator=g, dtype=torch.float64) * 4, torch.rand(f, generator=g, dtype=torch.float64)
        mu_a, mu_b = torch.randn(f, generator=g, dtype=torch.float64), torch.randn(f, generator=g, dtype=torch.float64)
        fd = frechet_from_stats(mu_a, q @ torch.diag(a) @ q.T, mu_b, q @ torch.diag(b) @ q.T)
        expected = (mu_a - mu_b).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum()
        assert fd == pytest.approx(float(expected), rel=1e-8, abs=1e-10)


def test_non_commuting_2x2_covariances_match_the_closed_form():
    # For 2x2 PSD M: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)), with M = S_a^1/2 S_b S_a^1/2:
    # tr M = tr(S_a S_b), det M = det S_a det S_b.
    g = torch.Generator().manual_seed(4)
    for _ in range(20):
        sa, sb = random_spd(2, g), random_spd(2, g)
        mu_a, mu_b = torch.randn(2, generator=g, dtype=torch.float64), torch.randn(2, generator=g, dtype=torch.float64)
        cross = torch.sqrt(torch.trace(sa @ sb) + 2 * torch.sqrt(torch.det(sa) * torch.det(sb)))
        expected = (mu_a - mu_b).pow(2).sum() + torch.trace(sa) + torch.trace(sb) - 2 * cross
        assert frechet_from_stats(mu_a, sa, mu_b, sb) == pytest.approx(float(expected), rel=1e-8)


def test_gaussian_stats_are_mean_and_unbiased_covariance():
    a = feats(n=50, f=3)
    mu, cov = gaussian_stats(a)
    torch.testing.assert_close(mu, a.mean(0))
    torch.testing.assert_close(cov, torch.cov(a.T))


def labelled_images(n, seed):
    """Bright or dark 8x8 images, labelled by brightness: a task a tiny classifier learns at once."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    base = torch.where(labels.view(n, 1, 1, 1) == 1, 180.0, 60.0)
    images = (base + 40 * torch.randn(n, 1, 8, 8, generator=g)).clamp(0, 255).to(torch.uint8)
    return ImageSet(images=images, labels=labels, class_names=("dark", "bright"))


def test_classifier_is_trained_once_cached_and_read_back(tmp_path):
    train, test = labelled_images(256, 0), labelled_images(128, 1)
    first = load_or_train("toy", train, test, cache_dir=tmp_path, epochs=3, batch_size=32)
    assert first.trained and first.path.parent == classifier_dir(tmp_path) and first.path.suffix == ".safetensors"
    assert first.accuracy > 0.9
    assert [p.name for p in first.path.parent.iterdir()] == [first.path.name]  # no temp file left behind
    again = load_or_train("toy", train, test, cache_dir=tmp_path, epochs=3, batch_size=32)
    assert not again.trained and again.accuracy == first.accuracy and again.path == first.path
    torch.testing.assert_close(again.features(test.images), first.features(test.images))
    assert first.features(test.images).shape == (128, 128)
    other = load_or_train("toy", train, test, cache_dir=tmp_path, epochs=1)  # another recipe, another file
    assert other.path != first.path


def test_a_damaged_cache_file_is_retrained(tmp_path):
    train, test = labelled_images(64, 0), labelled_images(32, 1)
    first = load_or_train("toy", train, test, cache_dir=tmp_path, epochs=1)
    first.path.write_bytes(b"not a safetensors file")
    notes = []
    again = load_or_train("toy", train, test, cache_dir=tmp_path, epochs=1, log=notes.append)
    assert again.trained and again.accuracy == first.accuracy and "unreadable" in notes[0]


def test_unlabelled_data_is_refused(tmp_path):
    train = labelled_images(16, 0)
    with pytest.raises(ValueError, match="no labels"):
        load_or_train("toy", ImageSet(train.images, None, None), train, cache_dir=tmp_path)
