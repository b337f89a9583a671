"""Optimisers, parameter groups (weight decay, layer-wise rates) and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from modelspec.network import ClassifierNet, LeNet5
from training.config import FitConfig
from training.engine.optim import Schedule, build_optimizer, l1_penalty, make_schedule, make_scheduler, parameter_groups
from training.engine.transfer import Phase, backbone_stages


def lenet(classes: int = 4) -> tuple[ClassifierNet, list]:  # type: ignore[type-arg]
    torch.manual_seed(0)
    network = ClassifierNet(LeNet5(batch_norm=True), 84, classes)
    return network, backbone_stages(network.backbone)


def groups_for(network: ClassifierNet, stages: list, phase: Phase, **kwargs: float) -> list[dict]:  # type: ignore[type-arg]
    return parameter_groups(network, stages, phase, lr=kwargs.pop("lr", 0.1), weight_decay=0.01, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "lr", "kwargs", "kind"),
    [
        ("sgd", 0.05, {}, torch.optim.SGD),
        ("sgd", 0.05, {"momentum": 0.8, "nesterov": True}, torch.optim.SGD),
        ("rmsprop", 0.002, {}, torch.optim.RMSprop),
        ("adam", 0.005, {}, torch.optim.Adam),
        ("adamw", 0.005, {}, torch.optim.AdamW),
    ],
    ids=["sgd", "sgd-nesterov", "rmsprop", "adam", "adamw"],
)
def test_each_optimizer_learns(name: str, lr: float, kwargs: dict[str, object], kind: type) -> None:
    network, stages = lenet()
    groups = groups_for(network, stages, Phase("all", 1, None), lr=lr)
    optimizer = build_optimizer(name, groups, lr=lr, **kwargs)  # type: ignore[arg-type]
    assert isinstance(optimizer, kind)
    if name == "sgd":
        assert optimizer.param_groups[0]["momentum"] == kwargs.get("momentum", 0.9)
        assert optimizer.param_groups[0]["nesterov"] == kwargs.get("nesterov", False)
    images, labels = torch.randn(16, 3, 32, 32), torch.arange(16) % 4
    losses = []
    for _ in range(15):
        loss = nn.functional.cross_entropy(network(images)[0], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses


def test_weight_decay_spares_biases_and_norms() -> None:
    network, stages = lenet()
    groups = groups_for(network, stages, Phase("all", 1, None))
    for group in groups:
        dims = {p.ndim for p in group["params"]}
        assert (group["weight_decay"] == 0.0) == (dims == {1}), group["name"]
    assert sum(len(g["params"]) for g in groups) == len(list(network.parameters()))


def test_layer_decay_gives_lower_rates_to_earlier_stages() -> None:
    network, stages = lenet()
    groups = groups_for(network, stages, Phase("two", 1, None, lr_scale=0.5), lr=0.1, layer_decay=0.5)
    rates = {g["name"]: g["lr"] for g in groups if "no decay" not in g["name"]}
    assert rates == pytest.approx({"classifier": 0.05, "fc": 0.025, "block2": 0.0125, "block1": 0.00625})


def test_frozen_stages_get_no_group() -> None:
    network, stages = lenet()
    for p in network.backbone.parameters():
        p.requires_grad_(False)
    groups = groups_for(network, stages, Phase("head", 1, 0))
    assert {g["name"] for g in groups} == {"classifier", "classifier (no decay)"}


def test_l1_penalty_is_the_sum_of_absolute_values() -> None:
    weights = [nn.Parameter(torch.tensor([[1.0, -2.0]])), nn.Parameter(torch.tensor([[-3.0]]))]
    assert l1_penalty(weights).item() == 6.0


def lrs_through_scheduler(schedule: Schedule, lr0: float, steps: int) -> list[float]:
    """The rate the optimiser actually uses at each step 0 .. steps-1, with the scheduler stepped as in training."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr0)
    scheduler = make_scheduler(optimizer, schedule)
    seen = []
    for _ in range(steps):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_linear_decay_matches_the_lecture_formula() -> None:
    """lr_k = (1 - a) lr_0 + a lr_tau with a = k / tau for k <= tau, then lr_tau (Goodfellow et al., 8.3.1)."""
    lr0, lr_tau, tau = 0.1, 0.001, 40
    schedule = Schedule("linear", decay_steps=tau, end_ratio=lr_tau / lr0)
    seen = lrs_through_scheduler(schedule, lr0, 60)
    for k in (0, 1, 7, 20, 39, 40, 41, 59):
        a = min(k / tau, 1.0)
        expected = (1 - a) * lr0 + a * lr_tau
        assert seen[k] == pytest.approx(expected, rel=1e-12, abs=0), k
    assert seen[40] == seen[59] == pytest.approx(lr_tau, rel=1e-12)


def test_linear_decay_after_warmup_counts_k_from_the_end_of_warmup() -> None:
    schedule = Schedule("linear", warmup_steps=5, decay_steps=10, end_ratio=0.1)
    seen = lrs_through_scheduler(schedule, 1.0, 20)
    assert seen[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert seen[5] == pytest.approx(1.0)
    assert seen[10] == pytest.approx(0.5 * 1.0 + 0.5 * 0.1)
    assert seen[15:] == pytest.approx([0.1] * 5)


def test_cosine_step_and_constant_schedules() -> None:
    cosine = Schedule("cosine", decay_steps=100, end_ratio=0.0)
    assert [cosine.lr(1.0, k) for k in (0, 50, 100, 150)] == pytest.approx([1.0, 0.5, 0.0, 0.0], abs=1e-12)
    assert cosine.lr(1.0, 25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    step = Schedule("step", step_size=10, gamma=0.1)
    assert [step.lr(1.0, k) for k in (0, 9, 10, 25)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    constant = Schedule("constant", warmup_steps=2)
    assert [constant.lr(0.3, k) for k in range(4)] == pytest.approx([0.15, 0.3, 0.3, 0.3])


def test_make_schedule_converts_epochs_to_steps() -> None:
    config = FitConfig.model_validate(
        {"data": "d", "lr": 0.1, "lr_end": 0.01, "schedule": "linear", "warmup_epochs": 0.5, "decay_epochs": 2}
    )
    schedule = make_schedule(config, steps_per_epoch=10, epochs=4)
    assert (schedule.warmup_steps, schedule.decay_steps, schedule.end_ratio) == (5, 20, pytest.approx(0.1))
    default = make_schedule(FitConfig.model_validate({"data": "d"}), steps_per_epoch=10, epochs=4)
    assert default.decay_steps == 40 and default.end_ratio == 0.01  # tau: the whole phase; lr_tau: 1 % of lr_0


def test_discriminative_rates_follow_the_schedule_together() -> None:
    network, stages = lenet()
    groups = groups_for(network, stages, Phase("all", 1, None), lr=1.0, layer_decay=0.5)
    optimizer = build_optimizer("sgd", groups, lr=1.0)
    scheduler = make_scheduler(optimizer, Schedule("linear", decay_steps=4, end_ratio=0.0))
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([g["initial_lr"] * 0.5 for g in groups])
