"""The training step's forward and backward without autograd, for models made only of parts with rules."""

from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.nn.modules import module as _module

from ...models.objectives import ELBO
from ...models.vae import VAE, as_float_images
from . import elbo
from .layers import Rule, fused_rule_for, rule_for

Tensor = torch.Tensor


class Stack:
    """An `nn.Sequential` run through its rules, keeping what each backward needs.

    Each stage is one layer, or two run as one call (a convolution and its
    ReLU): `stages[k]` is (the stage's first layer, its rule, the number of
    parameter slots, a missing bias counting as one).
    """

    def __init__(self, net: nn.Sequential, stages: list[tuple[nn.Module, Rule, int]]) -> None:
        self.modules = list(net)
        self.stages = stages
        self.slot_count = sum(n for _, _, n in stages)
        # a stage's input gradient is needed when a stage below it has weights (a Flatten first has none)
        self._weights_below = [any(n for _, _, n in stages[:k]) for k in range(len(stages))]

    @staticmethod
    def build(net: nn.Module, fuse: bool = True) -> Stack | None:
        if type(net) is not nn.Sequential or len(net) == 0:
            return None
        layers, stages, k = list(net), [], 0
        while k < len(layers):
            m = layers[k]
            pair = fused_rule_for(m, layers[k + 1]) if fuse and k + 1 < len(layers) else None
            rule = pair or rule_for(m)
            if rule is None:
                return None
            stages.append((m, rule, len(m._parameters)))
            k += 2 if pair else 1
        return Stack(net, stages)

    def forward(self, weights: list[Tensor | None], x: Tensor) -> tuple[Tensor, list]:
        saved, i = [], 0
        for m, rule, n in self.stages:
            x, s = rule.forward(m, weights[i : i + n], x)
            saved.append(s)
            i += n
        return x, saved

    def infer(self, weights: list[Tensor | None], x: Tensor) -> Tensor:
        """The output alone: what each layer's backward would need is dropped as soon as it is made."""
        i = 0
        for m, rule, n in self.stages:
            x, _ = rule.forward(m, weights[i : i + n], x)
            i += n
        return x

    def backward(
        self, weights: list[Tensor | None], saved: list, grad: Tensor, need_input_grad: bool
    ) -> tuple[Tensor | None, list]:
        """The input's gradient (None unless asked for) and the weights' gradients, in `weights`' order."""
        grads: list = [None] * len(weights)
        end = len(weights)
        for k in range(len(self.stages) - 1, -1, -1):
            m, rule, n = self.stages[k]
            grad, g = rule.backward(
                m, weights[end - n : end], saved[k], grad, self._weights_below[k] or need_input_grad
            )
            grads[end - n : end] = g
            end -= n
            if grad is None:  # nothing below has weights, and the input's gradient was not asked for
                break
        return grad, grads


class DirectStep:
    """Forward and backward of the ELBO for one model: the same values and gradients as autograd, faster.

    Each layer's backward is called directly, the weights are cast to bf16
    once per step, and the loss's gradient is written out per example. On 2
    CPU cores that makes a cvae2 step at batch 32 1.09x to 1.12x faster in
    bf16 and about 1.08x in fp32 (`python -m benchmarks train --cases
    cvae2:32:auto cvae2:32:auto:autograd`). Only the whole step pays: one
    autograd node per network with these same backward calls, a fused loss,
    or bf16 weights cast once under autograd each gained 1.005x to 1.03x.
    It holds the model's layers and parameters, not the model.
    """

    def __init__(self, encoder: Stack, decoder: Stack, slots: list[Tensor | None]) -> None:
        self.encoder, self.decoder = encoder, decoder
        self.slots = slots
        self.params = [p for p in slots if p is not None]
        self._ids = {id(p) for p in self.params}
        self._cast: dict[torch.dtype, list[Tensor]] = {}

    def bypasses_nothing(self, model: VAE) -> bool:
        """No hooks that autograd would run, no frozen or non-CPU parameters, none outside the two networks'
        layers (which have no sublayers: each has a rule)."""
        modules = (model, model.encoder, model.decoder, *self.encoder.modules, *self.decoder.modules)
        return (
            all(
                p.requires_grad
                and p.device.type == "cpu"
                and not p._backward_hooks
                and not getattr(p, "_post_accumulate_grad_hooks", None)
                for p in self.params
            )
            and not model._parameters
            and model._modules.keys() == {"encoder", "decoder"}
            and not any(_hooked(m) for m in modules)
            and not _global_hooks()
        )

    def clear_other_grads(self, optimizer: torch.optim.Optimizer) -> None:
        """Drop the gradient of any parameter the optimiser holds besides the model's: this step sets none."""
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None and id(p) not in self._ids:
                    p.grad = None

    def _weights(self, dtype: torch.dtype) -> list[Tensor | None]:
        """The parameters (None for a missing bias) in `dtype`: cast in place into buffers kept between steps."""
        if dtype == self.params[0].dtype:
            return list(self.slots)
        bufs = self._cast.get(dtype)
        if bufs is None:
            bufs = self._cast[dtype] = [torch.empty_like(p, dtype=dtype) for p in self.params]
        torch._foreach_copy_(bufs, self.params)
        it = iter(bufs)
        return [None if p is None else next(it) for p in self.slots]

    def __call__(self, model: VAE, x: Tensor, dtype: torch.dtype, weight: float) -> dict[str, Tensor]:
        """The per-example terms; each parameter's `.grad` is set to d(weight * sum of losses)/d parameter."""
        with torch.no_grad():
            weights = self._weights(dtype)
            n_enc = self.encoder.slot_count
            w_enc, w_dec = weights[:n_enc], weights[n_enc:]
            x = as_float_images(x)
            h, enc_saved = self.encoder.forward(w_enc, x.to(dtype))
            latent = elbo.Latent(model, h)
            out, dec_saved = self.decoder.forward(w_dec, latent.z.to(dtype))
            terms, grad_out = elbo.terms_and_grad(model, latent, out, x, weight)
            grad_z, dec_grads = self.decoder.backward(w_dec, dec_saved, grad_out.to(out.dtype), need_input_grad=True)
            grad_h = latent.backward(grad_z.float(), weight)
            _, enc_grads = self.encoder.backward(w_enc, enc_saved, grad_h.to(h.dtype), need_input_grad=False)
            self._store([g for g in enc_grads + dec_grads if g is not None])
        return terms

    def _store(self, grads: list[Tensor]) -> None:
        """Into each parameter's `.grad`: a gradient in the parameter's dtype and layout becomes it, as
        autograd's does; the others (bf16) are cast into buffers kept between steps."""
        dests, casts = [], []
        for p, g in zip(self.params, grads):
            if g.dtype == p.dtype and g.stride() == p.stride():
                p.grad = g
            else:
                if p.grad is None or p.grad.stride() != p.stride():
                    p.grad = torch.empty_like(p)
                dests.append(p.grad)
                casts.append(g)
        if dests:
            torch._foreach_copy_(dests, casts)


_AS_DEFINED = (VAE.forward, VAE.encode, ELBO.__call__)  # before anyone patches them


def _parts(model: VAE) -> tuple:
    """What a direct step is built from: the two networks, their layers, the layers' types (the rules
    follow them) and their parameters (None: no bias)."""
    nets = (model.encoder, model.decoder)
    layers = [m for net in nets for m in net] if all(type(n) is nn.Sequential for n in nets) else []
    return (*nets, *layers, *map(type, layers), *_slots(layers))


def _slots(layers) -> list[Tensor | None]:
    """The layers' parameters in order, None where a bias is missing."""
    return [p for m in layers for p in m._parameters.values()]


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)


def _global_hooks() -> bool:
    return bool(
        _module._global_forward_hooks
        or _module._global_forward_pre_hooks
        or _module._global_backward_hooks
        or _module._global_backward_pre_hooks
    )


# model -> (its parts when built, its step or None); the values hold the parts, not the model
_steps: weakref.WeakKeyDictionary[VAE, tuple[tuple, DirectStep | None]] = weakref.WeakKeyDictionary()


def direct_step(model: nn.Module) -> DirectStep | None:
    """The direct step for `model`, or None where it takes the autograd path.

    Direct: a `VAE` on the CPU whose encoder and decoder are `nn.Sequential`
    stacks of layers with rules (`layers.py`), every parameter trainable, no
    hooks on its modules or parameters, and an ELBO with the parts `elbo.py`
    knows. Anything else (BatchNorm, a DDP wrapper, GPUs, frozen layers, other
    objectives, a forward hook someone registered) keeps autograd. A step is
    rebuilt when a network, layer or parameter has been replaced.
    """
    if type(model) is not VAE or (VAE.forward, VAE.encode, ELBO.__call__) != _AS_DEFINED:
        return None  # a subclass, or a patched method, computes something the direct step would not
    parts = _parts(model)
    cached = _steps.get(model)
    if cached is None or not _same(cached[0], parts):
        cached = _steps[model] = (parts, _build(model))
    step = cached[1]
    return step if step is not None and step.bypasses_nothing(model) else None


# network -> (its layers, their types and parameters when built, its Stack or None); as `_steps`
_stacks: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, Stack | None]] = weakref.WeakKeyDictionary()


def forward(net: nn.Module, x: Tensor) -> Tensor:
    """`net(x)` when no gradient is wanted, through the layers' rules: a convolution and its ReLU as one call.

    The same values as `net(x)` (the rules' forwards make the module's own
    calls, fused), faster where a ReLU follows a convolution: cvae2's
    decoder on 256 latents on 2 CPU cores took 11.3 against 12.5 ms, 1.10x
    (the ReLU's own pass over the maps is left out), and so the IWAE bound.
    `net(x)` itself runs where gradients are being recorded, off the CPU,
    for a network other than an `nn.Sequential` of layers with rules, and
    where a module has hooks (which the rules would not call).
    """
    if torch.is_grad_enabled() or x.device.type != "cpu" or type(net) is not nn.Sequential:
        return net(x)
    layers = list(net)
    slots = _slots(layers)
    parts = (*layers, *map(type, layers), *slots)
    cached = _stacks.get(net)
    if cached is None or not _same(cached[0], parts):
        cached = _stacks[net] = (parts, Stack.build(net))
    stack = cached[1]
    if (
        stack is None
        or any(p is not None and p.device.type != "cpu" for p in slots)
        or _global_hooks()
        or any(_hooked(m) for m in (net, *layers))
    ):
        return net(x)
    return stack.infer(slots, x)


def _build(model: VAE) -> DirectStep | None:
    if not elbo.supported(model):
        return None
    encoder, decoder = Stack.build(model.encoder), Stack.build(model.decoder)
    if encoder is None or decoder is None:
        return None
    return DirectStep(encoder, decoder, _slots(encoder.modules + decoder.modules))
