"""Measuring a model: ELBO, IWAE NLL, bits/dim, posterior statistics, a Fréchet distance, anomaly scores.

scores.elbo_per_image / iwae_per_image / posterior_stats   per-image numbers, batched and seeded
iwae.log_weights / iwae_bound                                the importance-weighted bound, chunked
summary.evaluate_model                                       everything `vaelab evaluate` reports
frechet.frechet_distance, classifier.load_or_train           the offline sample-quality score
anomaly.anomaly_scores / auroc                               scores per image and their AUROC
"""

from .anomaly import auroc
from .elbo import evaluate_elbo
from .frechet import frechet_distance
from .iwae import iwae_bound, log_weights
from .scores import elbo_per_image, iwae_per_image, posterior_stats
from .summary import evaluate_model

__all__ = [
    "auroc",
    "elbo_per_image",
    "evaluate_elbo",
    "evaluate_model",
    "frechet_distance",
    "iwae_bound",
    "iwae_per_image",
    "log_weights",
    "posterior_stats",
]
