"""Disentanglement metrics: the pure functions (`metrics`) and their glue to a run and its dataset (`measure`)."""

from .metrics import DCIResult, FactorVAEResult, MIGResult, dci, factorvae_score, mig

__all__ = ["DCIResult", "FactorVAEResult", "MIGResult", "dci", "factorvae_score", "mig"]
