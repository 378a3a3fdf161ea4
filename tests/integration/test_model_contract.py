"""One contract for every model, as timm's ``test_models.py`` runs over ``list_models()``: every shipped model class
and two from outside lit_nets (``tests/helpers/outside``: a network given to ``Classifier`` in a config, and a
subclass that builds its own) is built from a config and trains a few steps, comes back from its checkpoint with
identical outputs, resumes, exports in every format with its parity check, and answers a request as the service does;
the code from outside takes the other tasks too (a value, in several optimiser steps a batch; several labels). A new
shipped model is tested by adding it to :data:`MODELS`."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from helpers.cli import CONFIGS, fit_for_fixture

from lit_nets.core.data.contract import first_inputs_of
from lit_nets.deploy.export import FORMATS, export
from lit_nets.deploy.inference import load_classifier
from lit_nets.models import CLASSIFIERS


@dataclass(frozen=True)
class Model:
    """A model as a user names it in configs; ``kind``: what a request to it holds (image, table); ``steps``: its
    optimiser steps in the fixture's 3 batches."""

    name: str
    args: tuple[str, ...]
    kind: str
    steps: int = 3


SUBCLASS = ("--model", "helpers.outside.nets.TableClassifier", "--model.hidden", "8")
OUTSIDE_NET = json.dumps({"class_path": "helpers.outside.nets.SmallCNN", "init_args": {"width": 4}})
FEW_STEPS = ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", "--figures.enabled", "false"]
CNN = ("--config", str(CONFIGS / "cnn.yaml"), "--data.download", "false")
MLP = ("--config", str(CONFIGS / "mlp.yaml"), "--early_stopping", "null")
RECIPE = "--data.path data/wine.csv --data.target cultivar --data.sample wine --model.ensemble 4 --early_stopping null"
VALUE = ("--config", str(CONFIGS / "regression.yaml"), "--early_stopping", "null", "--data.path", "data/autompg.csv",
         "--data.target", "mpg", "--data.sample", "autompg")  # fmt: skip
PAIRS = ("--config", str(CONFIGS / "multilabel_images.yaml"))
PHOTOS = "--model.weights null --data.image_size 32 --model.unfreeze_at_epoch null --model.freeze none"
MODELS = [
    Model("cnn", CNN, "image"),
    Model("mlp", MLP, "table"),
    Model("recipe", ("--config", str(CONFIGS / "tabular_best.yaml"), *RECIPE.split()), "table"),
    Model("backbone", ("--config", str(CONFIGS / "photos.yaml"), *PHOTOS.split()), "image"),
    Model("outside_net", (*CNN, "--model", "lit_nets.models.Classifier", "--model.net", OUTSIDE_NET), "image"),
    Model(
        "outside_subclass", (*MLP, "--model", "helpers.outside.nets.TableClassifier", "--model.hidden", "8"), "table"
    ),
    # the other tasks, through a user's code: a value (regression) by the subclass (in optimiser steps of 8 rows, four
    # to a batch: model.step_batch_size), several labels by the network
    Model(
        "outside_value",
        (*VALUE, *SUBCLASS, "--model.step_batch_size", "8"),
        "table",
        steps=3 * 4,  # batches of 32 rows (autompg's): four steps each
    ),
    Model("outside_labels", (*PAIRS, "--model", "lit_nets.models.Classifier", "--model.net", OUTSIDE_NET), "image"),
]


@dataclass
class Trained:
    """A model trained for 3 steps in a folder of its own, as ``fit`` trains it: its last checkpoint, real inputs
    and the trained model's outputs for them."""

    model: Model
    work: Path
    last: Path
    inputs: torch.Tensor
    outputs: torch.Tensor


def test_every_shipped_model_class_is_in_the_contract() -> None:
    """A shipped model class without a line in MODELS would go untested."""
    covered = {"cnn": "CNNClassifier", "mlp": "MLPClassifier", "backbone": "BackboneClassifier"}
    assert {cls.__name__ for cls in CLASSIFIERS} <= set(covered.values())
    assert {m.name for m in MODELS} >= {*covered, "outside_net"}, "Classifier itself: with a network given"


@pytest.fixture(scope="module", params=MODELS, ids=[m.name for m in MODELS])
def trained(request, tmp_path_factory) -> Trained:
    from lit_nets.train import runs

    model = request.param
    work = tmp_path_factory.mktemp(model.name)
    here = Path.cwd()
    os.chdir(work)
    try:
        cli = runs.fit([*model.args, *FEW_STEPS, "--trainer.max_epochs", "1", "--test_after_fit", "false"])
        inputs = first_inputs_of(cli.datamodule, 16)
        with torch.no_grad():
            outputs = cli.model.eval().cpu()(inputs)
    finally:
        os.chdir(here)
    return Trained(model, work, work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt", inputs, outputs)


def test_the_checkpoint_gives_back_the_trained_model(trained) -> None:
    """Rebuilt from its checkpoint alone: the trained model's outputs to the last bit on real inputs."""
    with torch.no_grad():
        again = load_classifier(trained.last)(trained.inputs)
    assert torch.equal(again, trained.outputs) and again.shape == (len(trained.inputs), trained.outputs.shape[1])
    assert torch.load(trained.last, weights_only=True)["global_step"] == trained.model.steps


def test_a_run_resumes_from_its_last_checkpoint(trained) -> None:
    resume = ("--trainer.max_epochs", "2", "--test_after_fit", "false", "--ckpt_path", "last")
    fit_for_fixture(trained.work, *trained.model.args, *FEW_STEPS, *resume)
    assert torch.load(trained.last, weights_only=True)["global_step"] == 2 * trained.model.steps, "3 batches more"
    assert [p.name for p in (trained.work / "lightning_logs").iterdir()] == ["version_0"]


def test_every_export_format_answers_as_the_checkpoint(trained, monkeypatch) -> None:
    monkeypatch.chdir(trained.work)  # the parity batch is the checkpoint's data, named relative to where it trained
    report = export(str(trained.last), list(FORMATS), str(trained.work / "exported"))
    assert set(report) == set(FORMATS)
    for fmt, result in report.items():
        # same_top1: None for a value or several labels (no top class); the parity figure covers them
        assert result["same_top1"] is not False and result["max_abs_diff"] <= 1e-4, (fmt, result)


class Upload:
    """A multipart form with one file, as the service gets it from starlette."""

    def __init__(self, data: bytes) -> None:
        self.form = {"file": type("File", (), {"file": io.BytesIO(data), "filename": "x.png"})()}

    def get(self, key: str, default=None):
        return self.form.get(key, default)

    def getlist(self, key: str) -> list:
        return [self.form[key]] if key in self.form else []


def test_the_service_answers_a_request(trained) -> None:
    """The service's request handling (``ClassifierAPI``: decode, batch, predict, encode) on a real input."""
    from PIL import Image

    from lit_nets.deploy.serve.api import ClassifierAPI
    from lit_nets.deploy.serve.model import example_record, load

    api = ClassifierAPI(str(trained.last), max_pixels=2**24, top_k=3)
    api.model, api.device = load(str(trained.last)), "cpu"  # what setup() does in the service's worker process
    if trained.model.kind == "image":  # one of the data's own images, as a PNG upload
        image = trained.inputs[0]
        pixels = image if image.dtype == torch.uint8 else (image * 255).clamp(0, 255).byte()
        buffer = io.BytesIO()
        Image.fromarray(pixels.permute(1, 2, 0).squeeze(-1).numpy()).save(buffer, "PNG")
        request = Upload(buffer.getvalue())
    else:
        request = example_record(api.model.schema)
    answer = api.encode_response(api.unbatch(api.predict(api.batch([api.decode_request(request)])))[0])
    if api.model.task.value:  # a number, within the training targets' range
        assert set(answer) == {"value"} and api.model.task.low <= answer["value"] <= api.model.task.high, answer
    elif api.model.task.labels:  # the labels decided, and a probability per label
        assert set(answer["labels"]) <= set(api.model.class_names), answer
        assert set(answer["probabilities"]) == set(api.model.class_names), answer
    else:
        assert answer["label"] in api.model.class_names, answer
        assert abs(sum(answer["probabilities"].values()) - 1) < 1e-4


def test_a_data_module_missing_part_of_the_contract_is_one_line(tmp_path: Path, monkeypatch, capfd) -> None:
    """A LightningDataModule of a user's without class_names: one line that names it, before any training."""
    from helpers.cli import in_process

    net = json.dumps({"class_path": "torch.nn.Linear", "init_args": {"in_features": 13, "out_features": 3}})
    args = ("--model", "lit_nets.models.Classifier", "--model.net", net, "--data", "helpers.outside.data.NoClassNames")
    proc = in_process("fit", *args, cwd=tmp_path, monkeypatch=monkeypatch, capfd=capfd)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: data: helpers.outside.data.NoClassNames has no class_names; a data module gives lit_nets "
        "num_classes, input_shape, class_names (docs/extend.md#your-own-data)"
    )
    assert not list(tmp_path.glob("lightning_logs/*/checkpoints/*.ckpt")), "nothing trained"
