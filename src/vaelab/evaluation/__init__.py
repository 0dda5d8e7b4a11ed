"""Measuring a model: ELBO and its parts on a split."""

from .elbo import evaluate_elbo

__all__ = ["evaluate_elbo"]
