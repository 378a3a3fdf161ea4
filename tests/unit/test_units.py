"""Fast unit tests of the pieces every command shares, without training or a CLI run: the resumable batch order,
inference (deployable module, probabilities, top-k, loading), the data's model arguments, typed schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_nets.core.data.base import DATA_ARGS, TensorDataModule
from lit_nets.core.data.loaders import EpochBatches
from lit_nets.core.data.schema import ImageSchema, TabularSchema, read_schema
from lit_nets.core.data.splits import Splits, first_inputs, labels_of, size_of
from lit_nets.core.models import deployable
from lit_nets.deploy import inference
from lit_nets.models import CNNClassifier, MLPClassifier


def test_a_resumed_epoch_serves_exactly_the_batches_not_yet_trained_on() -> None:
    """Epoch e's order depends on (seed, e) alone: a fresh sampler started at (e, k) serves that epoch's batches
    from the k-th on, and another epoch's order differs."""
    whole = [b.tolist() for b in _started(EpochBatches(103, 10, shuffle=True, seed=7), 2, 0)]
    resumed = [b.tolist() for b in _started(EpochBatches(103, 10, shuffle=True, seed=7), 2, 4)]
    assert len(whole) == 11 and resumed == whole[4:]
    assert sorted(i for b in whole for i in b) == list(range(103))  # every input once, the last batch partial
    other = [b.tolist() for b in _started(EpochBatches(103, 10, shuffle=True, seed=7), 3, 0)]
    assert other != whole
    assert [b.tolist() for b in EpochBatches(25, 10, shuffle=False, seed=7)] == [
        list(range(10)),
        list(range(10, 20)),
        list(range(20, 25)),
    ]


def _started(sampler: EpochBatches, epoch: int, skip: int) -> EpochBatches:
    sampler.start(epoch, skip)
    return sampler


def test_probabilities_and_top_k_for_both_losses() -> None:
    one_logit = torch.tensor([[0.0], [2.0]])  # BCE: the probability of the second class
    p = deployable.probabilities(one_logit)
    assert torch.allclose(p[:, 1], torch.sigmoid(one_logit[:, 0])) and torch.allclose(p.sum(1), torch.ones(2))
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]])
    top = deployable.top_k(deployable.probabilities(logits), ["a", "b", "c"], 2)
    assert [[name for name, _ in row] for row in top] == [["b", "c"], ["c", "a"]]
    assert top[0][0][1] == pytest.approx(torch.softmax(logits[0], 0)[1].item())
    assert len(deployable.top_k(deployable.probabilities(logits), ["a", "b", "c"], 10)[0]) == 3  # at most all


def test_the_deployable_module_is_the_classifiers_forward_and_a_checkpoint_loads_back(tmp_path: Path) -> None:
    """What export writes and serve runs computes what the classifier does; a checkpoint as the CLI saves it (class
    path and arguments) loads back into the same model, outputs equal."""
    torch.manual_seed(0)
    model = CNNClassifier(
        num_classes=3,
        input_shape=[1, 12, 12],
        mean=[0.2],
        std=[0.3],
        class_names=["x", "y", "z"],
        conv_channels=[4],
        hidden=8,
    ).eval()
    x = torch.randint(0, 256, (5, 1, 12, 12), dtype=torch.uint8)
    module = deployable.Deployable.of(model)
    assert torch.equal(module(x), model(x))
    hparams = {**dict(model.hparams), "_class_path": "lit_nets.models.CNNClassifier"}
    torch.save({"hyper_parameters": hparams, "state_dict": model.state_dict()}, tmp_path / "m.ckpt")
    loaded = inference.load_classifier(tmp_path / "m.ckpt")
    assert type(loaded) is CNNClassifier and loaded.class_names == ["x", "y", "z"]
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("cls", [CNNClassifier, MLPClassifier])
def test_a_checkpoint_saved_from_python_without_a_class_path_loads_as_its_class(tmp_path: Path, cls: type) -> None:
    """``Trainer.fit`` on a model built by hand records no class: the class whose arguments are the saved ones is
    chosen from the signatures (an MLP's arguments are a subset of a CNN's, so "takes them all" alone is not it)."""
    hidden = 4 if cls is CNNClassifier else [4]  # one layer's width; the MLP's widths
    model = cls(num_classes=2, input_shape=[1, 8, 8], class_names=["a", "b"], mean=[0.5], std=[0.2], hidden=hidden)
    torch.save({"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}, tmp_path / "m.ckpt")
    loaded = inference.load_classifier(tmp_path / "m.ckpt")
    assert type(loaded) is cls
    x = torch.randint(0, 256, (3, 1, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded(x), model.eval()(x))


class _Tiny(TensorDataModule):
    def load(self) -> Splits:
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(60, 4, generator=g), torch.arange(60) % 3
        return Splits(
            train=(x[:40], y[:40]),
            val=(x[40:50], y[40:50]),
            test=(x[50:], y[50:]),
            class_names=["a", "b", "c"],
            source="tiny",
        )

    def normalization(self, splits: Splits) -> tuple[list[float], list[float]]:
        return splits.train[0].mean(0).tolist(), splits.train[0].std(0).tolist()


def test_a_data_module_gives_a_model_what_the_cli_links() -> None:
    dm = _Tiny(class_weights="balanced")
    dm.setup("fit")
    args = dm.model_args()
    assert set(args) == set(DATA_ARGS)
    model = MLPClassifier(**args, hidden=[8])
    assert model.hparams.num_classes == 3 and model.hparams.input_shape == [4]
    assert model.hparams.class_weights == pytest.approx([40 / (3 * 14), 40 / (3 * 13), 40 / (3 * 13)], abs=1e-5)
    train = dm.splits.train
    assert size_of(train) == 40 and torch.equal(labels_of(train), train[1]) and first_inputs(train, 3).shape == (3, 4)


def test_a_saved_schema_reads_back_as_its_own_record() -> None:
    image = ImageSchema(classes=["0", "1"], channels=1, image_size=[28, 28])
    assert read_schema(image.to_dict()) == image
    table = TabularSchema(
        target="y",
        classes=["a", "b"],
        class_counts=[3, 4],
        numeric=[{"name": "u", "fill": 1.0, "mean": 1.0, "std": 2.0}],
    )
    assert read_schema(table.to_dict()) == table
    old_image = {"classes": ["0", "1"], "channels": 3, "image_size": [8, 8]}  # lit_nets 0.1 saved no kind
    old_table = {k: v for k, v in table.to_dict().items() if k != "kind"}
    assert isinstance(read_schema(old_image), ImageSchema) and read_schema(old_table) == table
    assert read_schema(None) is None


def test_an_overlay_does_not_name_cv_or_tune_runs(tmp_path) -> None:
    """cv and tune name their folder (and MLflow runs) after the last config that says what is trained, not after
    an overlay given after it (mlflow.yaml, ddp.yaml)."""
    from lit_nets.train.runs import config_name

    (tmp_path / "wine.yaml").write_text("model:\n  class_path: lit_nets.models.MLPClassifier\n")
    (tmp_path / "mlflow.yaml").write_text("mlflow:\n  enabled: true\n")
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    wine, overlay = str(tmp_path / "wine.yaml"), str(tmp_path / "mlflow.yaml")
    assert config_name(["--config", wine, "--config", overlay]) == "wine"
    assert config_name([f"--config={overlay}", "--trainer.max_epochs", "3"]) == "mlflow", "only overlays: the last"
    assert config_name(["--config", wine, "--config", str(tmp_path / "broken.yaml")]) == "wine"
    assert config_name(["--trainer.max_epochs", "3"]) == "run"


def test_random_weights_take_no_centre_crop_from_the_weights_metadata() -> None:
    """photos.yaml at 32 px with ``weights: null`` still cropped by pretrained weights' metadata (0.875) without a
    word: a centre crop repeats how pretrained weights saw their images, and random weights saw none."""
    from jsonargparse import Namespace

    from lit_nets.train.run_folders import data_defaults

    def config(weights: str | None) -> Namespace:
        return Namespace(
            model=Namespace(class_path="lit_nets.models.BackboneClassifier", init_args=Namespace(weights=weights)),
            data=Namespace(
                init_args=Namespace(image_size=[32, 32], crop_pct=None, image_channels=None, mean=None, std=None)
            ),
        )

    random = config(None)
    data_defaults(random)
    assert random.data.init_args.crop_pct is None and random.data.init_args.image_size == [32, 32]
    assert random.data.init_args.mean is None, "measured on the data, not ImageNet's"
    pretrained = config("DEFAULT")
    data_defaults(pretrained)
    assert pretrained.data.init_args.crop_pct == 0.875 and pretrained.data.init_args.mean is not None
