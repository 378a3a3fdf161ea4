"""The plain networks: shapes from the data, the seed architecture, freezing, activations, inits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lit_nets.core.models.nets import ACTIVATIONS, CNN
from lit_nets.models import CNNClassifier


def test_default_cnn_is_the_seed_architecture() -> None:
    net = CNN(in_channels=1, num_outputs=10, image_size=(28, 28))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 32, (3, 3)),
        (32, 64, (3, 3)),
    ]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(64 * 7 * 7, 128), (128, 10)]
    assert sum(p.numel() for p in net.parameters()) == 421_642


@pytest.mark.parametrize(("shape", "classes"), [((1, 28, 28), 10), ((3, 32, 32), 7), ((3, 45, 61), 2)])
def test_cnn_takes_its_shape_from_the_data(shape: tuple[int, int, int], classes: int) -> None:
    model = CNNClassifier(num_classes=classes, input_shape=shape, mean=[0.5] * shape[0], std=[0.25] * shape[0])
    x = torch.randint(0, 256, (4, *shape), dtype=torch.uint8)
    assert model(x).shape == (4, classes)
    assert model(x.float() / 255).shape == (4, classes)


def test_two_convs_a_block_stack_before_each_pooling() -> None:
    """convs_per_block 2 (configs/mnist_best.yaml): VGG's pairs, the second keeping the block's channels; the same
    pooling, so the same head; Grad-CAM's default layer is the last block's second activation."""
    net = CNN(channels=(32, 64), convs_per_block=2, batch_norm=True)
    convs = [(c.in_channels, c.out_channels) for c in net.modules() if isinstance(c, torch.nn.Conv2d)]
    assert convs == [(1, 32), (32, 32), (32, 64), (64, 64)]
    assert net.classifier.fc1.in_features == 64 * 7 * 7 and net.cam_layer == "features.act2b"
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="convs_per_block must be 1 or 2"):
        CNN(convs_per_block=3)


def test_too_small_images_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="too small"):
        CNN(image_size=(3, 3), channels=(8, 8, 8))


def _batches(sample: tuple[torch.Tensor, torch.Tensor], n: int = 512):
    x, y = sample
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(y), generator=g)[:n]
    return x[idx].float() / 255, y[idx]


@pytest.mark.parametrize("convs", [1, 2])
def test_freeze_keeps_weights_and_batchnorm_statistics_bit_identical(sample, convs: int) -> None:
    """Block 1 frozen stays bit-identical, both of its convolutions when it has two (convs_per_block 2)."""
    x, y = _batches(sample)
    net = CNN(batch_norm=True, freeze=[1], convs_per_block=convs)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    net.train()
    for i in range(0, len(y), 64):
        loss = F.cross_entropy(net(x[i : i + 64]), y[i : i + 64])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = net.state_dict()
    frozen = [
        k for k in before if k.startswith(("features.conv1.", "features.bn1.", "features.conv1b.", "features.bn1b."))
    ]
    assert frozen, "block 1 has parameters and BatchNorm buffers"
    assert ("features.conv1b.weight" in frozen) == (convs == 2)
    for k in frozen:
        assert torch.equal(before[k], after[k]), f"{k} changed although block 1 is frozen"
    for k in ("features.conv2.weight", "features.bn2.running_mean", "classifier.fc2.weight"):
        assert not torch.equal(before[k], after[k]), f"{k} did not train"


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_every_activation_trains(sample, activation: str) -> None:
    torch.manual_seed(0)
    x, y = _batches(sample)
    net = CNN(activation=activation, init="kaiming" if activation != "gelu" else "default")
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    first = F.cross_entropy(net(x), y).item()
    for _ in range(3):
        for i in range(0, len(y), 64):
            loss = F.cross_entropy(net(x[i : i + 64]), y[i : i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        logits = net(x)
    acc = (logits.argmax(1) == y).float().mean().item()
    assert F.cross_entropy(logits, y).item() < first / 3
    assert acc > 0.85, f"{activation}: training accuracy {acc:.3f} after 3 epochs on 512 digits"


@pytest.mark.parametrize("init", ["kaiming", "xavier"])
def test_init_schemes_set_the_expected_spread(init: str) -> None:
    torch.manual_seed(0)
    net = CNN(init=init)
    w = net.features.conv2.weight  # fan_in = 32 * 9, fan_out = 64 * 9
    fan_in, fan_out = 32 * 9, 64 * 9
    expected = (2 / fan_in) ** 0.5 if init == "kaiming" else (2 / (fan_in + fan_out)) ** 0.5
    assert w.std().item() == pytest.approx(expected, rel=0.1)
    assert torch.count_nonzero(net.features.conv2.bias) == 0


def test_every_class_and_public_function_of_the_package_has_a_docstring() -> None:
    """Docstrings are the CLI's help and the reader's first stop: a docstring placed after a class attribute is no
    docstring at all (``CNN.__doc__`` was None that way)."""
    import importlib
    import inspect
    import pkgutil

    import lit_nets

    missing = []
    for info in pkgutil.walk_packages(lit_nets.__path__, "lit_nets."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (obj.__doc__ or "").strip():
                missing.append(f"{module.__name__}.{name}")
    assert CNN.__doc__.startswith("A small convolutional classifier")
    assert not missing, missing
