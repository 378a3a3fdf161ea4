"""What a checkpoint may make lit_nets import (lit_nets/core/trust.py), both sides: a checkpoint that came alone and
names a module is refused before the module is imported (``os.system``, a module with an import-time side effect);
the same names are imported when the checkpoint's run folder or ``LIT_NETS_TRUST`` names them; a class that is no
model or no network is one line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

from lit_nets.__main__ import main

VALUES = {"num_classes": 3, "input_shape": [4], "class_names": ["a", "b", "c"]}


@pytest.fixture
def side_effect(tmp_path: Path, monkeypatch) -> Path:
    """A module ``sidefx`` on the import path whose import writes a marker file (what any code could do)."""
    package = tmp_path / "pkgs"
    package.mkdir()
    marker = tmp_path / "imported"
    (package / "sidefx.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n\nclass Net:\n    pass\n"
    )
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.delitem(sys.modules, "sidefx", raising=False)
    return marker


def export(ckpt: Path, monkeypatch, capsys) -> tuple[int, str]:
    """``python -m lit_nets export --ckpt_path CKPT`` in this process: its exit status and what it printed."""
    monkeypatch.chdir(ckpt.parent)
    monkeypatch.setattr(sys, "argv", ["lit_nets"])
    try:
        main(["export", "--ckpt_path", str(ckpt), "--format", "state_dict"])
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def test_a_checkpoint_naming_os_system_is_refused_before_any_import(tmp_path: Path, monkeypatch, capsys) -> None:
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": {**VALUES, "_class_path": "os.system"}}, ckpt)
    code, err = export(ckpt, monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"error: {ckpt}: its model class is os.system, from the module os, which nothing told this command to trust "
        "(importing a module runs its code). Use it from the run folder it was trained in (its config.yaml names the "
        "class), name the class in this command's --config, or trust the module: LIT_NETS_TRUST=os"
    )


def test_a_module_of_a_file_from_elsewhere_is_not_imported(tmp_path, side_effect, monkeypatch, capsys) -> None:
    """Alone, a checkpoint naming sidefx.Net never runs sidefx's code; trusted (its run's config names it, or
    LIT_NETS_TRUST), it is imported, and a class that is no model is still one line."""
    ckpt = tmp_path / "alone.ckpt"
    torch.save({"hyper_parameters": {**VALUES, "_class_path": "sidefx.Net"}}, ckpt)
    code, err = export(ckpt, monkeypatch, capsys)
    assert code == 2 and "from the module sidefx, which nothing told this command to trust" in err
    assert not side_effect.exists(), "the module's code did not run"

    run = tmp_path / "lightning_logs" / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"class_path": "sidefx.Net"}}))
    in_run = run / "checkpoints" / "last.ckpt"
    torch.save({"hyper_parameters": {**VALUES, "_class_path": "sidefx.Net"}}, in_run)
    code, err = export(in_run, monkeypatch, capsys)
    assert side_effect.exists(), "the run that named it: imported"
    assert code == 2 and "names a class that is not a lit_nets model (a subclass of lit_nets.models.Classifier)" in err

    side_effect.unlink()
    monkeypatch.delitem(sys.modules, "sidefx", raising=False)
    monkeypatch.setenv("LIT_NETS_TRUST", "sidefx")
    code, err = export(ckpt, monkeypatch, capsys)
    assert side_effect.exists() and code == 2 and "is not a lit_nets model" in err


def test_a_network_class_that_is_no_module_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    """The classifier's recorded network, trusted, but not a torch module (an edited file)."""
    ckpt = tmp_path / "net.ckpt"
    net = {"class_path": "collections.OrderedDict", "init_args": {}}
    torch.save({"hyper_parameters": {**VALUES, "_class_path": "lit_nets.models.Classifier", "net": net}}, ckpt)
    code, err = export(ckpt, monkeypatch, capsys)
    assert code == 2 and "its network class is collections.OrderedDict, from the module collections" in err
    monkeypatch.setenv("LIT_NETS_TRUST", "collections")
    code, err = export(ckpt, monkeypatch, capsys)
    assert code == 2 and "error: model.net: collections.OrderedDict is not a torch.nn.Module" in err, err
