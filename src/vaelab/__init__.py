"""vaelab: variational autoencoders on images, trained, measured and shown."""

__version__ = "0.1.0"

from .api import Run, evaluate, load, presets, resolve_config, resume, train  # noqa: E402
from .config import DataConfig, ModelConfig, ObjectiveConfig, RunConfig, TrainConfig  # noqa: E402
from .errors import VaelabError  # noqa: E402
from .models import VAE, build_model, register_decoder, register_encoder  # noqa: E402

__all__ = [
    "DataConfig", "ModelConfig", "ObjectiveConfig", "Run", "RunConfig", "TrainConfig", "VAE", "VaelabError",
    "__version__", "build_model", "evaluate", "load", "presets", "register_decoder", "register_encoder",
    "resolve_config", "resume", "train",
]
