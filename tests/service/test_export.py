"""Export every format, reload it in a Python process that never imports lit_nets, compare predictions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers.cli import in_process, run_cli

# Runs in a fresh interpreter: torch (and onnxruntime) only. The state_dict is run through the seed CNN written
# with torch.nn.functional, which shows the file holds every weight a plain re-implementation needs.
RELOAD = r"""
import sys, torch
fmt, path, inputs, out = sys.argv[1:5]
x = torch.load(inputs, weights_only=True)
if fmt == "state_dict":
    import torch.nn.functional as F
    w = torch.load(path, weights_only=True)
    h = (x.float() / 255 - w["normalize.mean"].view(1, -1, 1, 1)) / w["normalize.std"].view(1, -1, 1, 1)
    for i in (1, 2):
        conv = F.conv2d(h, w[f"net.features.conv{i}.weight"], w[f"net.features.conv{i}.bias"], padding=1)
        h = F.max_pool2d(F.relu(conv), 2)
    h = F.relu(F.linear(h.flatten(1), w["net.classifier.fc1.weight"], w["net.classifier.fc1.bias"]))
    logits = F.linear(h, w["net.classifier.fc2.weight"], w["net.classifier.fc2.bias"])
elif fmt == "torchscript":
    logits = torch.jit.load(path)(x)
elif fmt == "pt2":
    logits = torch.export.load(path).module()(x)
else:
    import onnxruntime
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    logits = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
assert "lit_nets" not in sys.modules
torch.save(logits.detach(), out)
"""


@pytest.mark.parametrize("fmt", ["state_dict", "torchscript", "pt2", "onnx"])
def test_each_format_reloads_without_lit_nets_and_predicts_the_same(cnn_run, fmt: str) -> None:
    from lit_nets.data import MNISTDataModule
    from lit_nets.deploy.export import SUFFIX
    from lit_nets.deploy.inference import load_classifier

    work, stdout = cnn_run
    assert f"{fmt} " in stdout and "same top-1: True" in stdout
    sidecar = json.loads((work / "exported" / f"last{SUFFIX[fmt]}.json").read_text())
    assert sidecar["class_names"] == [str(d) for d in range(10)] and sidecar["input_dtype"] == "uint8"
    assert sidecar["parity"]["max_abs_diff"] <= 1e-4
    dm = MNISTDataModule(data_dir=str(work / "data"), download=False)
    x = dm.splits.test[0]  # all 1,000 test digits: another batch size than the export used
    torch.save(x, work / "inputs.pt")
    model = load_classifier(work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        expected = model(x).argmax(1)
    out = work / f"{fmt}.out.pt"
    script = [sys.executable, "-c", RELOAD, fmt, str(work / "exported" / f"last{SUFFIX[fmt]}"), str(work / "inputs.pt")]
    subprocess.run([*script, str(out)], check=True, cwd=work, capture_output=True, text=True, timeout=300)
    got = torch.load(out, weights_only=True)
    assert got.shape == (1000, 10)
    assert torch.equal(got.argmax(1), expected), f"{fmt}: top-1 differs on {(got.argmax(1) != expected).sum()} digits"


def test_export_of_a_missing_checkpoint_is_one_line(tmp_path: Path) -> None:
    proc = run_cli("export", "--ckpt_path", "nope.ckpt", cwd=tmp_path, check=False)
    assert (
        proc.returncode == 2 and "nope.ckpt: no such checkpoint file" in proc.stderr and "Traceback" not in proc.stderr
    )


def test_export_to_an_existing_file_is_one_line(cnn_run, tmp_path: Path, monkeypatch, capfd) -> None:
    work, _ = cnn_run
    (tmp_path / "model.onnx").write_text("my notes")
    ckpt = work / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    proc = in_process(
        "export",
        "--ckpt_path",
        str(ckpt),
        "--out",
        str(tmp_path / "model.onnx"),
        cwd=tmp_path,
        monkeypatch=monkeypatch,
        capfd=capfd,
    )
    assert proc.returncode == 2 and "model.onnx is a file; --out names a folder" in proc.stderr, proc.stderr
    assert (tmp_path / "model.onnx").read_text() == "my notes"


def test_export_prints_a_line_per_format_and_nothing_else(cnn_run) -> None:
    """No banner about training data (nothing is trained), no TorchScript deprecation warnings, no ONNX progress;
    every file readable like the others (safetensors wrote its file with mode 0600)."""
    from lit_nets.deploy.export import FORMATS

    work, output = cnn_run
    lines = [line for line in output.splitlines() if line.strip()]  # stdout, then stderr
    said = [line for line in lines if line.startswith("Checkpoint:   ")]  # what it exports, on stderr
    assert len(said) == 1 and "(run version_0, epoch 0, the run's best val/acc" in said[0], output
    assert [line.split()[0] for line in lines if line not in said] == list(FORMATS), output
    modes = {p.name: p.stat().st_mode & 0o777 for p in (work / "exported").iterdir()}
    assert modes["last.safetensors"] == modes["last.pt"] == modes["last.onnx"], modes
