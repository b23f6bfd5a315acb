"""Local training: the channels-last fast path does the same SGD as a textbook loop."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from flower_dl.node.models import build_model
from flower_dl.node.training import evaluate, fast_layout, train


def _data(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def _textbook(model, x, y, *, epochs, lr, momentum, batch_size, generator):
    """Default layout, plain SGD: what ``train`` must agree with."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for start in range(0, len(y), batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_train_matches_a_textbook_sgd_loop(name):
    x, y = _data()
    ours, reference = build_model(name, seed=1), build_model(name, seed=1)
    kwargs = dict(epochs=2, lr=0.01, momentum=0.5, batch_size=32)
    torch.manual_seed(5)  # dropout masks
    loss = train(ours, x, y, generator=torch.Generator().manual_seed(3), **kwargs)
    torch.manual_seed(5)
    _textbook(reference, x, y, generator=torch.Generator().manual_seed(3), **kwargs)
    for (key, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        assert a.is_contiguous(), f"{key} is handed back in a non-default layout"
        # same arithmetic, other summation order in the convolutions: float32 rounding only
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{name}: {key} differs")
    assert loss > 0


def test_fast_layout_is_channels_last_inside_and_default_after():
    model = build_model("cnn", seed=0)
    with fast_layout(model):
        assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        assert not model.conv2.weight.is_contiguous()
    assert all(p.is_contiguous() for p in model.parameters())
    mlp = build_model("mlp", seed=0)
    with fast_layout(mlp):  # nothing to change for a model without convolutions
        assert all(p.is_contiguous() for p in mlp.parameters())


def test_evaluate_counts_correct_predictions():
    x, y = _data(64)
    model = build_model("cnn", seed=0)
    model.eval()
    with torch.no_grad():
        expected = (model(x).argmax(1) == y).float().mean().item()
        expected_loss = F.cross_entropy(model(x), y).item()
    loss, acc = evaluate(model, x, y, batch_size=20)
    assert acc == pytest.approx(expected)
    assert loss == pytest.approx(expected_loss, rel=1e-5)


def test_proximal_term_keeps_the_model_closer_to_where_it_started():
    x, y = _data()
    start = build_model("mlp", seed=2)
    initial = torch.cat([p.detach().flatten() for p in start.parameters()])
    drift = {}
    for mu in (0.0, 10.0):
        model = build_model("mlp", seed=2)
        torch.manual_seed(0)
        train(
            model,
            x,
            y,
            epochs=2,
            lr=0.05,
            momentum=0.5,
            batch_size=32,
            generator=torch.Generator().manual_seed(0),
            proximal_mu=mu,
        )
        drift[mu] = (torch.cat([p.detach().flatten() for p in model.parameters()]) - initial).norm().item()
    assert drift[10.0] < drift[0.0]


def test_no_samples_gives_nan_loss_and_leaves_the_model():
    model = build_model("mlp", seed=0)
    before = [p.clone() for p in model.parameters()]
    loss = train(
        model, torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long), epochs=1, lr=0.1, momentum=0.0, batch_size=8
    )
    assert loss != loss  # NaN
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_momentum_sgd_is_bit_identical_to_torch_optim_sgd(momentum):
    from flower_dl.node.training import MomentumSGD

    x, y = _data(128)
    ours, reference = build_model("cnn", seed=4), build_model("cnn", seed=4)
    opt_ours = MomentumSGD(ours.parameters(), lr=0.02, momentum=momentum)
    opt_ref = torch.optim.SGD(reference.parameters(), lr=0.02, momentum=momentum)
    for step in range(5):
        batch = slice(step * 16, step * 16 + 16)
        for model, opt in ((ours, opt_ours), (reference, opt_ref)):
            torch.manual_seed(step)  # same dropout masks
            opt.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()
    for a, b in zip(ours.parameters(), reference.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["cnn", "mlp"])
def test_a_correction_moves_every_step_outside_the_momentum(name):
    """Gradient tracking's correction: each step is ``w <- w - lr (momentum step) - lr c``."""
    x, y = _data(64)
    ours, reference = build_model(name, seed=1), build_model(name, seed=1)
    correction = {k: torch.full_like(p, 0.01 * (i + 1)) for i, (k, p) in enumerate(ours.named_parameters())}
    kwargs = dict(epochs=1, lr=0.05, momentum=0.5, batch_size=32)
    torch.manual_seed(5)
    train(ours, x, y, generator=torch.Generator().manual_seed(3), correction=correction, **kwargs)
    # by hand: torch's SGD on the loss, then the correction's shift, per step
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.5)
    torch.manual_seed(5)
    reference.train()
    order = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    for start in (0, 32):
        idx = order[start : start + 32]
        optimizer.zero_grad()
        F.cross_entropy(reference(x[idx]), y[idx]).backward()
        optimizer.step()
        with torch.no_grad():
            for k, p in reference.named_parameters():
                p -= 0.05 * correction[k]
    for (key, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=key)


def test_num_steps_counts_the_mini_batches():
    from flower_dl.node.training import num_steps

    assert num_steps(64, 1, 32) == 2 and num_steps(65, 3, 32) == 9 and num_steps(0, 2, 32) == 0


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_a_reused_module_trains_as_a_freshly_built_one(name):
    # a node reuses one module per process (Node.model): nothing of the previous message may survive in it
    from flwr.app import ArrayRecord

    from flower_dl.node.models import load_model

    x, y = _data(96)
    cpu = torch.device("cpu")
    first, second = (ArrayRecord(build_model(name, seed=s).state_dict()) for s in (1, 2))
    kwargs = dict(epochs=1, lr=0.05, momentum=0.9, batch_size=32)

    reused = load_model(name, first, cpu)
    train(reused, x, y, generator=torch.Generator().manual_seed(0), **kwargs)  # leaves gradients, eval/train mode
    evaluate(reused, x, y)
    reused = load_model(name, second, cpu, into=reused)
    fresh = load_model(name, second, cpu)
    for a, b in zip(reused.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    torch.manual_seed(4)  # dropout masks, as the node seeds them
    loss_reused = train(reused, x, y, generator=torch.Generator().manual_seed(3), **kwargs)
    torch.manual_seed(4)
    loss_fresh = train(fresh, x, y, generator=torch.Generator().manual_seed(3), **kwargs)
    assert loss_reused == loss_fresh
    for a, b in zip(reused.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
