"""`optim.update`: fused Adam's kernel called directly gives what `optimizer.step()` gives, bit for bit."""

import pytest
import torch

from vaelab.training import optim


def twins(**adam):
    """Two identical parameter sets with Adam optimisers: one for `update`, one for `step()`."""
    torch.manual_seed(0)
    params = [torch.randn(5, 3), torch.randn(3), torch.randn(4, 2, 3, 3).contiguous(memory_format=torch.channels_last)]

    def make():
        ps = [p.clone().requires_grad_() for p in params]
        groups = [{"params": ps[:2]}, {"params": ps[2:], "lr": 3e-3}]
        return ps, torch.optim.Adam(groups, lr=1e-2, fused=True, **adam)

    return make(), make()


def give_grads(params, step, skip=()):
    g = torch.Generator().manual_seed(step)
    for k, p in enumerate(params):
        layout = torch.channels_last if p.dim() == 4 else torch.contiguous_format
        p.grad = None if k in skip else torch.randn(p.shape, generator=g).contiguous(memory_format=layout)


def assert_same(a, opt_a, b, opt_b):
    for p, q in zip(a, b):
        assert torch.equal(p, q)
    sa, sb = opt_a.state_dict(), opt_b.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        for name, v in sa["state"][k].items():
            assert torch.equal(v, sb["state"][k][name]), (k, name)


@pytest.mark.parametrize(
    "adam",
    [
        {},
        {"amsgrad": True},
        {"weight_decay": 0.1, "maximize": True},
        {"weight_decay": 0.1, "decoupled_weight_decay": True},
    ],
)
def test_update_matches_step_bit_for_bit(adam, monkeypatch):
    (a, opt_a), (b, opt_b) = twins(**adam)
    steps_taken = []
    real_step = torch.optim.Adam.step

    def counted(self, *args, **kwargs):
        if self is opt_a:
            steps_taken.append(step)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    for step in range(5):
        skip = (1,) if step == 3 else ()  # a parameter without a gradient is left alone, as step() leaves it
        give_grads(a, step, skip)
        give_grads(b, step, skip)
        opt_b.step()
        optim.update(opt_a)
        assert steps_taken == [0]  # the first step makes the state: step(); the later ones the direct call
        assert_same(a, opt_a, b, opt_b)


def test_update_takes_step_where_step_does_more():
    (a, opt_a), _ = twins()
    give_grads(a, 0)
    opt_a.step()  # the state exists: the direct call would be taken
    seen = []
    opt_a.register_step_pre_hook(lambda opt, args, kwargs: seen.append("pre"))
    opt_a.register_step_post_hook(lambda opt, args, kwargs: seen.append("post"))
    give_grads(a, 1)
    optim.update(opt_a)
    assert seen == ["pre", "post"]

    (a, opt_a), _ = twins()
    give_grads(a, 0)
    opt_a.step()
    opt_a.step = lambda: seen.append("patched")
    optim.update(opt_a)
    assert seen[-1] == "patched"

    rms_params = [torch.zeros(3, requires_grad=True)]
    rms = torch.optim.RMSprop(rms_params, lr=0.1)
    rms_params[0].grad = torch.ones(3)
    optim.update(rms)
    assert rms.state[rms_params[0]]["step"] == 1 and not torch.equal(rms_params[0], torch.zeros(3))

    (a, opt_a), (b, opt_b) = twins()
    opt_a.param_groups[0]["lr"] = opt_b.param_groups[0]["lr"] = torch.tensor(1e-2)  # a tensor learning rate
    for step in range(3):
        give_grads(a, step)
        give_grads(b, step)
        optim.update(opt_a)
        opt_b.step()
    assert_same(a, opt_a, b, opt_b)
