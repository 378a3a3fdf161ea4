"""Why a tabular model decided: the contribution of each input column to a row's prediction, and which columns
matter over the data.

    python -m lit_nets explain --ckpt_path best.ckpt --rows new_rows.csv [--out explain/]

- **Per row**: Captum's Integrated Gradients on the network's input after standardisation: the standardised numbers
  (or their periodic embeddings), the one-hot categories and the embedded columns' vectors (the network's ``embed``).
  The baseline is "no information" there: every number at its training mean, no one-hot category, a zero embedding
  vector (what the unseen and missing categories start from). The attributions of a column's dimensions (its one-hot
  inputs, its embedding vector) are summed back to the column, so there is one number per column of the file, and by
  IG's completeness they add up, with the baseline's output, to the explained output: the logit of the predicted
  class (a binary model's one logit: the evidence for its second class); a value model's value, in the target's
  units (before it is kept within the training targets' range).
- **Over the data**: the mean |contribution| per column on the validation split (a seeded sample of
  ``--importance_rows`` rows, 1,000 by default, when it has more: the whole of diamonds' split took 443 s for the
  recipe model), and, as a model-agnostic check,
  permutation importance there: how much the validation loss rises (and accuracy falls) when one column's values are
  shuffled across rows, averaged over a few shuffles. Written by hand (a dozen lines): scikit-learn's
  ``permutation_importance`` needs an estimator, and scikit-learn is not a dependency of lit_nets.

Writes ``<rows>.attributions.csv`` (per row: prediction, explained class, baseline, output, a column per feature),
``importance.csv`` and ``importance.png``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)
STEPS = 128  # integration points (Gauss-Legendre); a ReLU MLP's kinks leave ~0.2% of the output unexplained at 128
REPEATS = 5  # shuffles per column for permutation importance
CHUNK = 256  # rows attributed at once (x STEPS points through the network)
IMPORTANCE_ROWS = 1000  # rows of the validation split the importance is measured on (a seeded sample when more)


@dataclass
class Attributions:
    """The contributions of each column to each row's explained output (see the module docstring)."""

    columns: list[str]
    values: np.ndarray  # (rows, columns)
    baseline: np.ndarray  # (rows,) the explained output at the baseline
    output: np.ndarray  # (rows,) the explained output at the row
    explained: np.ndarray  # (rows,) the index of the class whose output is explained
    probs: np.ndarray  # (rows, classes)

    def completeness_gap(self) -> float:
        """The largest |baseline + sum of contributions - output| over the rows: IG's approximation error."""
        return float(np.abs(self.baseline + self.values.sum(axis=1) - self.output).max()) if len(self.output) else 0.0


def tabular_schema(model: Any) -> Any:
    """The model's :class:`~lit_nets.core.data.schema.TabularSchema`, or one line saying this is not a tabular model
    (or a network of the user's that takes embedded columns' indices, which have no gradient to follow)."""
    from lit_nets.core.data.schema import TabularSchema, read_schema

    schema = read_schema(model.schema)
    if not isinstance(schema, TabularSchema):
        raise UserError("--rows explains a tabular (CSV-trained) model; this checkpoint is not one: use --images")
    if not hasattr(model.net, "embed") and schema.embedded:
        raise UserError(
            f"--rows: this network ({type(model.net).__name__}) takes the embedded columns "
            f"{', '.join(c['name'] for c in schema.embedded)} as indices, with no gradient to follow; train it with "
            "data.categorical_encoding onehot to explain its rows"
        )
    return schema


class PlainInputs:
    """A network of the user's on a table, seen as the shipped tabular networks are: its input after standardisation
    is the "embedding" (each number and each one-hot input a dimension), and the baseline is all zeros there (every
    number at its training mean, no category)."""

    numeric_width = 1

    def __init__(self, net: Any) -> None:
        self.net = net

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def baseline(self, z: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(z)

    def from_embedding(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def dimension_columns(schema: Any, numeric_width: int = 1) -> list[str]:
    """The file column behind each dimension of the network's first layer input (numbers, each ``numeric_width``
    wide when the network embeds them, one-hot inputs, then each embedded column's vector)."""
    numbers = [c["name"] for c in schema.numeric for _ in range(numeric_width)]
    dense = schema.input_columns[len(schema.numeric) : schema.dense_size]
    return numbers + dense + [c["name"] for c in schema.embedded for _ in range(int(c["size"]))]


def integrated_gradients(model: Any, x: torch.Tensor, steps: int = STEPS) -> Attributions:
    """Per-column Integrated Gradients of the rows ``x`` (encoded as the schema encodes a file) for ``model``."""
    from captum.attr import IntegratedGradients

    schema = tabular_schema(model)
    net = model.net if hasattr(model.net, "embed") else PlainInputs(model.net)
    dims = dimension_columns(schema, getattr(net, "numeric_width", 1))
    columns = list(dict.fromkeys(dims))
    to_columns = torch.zeros(len(dims), len(columns))
    to_columns[torch.arange(len(dims)), torch.tensor([columns.index(d) for d in dims])] = 1.0

    task = getattr(model, "task", None)
    value = task is not None and task.value
    scale, shift = (task.std, task.mean) if value else (1.0, 0.0)  # a value: in the target's units

    def head(z: torch.Tensor) -> torch.Tensor:  # the network after the embeddings: differentiable in z
        return net.from_embedding(z) * scale + shift

    model.eval()
    x = x.to(model.device, torch.float32)
    with torch.no_grad():
        z = net.embed(model.normalize(x))
        logits = head(z)
        baseline = net.baseline(z).contiguous()
    probs = logits if value else model.probabilities(logits)  # a value model: its values
    binary = logits.shape[1] == 1
    target = torch.zeros(len(x), dtype=torch.long, device=z.device) if binary else probs.argmax(dim=1)
    method = IntegratedGradients(head)
    with torch.enable_grad():  # CHUNK rows at a time: Captum warns, and steps one by one, past its internal batch
        values = torch.cat(
            [
                method.attribute(
                    z[i : i + CHUNK],
                    baselines=baseline[i : i + CHUNK],
                    target=target[i : i + CHUNK],
                    n_steps=steps,
                    internal_batch_size=CHUNK * 16,
                )
                for i in range(0, len(z), CHUNK)
            ]
        )
    with torch.no_grad():
        at_baseline = head(baseline).gather(1, target[:, None])[:, 0]
    rows = torch.arange(len(x), device=z.device)
    explained = torch.ones_like(target) if binary and not value else target  # a binary logit: the second class
    return Attributions(
        columns=columns,
        values=(values.detach().float().cpu() @ to_columns).numpy(),
        baseline=at_baseline.float().cpu().numpy(),
        output=logits[rows, target].float().cpu().numpy(),
        explained=explained.cpu().numpy(),
        probs=probs.float().cpu().numpy(),
    )


def permutation_importance(
    model: Any, x: torch.Tensor, y: torch.Tensor, repeats: int = REPEATS, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Per column: the rise of the loss and the fall of accuracy on ``(x, y)`` when that column's values are shuffled
    across the rows (mean and std over ``repeats`` shuffles). A column's encoded inputs (its one-hot block, its index)
    move together, which is shuffling its values in the file."""
    schema = tabular_schema(model)
    owners = schema.input_columns
    generator = torch.Generator().manual_seed(seed)
    model.eval()

    value = getattr(getattr(model, "task", None), "value", False)

    def score(inputs: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            logits = model(inputs.to(model.device))
            loss = model.compute_loss(logits, y.to(model.device))
            if value:  # a value: its RMSE, negated so that a worse model "drops"
                from lit_nets.core.models.heads import values

                return float(loss), -float(((values(model, logits).cpu() - y) ** 2).mean().sqrt())
            probs = model.probabilities(logits)
        return float(loss), float((probs.argmax(dim=1).cpu() == y).float().mean())

    base_loss, base_acc = score(x)
    out = {}
    for column in dict.fromkeys(owners):
        inputs = [i for i, owner in enumerate(owners) if owner == column]
        rises, falls = [], []
        for _ in range(repeats):
            shuffled = x.clone()
            shuffled[:, inputs] = x[torch.randperm(len(x), generator=generator)][:, inputs]
            loss, acc = score(shuffled)
            rises.append(loss - base_loss)
            falls.append(base_acc - acc)
        out[column] = {
            "loss_rise": float(np.mean(rises)),
            "loss_rise_std": float(np.std(rises)),
            ("rmse_rise" if value else "accuracy_drop"): round(float(np.mean(falls)), 6),
        }
    return out


def explain_rows(
    ckpt_path: Any, rows: str, out: str, device: str = "cpu", importance_rows: int = IMPORTANCE_ROWS
) -> list[Path]:
    """Write the per-row contributions of the rows in ``rows`` and the importance of each column over (a sample of
    ``importance_rows`` rows of) the checkpoint's validation split, none when 0 (see the module docstring); return
    the written files."""
    import pandas as pd

    from lit_nets.core.data.tables import read_table
    from lit_nets.deploy.inference import load_classifier

    model = load_classifier(ckpt_path, device)
    schema = tabular_schema(model)
    file = Path(rows)
    if not file.is_file():
        raise UserError(f"--rows: no such file {rows}")
    frame = read_table(file, list(schema.missing_markers))
    if frame.empty:
        raise UserError(f"--rows: {rows} has a header but no rows")
    found = integrated_gradients(model, torch.from_numpy(schema.encode(frame, rows)))
    names = list(model.class_names)
    table = pd.DataFrame({"row": frame.index})
    targets = [schema.target] if isinstance(schema.target, str) else list(schema.target)  # several labels: theirs
    if set(targets) <= set(frame.columns):
        table["target"] = (
            [" ".join(map(str, row)) for row in frame[targets].to_numpy()]
            if len(targets) > 1
            else (frame[targets[0]].to_numpy())
        )
    if model.task.value:  # the value, in the target's units (the explained output, kept within the training range)
        table["predicted"] = found.output.clip(model.task.low, model.task.high)
    elif model.task.labels:  # every label decided (each at its threshold); the likeliest one is explained
        decided = model.decide(torch.from_numpy(found.probs)).numpy()
        table["predicted"] = [" ".join(n for n, on in zip(names, row, strict=True) if on) for row in decided]
    else:
        predicted = found.probs.argmax(axis=1)
        table["predicted"] = [names[i] for i in predicted]
        table["probability"] = found.probs[np.arange(len(predicted)), predicted].round(6)
    table["explained"] = [names[i] for i in found.explained]
    table["baseline"] = found.baseline
    table["output"] = found.output
    for i, column in enumerate(found.columns):
        table[column] = found.values[:, i]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_row = out_dir / f"{file.stem}.attributions.csv"
    table.to_csv(per_row, index=False, float_format="%.6g")
    print(
        f"{rows}: contributions of {len(found.columns)} columns to {len(table)} rows -> {per_row} (baseline + "
        f"contributions = output within {found.completeness_gap():.1e})"
    )
    if importance_rows == 0:
        return [per_row]
    return [per_row, *global_importance(model, ckpt_path, found, out_dir, importance_rows)]


def global_importance(model: Any, ckpt_path: Any, rows: Attributions, out_dir: Path, most: int) -> list[Path]:
    """``importance.csv`` and ``importance.png``: mean |contribution| and permutation importance per column on the
    checkpoint's validation split (a seeded sample of ``most`` rows when it has more); on the given rows alone (no
    permutation) when the training data is not there."""
    import pandas as pd

    from lit_nets.core import plots
    from lit_nets.deploy.inference import checkpoint_data

    try:
        dm = checkpoint_data(ckpt_path, "validate", "the importance over the validation split")
        x, y = dm.splits.val[0], dm.splits.val[1]
        where = f"the validation split ({len(y):,} rows)"
        if len(y) > most:
            where = f"{most:,} rows drawn from the validation split's {len(y):,}"
            pick = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:most]
            x, y = x[pick], y[pick]
    except UserError as e:
        log.warning("%s; the importance figure is of the given rows only, without permutation importance", e)
        x = y = None
        where = f"the given rows ({len(rows.values):,})"
    overall = rows if x is None else integrated_gradients(model, x)
    mean_abs = np.abs(overall.values).mean(axis=0)
    table = pd.DataFrame({"column": overall.columns, "mean_abs_contribution": mean_abs})
    if x is not None:
        permuted = permutation_importance(model, x, y)
        for key in next(iter(permuted.values())):  # loss_rise, loss_rise_std, accuracy_drop (a value: rmse_rise)
            table[f"permutation_{key}"] = [permuted[c][key] for c in overall.columns]
    table = table.sort_values("mean_abs_contribution", ascending=False)
    csv = out_dir / "importance.csv"
    table.to_csv(csv, index=False, float_format="%.6g")
    shown = table.head(25).iloc[::-1]  # the largest at the top of the bars
    plt = plots.pyplot()
    panels = 1 if x is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 1.2 + 0.28 * len(shown)), squeeze=False, sharey=True)
    ax = axes[0][0]
    ax.barh(shown["column"], shown["mean_abs_contribution"], color="#3056d3")
    ax.set_title("mean |contribution| (Integrated Gradients)", fontsize=9)
    ax.set_xlabel(f"{model.task.name} units" if model.task.value else "logit units")
    if x is not None:
        ax = axes[0][1]
        ax.barh(
            shown["column"], shown["permutation_loss_rise"], xerr=shown["permutation_loss_rise_std"], color="#8fa6e8"
        )
        ax.set_title(f"permutation importance ({REPEATS} shuffles)", fontsize=9)
        ax.axvline(0.0, color="#1d2330", linewidth=0.8)
        ax.set_xlabel("rise of the validation loss")
    fig.suptitle(f"Which columns drive the model, on {where}", fontsize=10)
    figure = plots.save(fig, out_dir / "importance.png")
    top = ", ".join(
        f"{c} ({v:.3g})" for c, v in zip(table["column"][:5], table["mean_abs_contribution"][:5], strict=False)
    )
    print(f"importance on {where}: {top} -> {figure}")
    return [csv, figure]
