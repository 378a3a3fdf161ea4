"""What a search shows: the progress line per trial, the table of the best trials, the TensorBoard board of the
study and Optuna's figures (history, importances, slices)."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lit_nets.core.errors import shown_url
from lit_nets.train import runs, search_space

FIGURES = {"history": "plot_optimization_history", "importances": "plot_param_importances", "slice": "plot_slice"}

log = logging.getLogger(__name__)


def finished(study: Any) -> list[Any]:
    """The trials that count towards ``--trials``: complete or pruned."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def short_names(params: list[search_space.Param]) -> dict[str, str]:
    """Each searched path by its last part (``lr``), or whole where two end alike."""
    last = [p.path.rpartition(".")[2] for p in params]
    return {p.path: name if last.count(name) == 1 else p.path for p, name in zip(params, last, strict=True)}


class ProgressLine:
    """After each trial: a line with the count, the outcome, the best so far and the parameters, and the value in
    TensorBoard (``tune/<metric>`` by trial number, in the study folder)."""

    def __init__(self, total: int, params: list[search_space.Param], metric: str, folds: int | None, writer: Any):
        self.total, self.params, self.metric, self.folds, self.writer = total, params, metric, folds, writer
        self.names = short_names(params)

    def __call__(self, study: Any, trial: Any) -> None:
        if trial.state == TrialState.COMPLETE:
            outcome = f"{self.metric} {score(trial.value)}"
        elif trial.state == TrialState.PRUNED:
            steps, when = trial.intermediate_values, trial.user_attrs.get("pruned_after", {})
            epochs = when.get("epochs", len(steps))
            fold = f" of fold {when['fold']}" if self.folds else ""
            last = f" ({self.metric} {score(steps[max(steps)])})" if steps else ""
            outcome = f"pruned after {epochs} epoch{'s' if epochs > 1 else ''}{fold}{last}"
        else:
            outcome = "failed"
        best = best_trial(study)
        best_text = f"best {score(best.value)} (trial {best.number})" if best is not None else "no best yet"
        values = ", ".join(
            f"{self.names[p.path]} {search_space.shown(p.decode(trial.params[p.path]))}"
            for p in self.params
            if p.path in trial.params
        )
        print(
            f"tune [{len(finished(study))}/{self.total}] trial {trial.number}: {outcome}; {best_text}; {values}",
            flush=True,
        )
        if trial.state == TrialState.COMPLETE:
            self.writer.add_scalar(f"tune/{self.metric}", trial.value, trial.number)
            self.writer.add_scalar(f"tune/best_{self.metric}", best.value, trial.number)
            self.writer.flush()


def stored_in(options: argparse.Namespace, folder: Path) -> str:
    """Where the study is: its file, or its database's URL (password hidden)."""
    return str(folder / "study.db") if options.storage is None else f"{options.name} in {shown_url(options.storage)}"


def score(value: float) -> str:
    """An objective value: 4 decimals, or 3 significant digits below 0.001 (a loss near 0 is not 0.0000)."""
    return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.3g}"


def best_trial(study: Any) -> Any:
    """The study's best complete trial, or None before the first."""
    try:
        return study.best_trial
    except ValueError:
        return None


@contextmanager
def board(folder: Path) -> Iterator[Any]:
    """A TensorBoard writer of the study folder, closed (flushed) when the block ends."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    try:
        yield writer
    finally:
        writer.close()


def report(
    study: Any,
    options: argparse.Namespace,
    params: list[search_space.Param],
    rest: list[str],
    folder: Path,
    metric: str,
    writer: Any,
) -> None:
    """The end of a run of ``tune``: trials.csv, the figures, best.yaml and a summary."""
    states = [t.state for t in study.trials]
    study.trials_dataframe().to_csv(folder / "trials.csv", index=False)
    figures = draw_figures(study, folder, writer, metric, short_names(params))
    best = best_trial(study)
    counts = ", ".join(f"{states.count(s)} {s.name.lower()}" for s in TrialState if states.count(s))
    split = f"the mean over {options.cv} folds" if options.cv else "the validation split"
    print(
        f"\nStudy {options.name}: {len(study.trials)} trials ({counts}); objective {metric} "
        f"({study.direction.name.lower()}) on {split}; the test split was not used"
    )
    if best is None:
        print("No trial completed: nothing to choose (every trial was pruned or failed).")
        return
    names = short_names(params)
    top = sorted(
        (t for t in study.trials if t.state == TrialState.COMPLETE),
        key=lambda t: t.value,
        reverse=study.direction.name == "MAXIMIZE",
    )[:5]
    print("| trial | " + " | ".join([metric, *names.values()]) + " |")
    print("|" + " --- |" * (len(names) + 2))
    for t in top:
        cells = [search_space.shown(p.decode(t.params[p.path])) if p.path in t.params else "" for p in params]
        own = " (config)" if t.user_attrs.get("config_values") else ""
        print(f"| {t.number}{own} | {score(t.value)} | " + " | ".join(cells) + " |")
    values = {p.path: p.decode(best.params[p.path]) for p in params if p.path in best.params}
    best_yaml = folder / "best.yaml"
    header = (
        f"# The best trial ({best.number}) of study {options.name}: {metric} {score(best.value)} on {split}.\n"
        f"# Train it (and test it): python -m lit_nets fit --config {best_yaml}\n"
    )
    best_yaml.write_text(header + runs.complete_config(rest + search_space.as_args(values)))
    print(f"Best:         trial {best.number}, {metric} {score(best.value)}: {best.user_attrs.get('run', '')}")
    print(f"Best config:  {best_yaml}    (train it: python -m lit_nets fit --config {best_yaml})")
    print(
        f"Trials:       {folder / 'trials.csv'}    (study: {stored_in(options, folder)}; view: tensorboard --logdir "
        f"{folder})"
    )
    if figures:
        print(f"Figures:      {', '.join(str(p) for p in figures)}")


def draw_figures(study: Any, folder: Path, writer: Any, metric: str, names: dict[str, str]) -> list[Path]:
    """Optuna's own matplotlib figures of the study, as PNGs in ``folder`` and in its TensorBoard (a figure that
    needs more trials than there are is left out, with a line that says why); axes named by the metric and the
    parameters' short names."""
    import numpy as np

    from lit_nets.core import plots

    plots.pyplot()  # the Agg backend, before Optuna imports pyplot
    from optuna.visualization import matplotlib as figures

    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=r".*identical low and high xlims.*")  # a slice of one value
        warnings.filterwarnings("ignore", message=r".*quantiles select the same set of trials.*")  # few trials
        for name, function in FIGURES.items():
            try:
                axes = getattr(figures, function)(study)
            except (ValueError, RuntimeError) as e:
                print(f"tune: no {name} figure yet: {e}", file=sys.stderr)
                continue
            axes = np.atleast_1d(axes).ravel()
            for ax in axes:
                if ax.get_ylabel() == "Objective Value":
                    ax.set_ylabel(metric)
                ax.set_xlabel(names.get(ax.get_xlabel(), ax.get_xlabel()))
            fig = axes[0].figure
            if name == "slice":
                fig.set_size_inches(max(6.0, 2.8 * len(axes) + 1.5), 4.0)
            writer.add_figure(f"tune/{name}", fig, global_step=len(finished(study)), close=False)
            written.append(plots.save(fig, folder / f"{name}.png"))
    return written
