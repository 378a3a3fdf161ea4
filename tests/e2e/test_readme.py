"""Every command in the ``bash`` blocks of the README and of the docs pages, run as written, in the order of the
README's table (:data:`PAGES`), in one working folder, as a user following them would (so a command that drifts from
the code fails here).

A test per block. ``python -m lit_nets ...`` runs in this process (the same ``main(argv)`` as the command line:
no 5-second interpreter start per command); ``serve`` runs as a real process, and the ``curl`` lines after it are
sent to it. Fits of image configs get a small overlay (2 epochs of 5 batches: the defaults stay on, figures and the
test after fit included); the Quickstart's full 5 epochs and its accuracy are tests/service/test_train.py's.
``tune`` runs a twentieth of its ``--trials`` (rounded up), tabular trials for 5 epochs (tests/integration/
test_tune.py tests the search itself). Backbone fits (configs/photos.yaml) run at 64 px, with "pretrained" resnet18
weights (random ones) put where torch's cache keeps the real file. What cannot run here is skipped with the reason
(installing, a cluster, a browser, a long-running TensorBoard, minutes of timing).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.cli import REPO, run_cli
from helpers.service import serving

# imported here, not under capture: Lightning's log handlers keep the stderr they find when it is imported
from lit_nets.__main__ import main

README = REPO / "README.md"
# the pages in the order a reader follows them (the README's table): each may use what the ones before it made
PAGES = [
    README,
    *(
        REPO / "docs" / name
        for name in (
            "training.md",
            "insight.md",
            "export-serve.md",
            "images.md",
            "photos.md",
            "search-cv.md",
            "tables.md",
            "benchmarks.md",
            "scale.md",
            "reliability.md",
            "development.md",
            "extend.md",
            "python.md",
        )
    ),
]
# fits of image configs: 2 epochs of 5 batches (a resumed run gets a third)
IMAGE_OVERLAY = [
    "--trainer.max_epochs",
    "2",
    "--trainer.limit_train_batches",
    "5",
    "--trainer.limit_val_batches",
    "3",
    "--trainer.limit_test_batches",
    "3",
]
IMAGE_CONFIGS = (
    "cnn.yaml",
    "mnist_best.yaml",
    "png_folder.yaml",
    "transfer.yaml",
    "photos.yaml",
    "multilabel_images.yaml",
)
# the tabular recipe (classes and values): 2 of its 40 epochs (tests/e2e/test_tabular_best.py runs it, -m slow)
RECIPE_OVERLAY = ["--trainer.max_epochs", "2"]
LONG_TABLES = ("tabular_best.yaml", "regression_best.yaml", "multilabel.yaml")  # as written: test_tabular_best.py
PHOTO_OVERLAY = ["--data.image_size", "64"]  # backbones at 64 px, not the weights' 224: seconds per fit on a CPU
NOT_HERE = {  # by program, module (-m) or script
    "pip": "installing: CI's fresh clone runs the Quickstart's install",
    "venv": "installing: CI's fresh clone runs the Quickstart's install",
    "pytest": "the test suite itself",
    "ruff": "CI runs it (.ci/run)",
    "tensorboard": "a server that runs until stopped; its event files are read in tests/integration/test_figures.py",
    "webbrowser": "a browser: tests/service/test_page.py drives the page in Chromium",
    "lit_nets torchrun": "HOST is a placeholder: tests/service/test_multinode.py runs it as two nodes on this machine",
    "sbatch": "needs SLURM: tests/unit/test_slurm_script.py checks the script and the environment Lightning reads",
    "docker": "no container engine here: tests/service/test_serve.py runs the image's entry command and health check",
    "benchmarks/loops.py": "minutes of timing: tests/service/test_benchmark.py runs it (-m slow; --synthetic: fast)",
    "benchmarks/boosting.py": "one fit per table: tests/service/test_benchmark.py runs it on wine",
    "benchmarks/csv_loading.py": "a 0.5 GB file read thrice: tests/service/test_benchmark.py runs it small (-m slow)",
    "benchmarks/photo_loader.py": "minutes of decoding: tests/service/test_benchmark.py runs it small (-m slow)",
    "benchmarks/startup.py": "seconds of start-ups: tests/service/test_benchmark.py runs it (-m slow)",
    "benchmarks/predict_memory.py": "minutes of 10M-row files: tests/service/test_benchmark.py runs it small (-m slow)",
    "benchmarks/threads.py": "a minute of timing beside a busy process (tests/unit/test_threads.py: the rule)",
    "benchmarks/tables.py": "an hour: 4 models x 5 folds of every shipped table (its MLPs are cv, tested)",
}


def readme_blocks(kind: str = "bash") -> list[tuple[str, Any]]:
    """The ``bash`` blocks of every page in :data:`PAGES` as ("page: heading", commands): comments dropped, lines
    joined where a backslash or an open quote continues them; ``kind`` python: the ``python`` blocks as
    ("page: heading", code). A block whose fence names a file (```` ```python file=mypkg/nets.py ````) is a file the
    page writes: the commands after it get it as ``(path, text)`` in front of their commands (:data:`FILES`)."""
    blocks = []
    for page in PAGES:
        heading, lines, inside, files, target, other = "", [], False, [], None, False
        for line in page.read_text().splitlines():
            fence = line.strip()
            if other:  # in a block of another kind: its lines are neither commands nor headings
                other = fence != "```"
            elif line.startswith("#") and not inside:
                heading = line.lstrip("#").strip()
            elif fence.startswith("```") and " file=" in fence and not inside:
                inside, lines, target = True, [], fence.split(" file=", 1)[1].strip()
            elif fence == f"```{kind}" and not inside:
                inside, lines, target = True, [], None
            elif fence == "```" and inside:
                inside = False
                where = f"{page.relative_to(REPO)}: {heading}"
                if target is not None:
                    files.append((target, "\n".join(lines) + "\n"))
                elif kind == "bash":
                    blocks.append((where, [("file", *f) for f in files] + commands(lines)))
                else:
                    blocks.append((where, "\n".join(lines)))
            elif inside:
                lines.append(line)
            elif fence.startswith("```"):
                other = True
    return blocks


def commands(lines: list[str]) -> list[list[str]]:
    """The words of each command in ``lines`` (``a && b`` is two commands)."""
    out, current = [], ""
    for line in lines:
        current = f"{current}\n{line}" if current else line
        if current.rstrip().endswith("\\"):
            current = current.rstrip()[:-1]
            continue
        try:
            words = shlex.split(current, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        while words:
            end = words.index("&&") if "&&" in words else len(words)
            out.append(words[:end])
            words = words[end + 1 :]
        current = ""
    return out


BLOCKS = readme_blocks()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder like a clone (configs/, scripts/). The README makes every input its commands take (its
    ``scripts/example_inputs.py`` line) except what only the internet gives: the pretrained weights, put here where
    torch's cache keeps them ("pretrained": random weights of the same architecture) and as the file the README says
    is the user's own download (``resnet18.pth``)."""
    from torchvision.models import get_model, get_model_weights

    work = tmp_path_factory.mktemp("readme")
    for name in ("configs", "scripts"):
        (work / name).symlink_to(REPO / name)
    cache = work / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    for name in ("resnet18", "efficientnet_b0"):
        url = get_model_weights(name).DEFAULT.url
        torch.save(get_model(name).state_dict(), cache / Path(url).name)
    shutil.copy(next(cache.glob("resnet18-*.pth")), work / "resnet18.pth")
    return work


@pytest.mark.parametrize(("heading", "block"), BLOCKS, ids=[f"{i}-{h[:40]}" for i, (h, _) in enumerate(BLOCKS)])
def test_readme_block(workspace: Path, monkeypatch, capfd, caplog, heading: str, block: list[list[str]]) -> None:
    caplog.set_level(logging.INFO)  # under pytest, Lightning's messages go to the root logger, not to stderr
    monkeypatch.chdir(workspace)
    monkeypatch.setattr(sys, "argv", ["lit_nets"])
    monkeypatch.setenv("TORCH_HOME", str(workspace / "torch_home"))  # weights: DEFAULT finds resnet18's there
    monkeypatch.syspath_prepend(str(workspace))  # python -m puts the working folder first: the page's own package
    service, ran, skipped = None, 0, []
    try:
        for words in block:
            if words[0] == "file":  # a file the page wrote before these commands (its package, a config)
                path = workspace / words[1]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(words[2])
                continue
            reason = NOT_HERE.get(program(words))
            if words[:1] == ["curl"]:
                send(words, service)
            elif reason:
                skipped.append(f"{shlex.join(words)[:60]}: {reason}")
                continue
            elif words[1:2] == ["scripts/compare.py"]:
                compare(words[2:])
            elif words[1:2] == ["scripts/example_inputs.py"]:
                import runpy

                monkeypatch.setattr(sys, "argv", words[1:])
                runpy.run_path(str(REPO / "scripts" / "example_inputs.py"), run_name="__main__")
            else:
                argv = words[words.index("lit_nets") + 1 :]
                if argv[0] == "serve":
                    if service is not None:
                        service.__exit__(None, None, None)
                    service = start_service(argv, workspace)
                elif "configs/ddp.yaml" in argv:  # Lightning starts processes: from a process of its own
                    run_cli(*argv, *IMAGE_OVERLAY, cwd=workspace, timeout=400)
                else:
                    run(argv, capfd, caplog, heading)
            ran += 1
    finally:
        if service is not None:
            service.__exit__(None, None, None)
    print(f"{heading}: ran {ran} command(s); not here: {skipped}")


@functools.cache
def database() -> str:
    """A PostgreSQL server for the docs' ``--storage`` commands, started once and stopped when the tests end."""
    import atexit

    from helpers.servers import postgres

    server = postgres()
    url = server.__enter__()
    atexit.register(server.__exit__, None, None, None)
    return url


def program(words: list[str]) -> str:
    """What a command runs: the module of ``python -m``, the script of ``python script.py``, else the program."""
    name = Path(words[0]).name
    if words[1:4] == ["-m", "lit_nets", "torchrun"]:  # the launcher across nodes, apart from the in-process commands
        return "lit_nets torchrun"
    if name.startswith("python") and len(words) > 1:
        return words[2] if words[1] == "-m" and len(words) > 2 else words[1]
    return name


def run(argv: list[str], capfd, caplog, heading: str) -> None:
    """``python -m lit_nets ARGV`` (image fits with the small overlay) in this process; it must succeed, and say
    nothing alarming."""
    config = " ".join(argv)
    extra = []
    if argv[0] in ("fit", "tune") and any(name in config for name in IMAGE_CONFIGS) and "--print_config" not in argv:
        extra = list(IMAGE_OVERLAY)
        if "--ckpt_path" in argv:
            extra[1] = "3"  # a resumed run trains one more epoch
        if "photos.yaml" in config:
            extra += PHOTO_OVERLAY
    if argv[0] in ("fit", "cv") and any(name in config for name in LONG_TABLES):
        extra = list(RECIPE_OVERLAY)
    if argv[0] == "tune":  # a twentieth of the trials, rounded up: 40 then 50 is 2 then 3, a study continued
        if "--storage" in argv:  # the docs' placeholder server: a real PostgreSQL of this test's
            at = argv.index("--storage") + 1
            argv = [*argv[:at], database(), *argv[at + 1 :]]
        at = argv.index("--trials") + 1
        argv = [*argv[:at], str(math.ceil(int(argv[at]) / 20)), *argv[at + 1 :]]
        extra = extra or ["--trainer.max_epochs", "5"]  # tabular trials: 5 epochs
    caplog.clear()
    try:
        main([*argv, *extra])
    except SystemExit as e:  # --print_config and --help end this way
        if e.code not in (0, None):
            out, err = capfd.readouterr()
            pytest.fail(f"{heading}: python -m lit_nets {' '.join(argv)} exited {e.code}:\n{err[-3000:]}")
    out, err = capfd.readouterr()
    err += caplog.text
    assert "Traceback" not in err and "ERROR" not in err, err[-3000:]
    CHECKS.get(argv[0], lambda *a: None)(argv, out, err)


def check_fit(argv: list[str], out: str, err: str) -> None:
    if "--print_config" in argv:
        assert "class_path: lit_nets." in out and "Classifier" in out
        return
    if "--trainer.profiler" in argv:
        assert "Profiler Report" in out + err and "gpuGetDeviceCount" not in out + err
    if "--ckpt_path" in argv:
        assert re.search(r"Resuming lightning_logs/\S+ in its own folder", err), err[-2000:]
    if "lr_find.yaml" in " ".join(argv):
        rate = float(re.search(r"Learning rate set to ([\d.e-]+)", err).group(1))
        LEARNING_RATES[argv[-1]] = rate
        assert "weights_only" not in err
        if len(LEARNING_RATES) == 2:  # the optimiser reaches the finder: SGD needs the larger rate
            assert LEARNING_RATES["sgd"] > 2 * LEARNING_RATES["adam"], LEARNING_RATES
        accuracy = float(re.search(r"Test \(best\):  test/acc ([\d.]+)", out).group(1))
        assert accuracy >= 0.94, out[-1500:]  # the README: about 0.97 for both, 0.94 or more
    summary = re.search(r"Test \(best\):  test/acc ([\d.]+)", out)
    if argv[2:] == ["configs/mlp.yaml"]:
        assert float(summary.group(1)) >= 0.90, out[-1500:]  # wine, 40 epochs
    if argv[2:] == ["configs/mlp_bce.yaml"]:
        assert float(summary.group(1)) >= 0.95, out[-1500:]  # breast cancer, 30 epochs
    assert "Run folder:" in out and "Last:" in out
    if "configs/mlflow.yaml" in argv:  # no MLFLOW_TRACKING_URI here: the local mlruns/ folder
        assert re.search(r"MLflow:       run \w+ of experiment lit_nets in sqlite:///mlruns/mlflow.db", out), out[-800:]
        assert Path("mlruns/mlflow.db").exists()
    if "configs/csv.yaml" in argv:
        assert "metrics.csv)" in out


def check_test(argv: list[str], out: str, err: str) -> None:
    assert "Run folder:" in out and "Figures:" in out and "confusion_matrix_" in out


def check_predict(argv: list[str], out: str, err: str) -> None:
    assert re.search(r"Predictions:  \S+predictions.csv \([\d,]+ rows\)", out), out[-1500:]


def check_export(argv: list[str], out: str, err: str) -> None:
    lines = [line.split()[0] for line in out.splitlines() if line.strip()]
    asked = argv[argv.index("--format") + 1 :] if "--format" in argv else ["state_dict", "torchscript", "pt2", "onnx"]
    assert lines == [a for a in asked if not a.startswith("-")][: len(lines)] and lines, out


def check_tune(argv: list[str], out: str, err: str) -> None:
    trials = int(argv[argv.index("--trials") + 1])
    # the last to finish reaches N/N (with --workers, not always the last started); the last trial has its line
    assert re.search(rf"tune \[{trials}/{trials}\] trial \d+: ", out) and f"trial {trials - 1}: " in out, out[-1500:]
    assert "Best config:" in out and "the test split was not used" in out


def check_cv(argv: list[str], out: str, err: str) -> None:
    assert "| mean ± std |" in out and "Out-of-fold:" in out


CHECKS = {
    "fit": check_fit,
    "test": check_test,
    "validate": check_test,
    "predict": check_predict,
    "export": check_export,
    "tune": check_tune,
    "cv": check_cv,
}
LEARNING_RATES: dict[str, float] = {}


def compare(args: list[str]) -> None:
    """scripts/compare.py in this process, with 1 seed, 1 epoch of 5 batches, 1 or 2 of its variants."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare", REPO / "scripts" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ours, extra = (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (args, [])
    variants = ours[ours.index("--variants") + 1 :][:2] if "--variants" in ours else ["relu+bn"]
    variants = [v for v in variants if not v.startswith("-")]
    rows = module.main(
        [
            *ours,
            "--seeds",
            "1",
            "--epochs",
            "1",
            "--variants",
            *variants,
            "--",
            *extra,
            "--trainer.limit_train_batches",
            "5",
        ]
    )
    assert rows and all(0 <= row["test_acc"] <= 1 for row in rows)


def start_service(argv: list[str], workspace: Path):
    """``serve`` as written, on a free port (the README's port may be taken on a test machine)."""
    ckpt = argv[argv.index("--ckpt_path") + 1]
    others = [
        a
        for i, a in enumerate(argv[1:], 1)
        if a not in ("--ckpt_path", "--port") and argv[i - 1] not in ("--ckpt_path", "--port")
    ]
    service = serving(Path(ckpt), workspace, *others)
    service.url = service.__enter__()
    return service


def send(words: list[str], service) -> None:
    """A README ``curl`` line, sent with requests to the running service."""
    import requests

    assert service is not None, "a curl line before any serve command"
    files, data, headers, body = {}, {}, {}, None
    for flag, value in itertools.pairwise(words):
        if flag == "-F" and "=@" in value:
            name, path = value.split("=@")
            files[name] = (path, Path(path).read_bytes())
        elif flag == "-F":
            data.update([value.split("=", 1)])
        elif flag == "-H":
            headers.update([map(str.strip, value.split(":", 1))])
        elif flag == "-d":
            body = value
    path = next(w for w in words if "/predict" in w).split("/", 1)[1]
    answer = requests.post(
        f"{service.url}/{path}", files=files or None, data=body or data or None, headers=headers, timeout=60
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert 0 <= result["probability"] <= 1 and result["label"]
    if data.get("explain"):
        assert result["gradcam"].startswith("data:image/png;base64,")


PYTHON_BLOCKS = readme_blocks("python")
NAMESPACES: dict[str, dict] = {}  # per page


@pytest.mark.parametrize(("heading", "code"), PYTHON_BLOCKS, ids=[h[:40] for h, _ in PYTHON_BLOCKS])
def test_readme_python_block(workspace: Path, monkeypatch, capsys, heading: str, code: str) -> None:
    """The pages' Python snippets, after their commands (in the same folder, as a user who followed them)."""
    monkeypatch.chdir(workspace)
    page = heading.split(":")[0]  # a page's blocks share their names, as a notebook's cells do
    exec(compile(code, heading, "exec"), NAMESPACES.setdefault(page, {"__name__": "__readme__"}))
    out = capsys.readouterr().out
    if "digit.png is a" in code:
        assert re.search(r"digit\.png is a \d", out), out


def test_every_block_was_read() -> None:
    """The harness sees every page's commands (a heading or fence change must not make it run nothing), and every
    page of docs/ is in :data:`PAGES` (a new page cannot be left out)."""
    assert set((REPO / "docs").glob("*.md")) == set(PAGES[1:])
    pages = {h.split(":")[0] for h, _ in BLOCKS}
    expected = {"README.md", "docs/training.md", "docs/insight.md", "docs/export-serve.md", "docs/images.md"}
    assert expected | {"docs/photos.md", "docs/search-cv.md", "docs/tables.md", "docs/scale.md"} <= pages, pages
    assert sum(len(b) for _, b in BLOCKS) >= 40
    assert shutil.which("python") or sys.executable
