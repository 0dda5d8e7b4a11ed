"""vaelab: variational autoencoders on images, trained, measured and shown."""

from .version import __version__  # noqa: I001 (first: the version needs nothing else)
from .api import Run, anomaly_scores, evaluate, load, plot, presets, report, resolve_config, resume, train  # noqa: E402
from .config import DataConfig, ModelConfig, ObjectiveConfig, RunConfig, TrainConfig  # noqa: E402
from .errors import VaelabError  # noqa: E402
from .models import VAE, build_model, register_decoder, register_encoder  # noqa: E402

__all__ = [
    "DataConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "Run",
    "RunConfig",
    "TrainConfig",
    "VAE",
    "VaelabError",
    "__version__",
    "anomaly_scores",
    "build_model",
    "evaluate",
    "load",
    "plot",
    "presets",
    "register_decoder",
    "register_encoder",
    "report",
    "resolve_config",
    "resume",
    "train",
]
