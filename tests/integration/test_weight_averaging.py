"""Lightning's EMAWeightAveraging in a run (configs/mnist_best.yaml): validation, the checkpoint and the test after
fit all see the averaged weights."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers.cli import CONFIGS, in_process, printed_scores

from lit_nets.data import MNISTDataModule
from lit_nets.deploy.inference import load_classifier

EMA = """trainer:
  callbacks:
    - class_path: lightning.pytorch.callbacks.EMAWeightAveraging
      init_args:
        decay: 0.98
"""


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_the_test_after_fit_tests_the_averaged_weights(tmp_path: Path, monkeypatch, capfd) -> None:
    """The checkpoint holds the average as its weights and the trained ones beside them (``current_model_state``).
    Before, the test after fit tested the trained weights: Lightning's callback, still holding its average in that
    process, loaded them back over the checkpoint's. The two differ on the sample's 1,000 test digits here, and the
    printed test accuracy is the average's, as ``test --ckpt_path`` on the checkpoint gives it."""
    (tmp_path / "ema.yaml").write_text(EMA)
    args = ["--config", str(CONFIGS / "cnn.yaml"), "--config", "ema.yaml", "--trainer.max_epochs=1"]
    done = in_process("fit", *args, "--trainer.limit_train_batches=25", cwd=tmp_path, monkeypatch=monkeypatch,
                      capfd=capfd, check=True)  # fmt: skip
    assert "WeightAveraging" not in done.stderr  # its two warnings say nothing about this run
    printed = printed_scores(done.stdout)["test/acc"]
    best = next((tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("epoch*.ckpt"))
    state = torch.load(best, map_location="cpu", weights_only=False)
    dm = MNISTDataModule(data_dir=str(tmp_path / "data"), val_fraction=0.1)  # cnn.yaml's: the sample's split
    dm.setup("test")
    x, y = dm.splits.test
    averaged = load_classifier(best).eval()
    trained = load_classifier(best).eval()
    trained.load_state_dict(state["current_model_state"])
    assert abs(accuracy(averaged, x, y) - accuracy(trained, x, y)) >= 0.01  # the case tells them apart
    assert abs(printed - accuracy(averaged, x, y)) < 1e-4, (printed, accuracy(averaged, x, y), accuracy(trained, x, y))


def test_the_warmed_up_average_follows_early_weights_and_settles_to_its_decay() -> None:
    """EMAWeights' update (timm's warm-up): after n updates the decay is min(decay, (1 + n) / (10 + n)), so after 100
    updates of a weight that jumped from 0 to 1 the average is past 0.99 (Lightning's fixed 0.999: 0.095), and from
    about 9,000 updates on the decay is the configured one."""
    from torch.optim.swa_utils import get_ema_avg_fn

    from lit_nets.train.callbacks.averaging import warmed_ema

    warmed, fixed = warmed_ema(0.999), get_ema_avg_fn(0.999)
    a, b = torch.zeros(1), torch.zeros(1)
    for n in range(100):
        a = warmed(a, torch.ones(1), torch.tensor(n + 1))
        b = fixed(b, torch.ones(1), torch.tensor(n + 1))
    assert a.item() > 0.99 and abs(b.item() - (1 - 0.999**100)) < 1e-4
    late = warmed(torch.zeros(1), torch.ones(1), torch.tensor(20_000))
    assert abs(late.item() - 0.001) < 1e-6
