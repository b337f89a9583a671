"""Transfer modes: what trains in each, stage definitions for every family, frozen BatchNorm in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelspec.network import ClassifierNet, build_backbone
from training import backbones
from training.config import FitConfig
from training.engine.transfer import Phase, apply_phase, backbone_stages, count_parameters, plan_phases, set_train_mode

# LeNet-5 without batch norm: conv1 block 456, conv2 block 2,416, fully connected 58,284 parameters.
LENET_STAGES = {"block1": 456, "block2": 2416, "fc": 58284}
HEAD_3_CLASSES = 84 * 3 + 3


def network_for(name: str, classes: int = 3, *, meta: bool = False) -> tuple[ClassifierNet, list]:  # type: ignore[type-arg]
    info = backbones.resolve(name)
    with torch.device("meta" if meta else "cpu"):
        backbone, size = build_backbone(info.architecture(pretrained=False, dropout=0.0))
        network = ClassifierNet(backbone, size, classes)
    return network, backbone_stages(backbone)


def config(**values: object) -> FitConfig:
    return FitConfig.model_validate({"data": "data", **values})


@pytest.mark.parametrize(
    ("values", "trainable"),
    [
        ({"mode": "feature-extractor"}, [HEAD_3_CLASSES]),
        ({"mode": "fine-tune"}, [HEAD_3_CLASSES + sum(LENET_STAGES.values())]),
        ({"mode": "partial"}, [HEAD_3_CLASSES + LENET_STAGES["fc"]]),
        ({"mode": "partial", "unfreeze": 2}, [HEAD_3_CLASSES + LENET_STAGES["fc"] + LENET_STAGES["block2"]]),
        ({"mode": "two-phase", "epochs": 3}, [HEAD_3_CLASSES, HEAD_3_CLASSES + sum(LENET_STAGES.values())]),
        ({"mode": "two-phase", "epochs": 3, "unfreeze": 1}, [HEAD_3_CLASSES, HEAD_3_CLASSES + LENET_STAGES["fc"]]),
    ],
    ids=["feature-extractor", "fine-tune", "partial-1", "partial-2", "two-phase", "two-phase-partial"],
)
def test_trainable_parameters_per_mode(values: dict[str, object], trainable: list[int]) -> None:
    network, stages = network_for("lenet5")
    assert {stage.name: stage.size for stage in stages} == LENET_STAGES
    phases = plan_phases(config(**values))
    counts = []
    for phase in phases:
        apply_phase(network, stages, phase)
        counts.append(count_parameters(network))
    assert [t for t, _ in counts] == trainable
    assert all(total == HEAD_3_CLASSES + sum(LENET_STAGES.values()) for _, total in counts)


def test_two_phase_schedule_of_epochs_and_learning_rate() -> None:
    first, second = plan_phases(config(mode="two-phase", epochs=5, head_epochs=2, finetune_lr_scale=0.05))
    assert (first.epochs, first.trainable_stages, first.lr_scale) == (2, 0, 1.0)
    assert (second.epochs, second.trainable_stages, second.lr_scale) == (3, None, 0.05)


@pytest.mark.parametrize(
    ("name", "last_stages"),
    [
        ("lenet5", ["block2", "fc"]),
        ("vgg11_bn", ["block5", "classifier"]),
        ("vgg16_bn", ["block5", "classifier"]),
        ("googlenet", ["inception4", "inception5"]),
        ("inception_v3", ["Mixed_6", "Mixed_7"]),
        ("resnet18", ["layer3", "layer4"]),
        ("resnet50", ["layer3", "layer4"]),
        ("mobilenet_v3_large", ["features.16", "classifier"]),
        ("efficientnet_b0", ["features.7", "features.8"]),
        ("efficientnet_lite0", ["blocks.5", "blocks.6+conv_head+bn2"]),
        ("convnext_tiny", ["features.6", "features.7+classifier"]),
    ],
)
def test_every_backbone_parameter_is_in_exactly_one_stage(name: str, last_stages: list[str]) -> None:
    network, stages = network_for(name, meta=True)  # shapes only: no memory, no initialisation
    names = [n for stage in stages for n, _ in stage.parameters]
    assert sorted(names) == sorted(n for n, _ in network.backbone.named_parameters())
    assert [stage.name for stage in stages][-2:] == last_stages
    apply_phase(network, stages, Phase("partial", 1, 1))
    trainable, _ = count_parameters(network)
    assert trainable == stages[-1].size + sum(p.numel() for p in network.classifier.parameters())


def test_feature_extractor_keeps_the_backbone_in_eval_mode() -> None:
    network, stages = network_for("timm:test_efficientnet")
    apply_phase(network, stages, Phase("feature-extractor", 1, 0))
    set_train_mode(network, network)
    assert network.training and network.classifier.training and not network.backbone.training
    assert not any(m.training for m in network.backbone.modules())
    before = {k: v.clone() for k, v in network.backbone.state_dict().items()}
    step(network)
    after = network.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "frozen BatchNorm statistics moved"


def test_partial_keeps_frozen_batchnorm_in_eval_and_trains_the_rest() -> None:
    network, stages = network_for("timm:test_efficientnet")
    apply_phase(network, stages, Phase("partial", 1, 1))
    set_train_mode(network, network)
    trained = {id(p) for _, p in stages[-1].parameters}
    norms = [m for m in network.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms
    for module in norms:
        own_trainable = any(id(p) in trained for p in module.parameters(recurse=False))
        assert module.training == own_trainable
    assert any(m.training for m in norms) and any(not m.training for m in norms)


def test_fine_tune_trains_everything_in_train_mode() -> None:
    network, stages = network_for("timm:test_efficientnet")
    apply_phase(network, stages, Phase("fine-tune", 1, None))
    set_train_mode(network, network)
    assert all(m.training for m in network.modules())
    trainable, total = count_parameters(network)
    assert trainable == total


def step(network: ClassifierNet) -> None:
    optimizer = torch.optim.SGD([p for p in network.parameters() if p.requires_grad], lr=0.1)
    logits, _ = network(torch.randn(4, 3, 32, 32))
    nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()
