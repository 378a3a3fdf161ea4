"""The tabular recipe's network (configs/tabular_best.yaml): its members in training, one classifier in eval mode."""

from __future__ import annotations

import pytest
import torch

from lit_nets.core.models.ensemble import TabularEnsemble, ensemble_logits


def net(**kwargs) -> TabularEnsemble:
    torch.manual_seed(0)
    options = dict(numeric=3, dense_features=5, onehot=[2], embeddings=[(6, 4)], num_outputs=3, hidden=[16, 16])
    return TabularEnsemble(**{**options, "ensemble": 4, **kwargs})


def rows(n: int = 8) -> torch.Tensor:
    numbers = torch.randn(n, 3)
    onehot = torch.nn.functional.one_hot(torch.arange(n) % 2, 2).float()
    codes = torch.tensor([[0.0], [1.0], [5.0], [9.0], [-3.0], [2.0], [3.0], [4.0]])[:n]  # 9, -3: outside: unseen
    return torch.cat([numbers, onehot, codes], dim=1)


def test_members_train_apart_and_eval_averages_their_probabilities() -> None:
    model, x = net(), rows()
    members = model(x)
    assert members.shape == (8, 4, 3)  # training: every member's logits, for a loss each
    model.eval()
    with torch.no_grad():
        combined = model(x)
        expected = model.output(model.backbone(model.ensemble_view(model.embed(x))))  # the members, by hand
    assert combined.shape == (8, 3)
    torch.testing.assert_close(combined.softmax(1), expected.softmax(2).mean(1))
    # not the mean logit: that would be another classifier
    assert not torch.allclose(combined.softmax(1), expected.mean(1).softmax(1), atol=1e-4)


def test_a_binary_head_averages_sigmoids() -> None:
    members = torch.tensor([[[4.0], [-2.0]], [[0.0], [0.0]]])
    p = torch.sigmoid(ensemble_logits(members))[:, 0]
    torch.testing.assert_close(
        p, torch.tensor([(torch.sigmoid(torch.tensor(4.0)) + torch.sigmoid(torch.tensor(-2.0))) / 2, 0.5])
    )


def test_periodic_embeddings_widen_each_number_and_unseen_codes_read_as_zero() -> None:
    model, x = net(numeric_embedding_size=5), rows()
    z = model.embed(x)
    assert z.shape == (8, 3 * 5 + 2 + 4) and model.numeric_width == 5
    torch.testing.assert_close(z[3, -4:], z[0, -4:])  # code 9 (outside the table) is code 0
    torch.testing.assert_close(z[4, -4:], z[0, -4:])
    base = model.baseline(z)
    torch.testing.assert_close(base[:, :15], model.embed(torch.zeros(1, 6))[:, :15].expand(8, 15))
    assert (base[:, 15:] == 0).all()
    plain = net(numeric_embedding="none")
    assert plain.embed(x).shape == (8, 3 + 2 + 4) and plain.numeric_width == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden": [32, 16]}, "share one width"),
        ({"ensemble": 0}, "at least 1"),
        ({"numeric_embedding": "spline"}, "periodic or none"),
        ({"frequency_scale": 0.0}, "positive"),
    ],
)
def test_bad_settings_are_named(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        net(**kwargs)
