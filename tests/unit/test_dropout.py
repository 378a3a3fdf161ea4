"""The recipe's CPU dropout (lit_nets.core.models.dropout): torch's dropout in distribution, faster to draw."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lit_nets.core.models.dropout import CPUDropout, keep_mask, use_cpu_dropout
from lit_nets.core.models.ensemble import TabularEnsemble


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_each_position_is_dropped_with_probability_p_and_the_rest_scaled(p) -> None:
    torch.manual_seed(0)
    x = torch.ones(4000, 4, 64)  # 1M elements: the kept share is within 0.0015 of 1 - p (5 sigma at p = 0.5)
    out = CPUDropout(p)(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 1.5e-3
    # every lane of the 64-bit words is uniform: a sign bit left at 0 would keep every fourth element
    for lane in range(4):
        share = kept.flatten()[lane::4].float().mean().item()
        assert abs(share - (1 - p)) < 3e-3, (lane, share)
    assert torch.allclose(out[kept], torch.tensor(1 / (1 - round(p * 65536) / 65536)))
    assert abs(out.mean().item() - 1.0) < 5e-3  # inverted dropout: the expected output is the input


def test_the_gradient_flows_through_the_kept_elements_only_and_a_seed_repeats_the_mask() -> None:
    x = torch.randn(300, 7, requires_grad=True)
    drop = CPUDropout(0.3)
    torch.manual_seed(1)
    out = drop(x)
    out.sum().backward()
    assert torch.equal(x.grad != 0, out != 0)
    torch.manual_seed(1)
    assert torch.equal(drop(x), out)
    drop.eval()
    assert torch.equal(drop(x), x)  # eval mode: the identity


def test_probabilities_too_fine_for_16_bits_fall_back_to_torch() -> None:
    x = torch.ones(10)
    assert keep_mask(x, 1e-6) is None and keep_mask(x, 1 - 1e-6) is None
    assert torch.equal(CPUDropout(0.0)(x), x)


def test_the_recipes_network_takes_it_and_loads_an_nn_dropout_state() -> None:
    net = TabularEnsemble(numeric=2, dense_features=2, onehot=[], embeddings=[], num_outputs=3, ensemble=2)
    drops = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(type(m) is CPUDropout for m in drops)
    plain = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.2))
    state = plain.state_dict()
    use_cpu_dropout(plain)
    assert type(plain[1]) is CPUDropout and plain[1].p == 0.2
    plain.load_state_dict(state)  # no parameters of its own: a checkpoint of either loads into the other
