"""One registry per kind of model part; configs store the names."""

from __future__ import annotations

from .. import plugins
from ..config import RunConfig
from ..errors import VaelabError
from ..registry import Registry

ENCODERS: Registry = Registry("encoder")
"""name -> factory(image_shape: (C, H, W), out_features: int) -> nn.Module mapping (B, C, H, W) to (B, out_features)."""

DECODERS: Registry = Registry("decoder")
"""name -> factory(image_shape: (C, H, W), latent_dim: int, out_channels: int) -> nn.Module mapping (B, D) to
(B, out_channels, H, W)."""

POSTERIORS: Registry = Registry("posterior")
PRIORS: Registry = Registry("prior")
LIKELIHOODS: Registry = Registry("likelihood")


def register_encoder(name: str, factory=None):
    """Make a custom encoder usable by name in configs: `factory(image_shape, out_features) -> nn.Module`."""
    return ENCODERS.register(name, factory)


def register_decoder(name: str, factory=None):
    """Make a custom decoder usable by name: `factory(image_shape, latent_dim, out_channels) -> nn.Module`."""
    return DECODERS.register(name, factory)


OBJECTIVES: Registry = Registry("objective")
"""name -> factory(ObjectiveConfig) -> callable(model, x) -> dict of per-example terms; a factory that declares a
keyword `model` also gets the ModelConfig (FactorVAE sizes its discriminator from it). Optional parts of the
objective, used by the trainer: `attach(model, dataset_size)` (checks the model and takes the training set's size
before training), `auxiliary_optimizer()` and `auxiliary_step(z, optimizer)` (a second update after each applied
step, on that step's latents `latents`, as FactorVAE's discriminator)."""


def _parts(cfg: RunConfig) -> list[tuple[Registry, str]]:
    """Each part of a run's model as (its registry, the name the config gives it)."""
    m = cfg.model
    return [
        (ENCODERS, m.encoder),
        (DECODERS, m.decoder),
        (POSTERIORS, m.posterior),
        (PRIORS, m.prior),
        (LIKELIHOODS, m.likelihood),
        (OBJECTIVES, cfg.objective.name),
    ]


def plugin_modules(cfg: RunConfig) -> tuple[str, ...]:
    """The modules outside vaelab that registered the run's parts, each once, in the order of the parts.

    What a run records as `RunConfig.plugins`; a part that is not registered
    is an error (`require_parts` first, to import the modules a config names).
    """
    modules: list[str] = []
    for registry, name in _parts(cfg):
        registry[name]  # an unknown name raises here
        module = registry.provider(name)
        if module is not None and not plugins.is_builtin(module) and module not in modules:
            modules.append(module)
    return tuple(modules)


def require_parts(cfg: RunConfig) -> None:
    """Make every part of a saved run's model known before it is built.

    Where one is not registered (after the installed plugins), the modules the
    run recorded are imported; a part still unknown is a one-line VaelabError
    saying what to import. A run of registered parts imports nothing.
    """
    if all(registry.find(name) is not None for registry, name in _parts(cfg)):
        return
    failures = {}
    for module in cfg.plugins:
        if module != plugins.SCRIPT:
            failure = plugins.try_import(module)
            if failure is not None:
                failures[module] = failure
    for registry, name in _parts(cfg):
        if registry.find(name) is None:
            raise VaelabError(f"{registry.unknown(name)}; {plugins.missing_hint(registry.kind, cfg.plugins, failures)}")
