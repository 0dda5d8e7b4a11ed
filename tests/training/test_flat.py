"""The flat optimiser updates exactly as the per-parameter one does, and speaks its state-dict format."""

import pytest
import torch

import vaelab
from vaelab import runtime
from vaelab.models import build_model
from vaelab.training.flat import FlatOptimizer
from vaelab.training.optim import build_optimizer
from vaelab.training.step import train_step

CPU = torch.device("cpu")


def _pair(preset="cvae2", optimizer="adam"):
    cfg = vaelab.presets()[preset]
    cfg = vaelab.config.apply_overrides(cfg, {"train": {"optimizer": optimizer}})
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(runtime.place(build_model(cfg.model, cfg.objective, (1, 28, 28)), CPU))  # channels-last
    flat = build_optimizer(models[0].parameters(), cfg.train)
    plain = build_optimizer(models[1].parameters(), cfg.train, flat=False)
    return cfg, models, flat, plain


def _steps(models, optimizers, n, **kw):
    x = torch.bernoulli(torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    x = x.contiguous(memory_format=runtime.batch_memory_format(models[0]))
    for step in range(n):
        for model, opt in zip(models, optimizers):
            torch.manual_seed(step)
            train_step(model, opt, x, **kw)


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_the_flat_optimizer_takes_the_same_steps_as_the_per_parameter_one(optimizer):
    _, (a, b), flat, plain = _pair(optimizer=optimizer)
    assert isinstance(flat, FlatOptimizer) and not isinstance(plain, FlatOptimizer)
    _steps((a, b), (flat, plain), 4, grad_clip=1.0)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
        assert p.stride() == q.stride(), name  # channels-last weights stay channels-last
    # the model's parameters live in the one buffer, and so do their gradients
    buffer = flat.flat.untyped_storage().data_ptr()
    assert all(p.untyped_storage().data_ptr() == buffer for p in a.parameters())
    assert all(p.grad.untyped_storage().data_ptr() == flat.flat.grad.untyped_storage().data_ptr()
               for p in a.parameters())


def test_its_state_dict_is_the_per_parameter_one_and_loads_both_ways():
    cfg, (a, b), flat, plain = _pair()
    _steps((a, b), (flat, plain), 3)
    sa, sb = flat.state_dict(), plain.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for i in sb["state"]:
        for key, value in sb["state"][i].items():
            torch.testing.assert_close(sa["state"][i][key], value, rtol=1e-6, atol=1e-9, msg=f"{i} {key}")
    # per-parameter state (as checkpoints hold it, contiguous) into a flat optimiser, and flat state into a plain one
    torch.manual_seed(0)
    c = runtime.place(build_model(cfg.model, cfg.objective, (1, 28, 28)), CPU)
    c.load_state_dict(b.state_dict())
    flat_c = build_optimizer(c.parameters(), cfg.train)
    flat_c.load_state_dict({"state": {i: {k: v.contiguous() for k, v in s.items()} for i, s in sb["state"].items()},
                            "param_groups": sb["param_groups"]})
    plain.load_state_dict(flat.state_dict())
    _steps((c, b), (flat_c, plain), 2)
    for p, q in zip(c.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_a_state_for_another_model_is_refused():
    _, (a, _), flat, _ = _pair()
    with pytest.raises(ValueError, match="for 3 parameters"):
        flat.load_state_dict({"state": {}, "param_groups": [{"params": [0, 1, 2]}]})


def test_a_parameter_moved_out_of_the_buffer_stops_the_step_loudly():
    _, (a, _), flat, _ = _pair()
    _steps((a,), (flat,), 1)
    a.to(memory_format=torch.contiguous_format)  # new storage for the convolution weights
    with pytest.raises(RuntimeError, match="flat buffer"):
        _steps((a,), (flat,), 1)
