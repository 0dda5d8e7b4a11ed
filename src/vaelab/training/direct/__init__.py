"""Training steps without autograd: each layer's backward called directly, the loss's gradient written out.

Same values and gradients as the autograd step (up to float rounding; bf16
gradients bit-identical on cvae2), for the models made only of parts with
rules here: `layers.py` for the networks' layers, `elbo.py` for the
objective, posterior, prior and likelihood. `train_step` uses it where
`direct_step(model)` gives one and falls back to autograd elsewhere.
`forward(net, x)` runs a network through the same rules' forwards where no
gradient is wanted (evaluation's IWAE passes).
"""

from .step import DirectStep, direct_step, forward

__all__ = ["DirectStep", "direct_step", "forward"]
