"""How the rows of a CSV file become input vectors and class indices: fitted once, kept in the checkpoint.

A :class:`TabularSchema` is fitted on the training split and holds only primitives (names, numbers), so it
travels in the model's hyper-parameters and loads with ``torch.load(weights_only=True)``:

- numeric columns: missing values are imputed with the training median; the model standardises them with
  the training mean and std (the statistics are the model's ``mean``/``std``);
- text / categorical columns, each one of two ways (``data.categorical_encoding``; ``auto``: one-hot up to
  ``data.onehot_max`` categories, an embedding above):

  - **one-hot** over the categories seen in training (a missing value is the category ``(missing)``); a category
    never seen in training encodes as all zeros;
  - **embedding** (entity embeddings, as fastai and pytorch_tabular use for columns of many values): one input that
    holds the category's index in the column's vocabulary, which the model looks up in a learned table
    (:class:`lit_nets.core.models.nets.TabularMLP`). Index 0 is ``(unseen)``: a category not seen in training; index 1
    is ``(missing)``; then the training categories, sorted. A table row has ``embedding_size(vocabulary)``
    numbers: fastai's rule ``min(600, round(1.6 * n ** 0.56))`` (e.g. 39 for 300 categories);

  unseen categories are counted in a log line;
- the target: any values (ints, strings) mapped to class indices in sorted order.

No Lightning here: pandas and NumPy only.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lit_nets.core.data import quantiles
from lit_nets.core.data.column_values import (
    FLOAT32_MAX,
    MISSING,
    UNSEEN,
    Encoding,
    as_numbers,
    category_codes,
    check_categories,
    finite,
    label_text,
    line_of,
    log_counts,
    real_categories,
)
from lit_nets.core.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def named(names: list[str], most: int = 10) -> str:
    """Up to ``most`` names, quoted, and how many more: one line even for a 5,000-column table."""
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most:,} more" if len(names) > most else "")


def embedding_size(vocabulary: int) -> int:
    """Numbers per category of an embedded column: fastai's rule of thumb, ``min(600, round(1.6 * n ** 0.56))``
    (``n``: the vocabulary, reserved indices included), which grows slower than the vocabulary."""
    return int(min(600, round(1.6 * vocabulary**0.56)))


def class_order(values: pd.Series) -> list[str]:
    """Sorted class names: numerically when every label is a number, else alphabetically."""
    import pandas as pd

    unique = values.dropna().unique()
    numeric = pd.to_numeric(pd.Series(unique), errors="coerce")
    if numeric.notna().all():
        unique = [unique[i] for i in np.argsort(numeric.to_numpy(), kind="stable")]
        return [label_text(v) for v in unique]
    return sorted(label_text(v) for v in unique)


@dataclass
class TabularSchema:
    """The fitted encoding of a CSV file's columns (see the module docstring)."""

    target: str | list[str]  # several labels: their columns
    classes: list[str]
    class_counts: list[int]
    numeric: list[dict[str, Any]] = field(default_factory=list)  # name, fill, mean, std
    categorical: list[dict[str, Any]] = field(default_factory=list)  # name, categories
    # strings that meant "missing" in the training file besides pandas' own ("", "NA", "NaN", ...): data.na_values
    missing_markers: list[str] = field(default_factory=lambda: ["?"])
    kind: Literal["tabular"] = "tabular"  # what read_schema() tells records apart by
    # value: a number (regression), classes is [target]; labels: several two-valued columns, classes are their names
    target_kind: Literal["classes", "value", "labels"] = "classes"

    # -- fitting ----------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        target: str | list[str],
        classes: list[str],
        features: list[str],
        categorical: list[str],
        max_categories: int,
        file: str | Path,
        whole: pd.DataFrame | None = None,
        encoding: Encoding = "onehot",
        onehot_max: int = 10,
        target_kind: Literal["classes", "value", "labels"] = "classes",
        scaling: Literal["standard", "quantile"] = "standard",
    ) -> TabularSchema:
        """Fit on the training rows ``train`` of ``file`` (which holds ``features`` and ``target``).

        Which columns are numbers is decided on ``whole`` (all rows of the file, default ``train``), so a
        stray text value is reported wherever it is; the statistics come from ``train`` alone. ``encoding``
        says how categorical columns are encoded (``auto``: one-hot up to ``onehot_max`` categories); ``scaling``
        how numbers are (standardised, or ``quantile``: normal scores of their training ranks, then standardised).
        """
        import pandas as pd

        whole = train if whole is None else whole
        typed = bool(whole.attrs.get("typed"))  # Parquet / Feather: the file's types decide, nothing is parsed
        if target_kind == "labels":  # each label's positives in the training rows
            positives = label_flags(train[target], file).sum(axis=0)
            schema = cls(target=list(target), classes=classes, class_counts=[int(p) for p in positives])
            schema.target_kind = "labels"
        else:
            counts = train[target].map(label_text).value_counts()
            schema = cls(target=target, classes=classes, class_counts=[int(counts.get(c, 0)) for c in classes])
        if target_kind == "value":
            schema.target_kind, schema.class_counts = "value", [len(train)]
        empty = []
        for name in features:
            column = train[name]
            if not column.notna().any():  # nothing to learn from, and no median to fill it with
                empty.append(name)
                continue
            number_type = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
            if name not in categorical and (number_type or not typed) and not pd.api.types.is_bool_dtype(column):
                numeric = numeric_entry(whole[name], column, name, file, scaling == "quantile")
                if numeric is not None:
                    schema.numeric.append(numeric)
                    continue
            check = (max_categories, file, name in categorical)
            schema.categorical.append(categorical_entry(column, name, encoding, onehot_max, check))
        # one-hot columns first, then the embedded ones: the model's inputs are its dense part, then indices
        schema.categorical.sort(key=lambda c: c.get("encoding") == "embedding")
        if empty:
            log.warning(
                "%s: left out %d column(s) without a single value in the training rows: %s",
                file,
                len(empty),
                ", ".join(map(repr, empty)),
            )
        if not schema.features:
            raise UserError(f"{file}: no feature column has any value in the training rows")
        return schema

    # -- what the model sees ------------------------------------------------------------------------------
    @property
    def features(self) -> list[str]:
        """The CSV columns the model reads, in encoding order."""
        return [c["name"] for c in self.numeric] + [c["name"] for c in self.categorical]

    @property
    def onehot(self) -> list[dict[str, Any]]:
        """The one-hot encoded categorical columns (checkpoints of lit_nets 0.2 have no ``encoding``: one-hot)."""
        return [c for c in self.categorical if c.get("encoding", "onehot") == "onehot"]

    @property
    def embedded(self) -> list[dict[str, Any]]:
        """The categorical columns the model embeds: one index input each, after every dense input."""
        return [c for c in self.categorical if c.get("encoding") == "embedding"]

    @property
    def encoded_names(self) -> list[str]:
        """A name per input of the model: numeric columns, ``column=category`` one-hot inputs, then the embedded
        columns' index inputs (``column``)."""
        return (
            [c["name"] for c in self.numeric]
            + [f"{c['name']}={cat}" for c in self.onehot for cat in c["categories"]]
            + [c["name"] for c in self.embedded]
        )

    @property
    def input_columns(self) -> list[str]:
        """The CSV column behind each input of the model (a one-hot column's name repeats per category)."""
        return (
            [c["name"] for c in self.numeric]
            + [c["name"] for c in self.onehot for _ in c["categories"]]
            + [c["name"] for c in self.embedded]
        )

    @property
    def input_size(self) -> int:
        return len(self.numeric) + sum(len(c["categories"]) for c in self.onehot) + len(self.embedded)

    @property
    def dense_size(self) -> int:
        """Inputs before the embedded columns' indices: numbers and one-hot categories."""
        return self.input_size - len(self.embedded)

    @property
    def embeddings(self) -> list[tuple[int, int]]:
        """(vocabulary, size) of each embedded column's table, in input order."""
        return [(len(c["categories"]), int(c["size"])) for c in self.embedded]

    def known_categories(self, column: dict[str, Any]) -> list[str]:
        """The categories of a categorical column entry seen in training, values first (``(missing)`` last, an
        embedding's ``(unseen)`` left out)."""
        values, missing = real_categories(column)
        return values + [MISSING] * (missing is not None)

    def normalization(self) -> tuple[list[float], list[float]]:
        """Mean and std per model input: training statistics for numbers, (0, 1) for one-hot inputs and indices
        (which therefore reach the network unchanged)."""
        rest = self.input_size - len(self.numeric)
        means = [c["mean"] for c in self.numeric] + [0.0] * rest
        stds = [c["std"] for c in self.numeric] + [1.0] * rest
        return means, stds

    # -- applying it ----------------------------------------------------------------------------------------
    def encode(self, frame: pd.DataFrame, file: str | Path, tally: dict[str, Counter] | None = None) -> np.ndarray:
        """Rows of ``frame`` (read from ``file``) as float32 input vectors (raw numbers, one-hot categories). The
        imputed and unseen values are said in a line each, or counted in ``tally`` (``imputed``, ``unseen``: by
        column) for a file encoded in parts (:meth:`say_tally` says them)."""
        missing = [name for name in self.features if name not in frame.columns]
        if missing:
            raise UserError(
                f"{file}: missing feature column(s) {named(missing)}; the model was trained on {named(self.features)}"
            )
        parts, imputed, unseen = [], {}, {}
        if self.numeric:
            numbers = self._numbers(frame, file)
            gaps = np.isnan(numbers)
            imputed = {c["name"]: int(n) for c, n in zip(self.numeric, gaps.sum(axis=0), strict=True) if n}
            fills = np.array([c["fill"] for c in self.numeric])
            parts.append(quantiles.apply(np.where(gaps, fills, numbers), self.numeric).astype(np.float32))
        for c in self.categorical:  # one-hot ones first (fit sorts them so), as the inputs are
            codes = category_codes(frame[c["name"]], c)  # -1: not seen in training
            if (codes < 0).any():
                unseen[c["name"]] = int((codes < 0).sum())
            if c.get("encoding") == "embedding":
                parts.append(np.maximum(codes, 0).astype(np.float32)[:, None])  # index 0: (unseen)
                continue
            one_hot = codes[:, None] == np.arange(len(c["categories"]))[None, :]
            parts.append(one_hot.astype(np.float32))
        if tally is not None:
            tally.setdefault("imputed", Counter()).update(imputed)
            tally.setdefault("unseen", Counter()).update(unseen)
        else:
            self.say_tally(file, {"imputed": imputed, "unseen": unseen})
        if not parts:
            return np.zeros((len(frame), 0), dtype=np.float32)
        return np.concatenate(parts, axis=1)

    @staticmethod
    def say_tally(file: str | Path, tally: dict[str, Any]) -> None:
        """The lines of :meth:`encode` about imputed and unseen values, from its counts."""
        imputed, unseen = dict(tally.get("imputed") or {}), dict(tally.get("unseen") or {})
        log_counts(logging.INFO, file, "imputed {} missing value(s) with training medians", imputed)
        log_counts(logging.WARNING, file, "{} value(s) of categories not seen in training, encoded as unseen", unseen)

    def _numbers(self, frame: pd.DataFrame, file: str | Path) -> np.ndarray:
        """The numeric columns of ``frame`` as one float64 array (NaN where missing): columns that pandas read as
        numbers in one conversion (a 5,000-column file took seconds column by column), the others parsed one by one;
        a value that is not a finite float32 is an error naming its column and line."""
        import pandas as pd

        names = [c["name"] for c in self.numeric]
        kinds = frame.dtypes.to_dict()  # once: frame[name] per column took 0.3 s for 5,000 columns
        numeric = [pd.api.types.is_numeric_dtype(kinds[n]) and not pd.api.types.is_bool_dtype(kinds[n]) for n in names]
        out = np.empty((len(frame), len(names)), dtype=np.float64)
        fast = [i for i, is_number in enumerate(numeric) if is_number]
        if fast:
            out[:, fast] = frame[[names[i] for i in fast]].to_numpy(dtype=np.float64)
        for i in (i for i, is_number in enumerate(numeric) if not is_number):
            out[:, i] = as_numbers(frame[names[i]], names[i], file, strict=True).to_numpy(dtype=np.float64)
        bad = ~np.isnan(out) & ~(np.abs(out) <= FLOAT32_MAX)
        if bad.any():
            col = np.argwhere(bad)[0][1]  # the column of the first row that holds one
            finite(pd.Series(out[:, col], index=frame.index), frame[names[col]], names[col], file)
        return out

    def encode_target(self, column: pd.Series, file: str | Path) -> np.ndarray:
        """Class indices of the labels in ``column`` (a label not among the classes is an error); for a value
        target, its numbers (float32; text is an error)."""
        if self.target_kind == "value":
            return target_numbers(column, self.target, file)
        if self.target_kind == "labels":
            return label_flags(column, file)
        index = {name: i for i, name in enumerate(self.classes)}
        labels = column.map(label_text)
        unknown = ~labels.isin(list(index))
        if unknown.any():
            at = unknown.idxmax()
            raise UserError(
                f"{file}: column '{self.target}', line {line_of(at)}: label {labels[at]!r} is not one of the "
                f"classes the model knows ({', '.join(self.classes)})"
            )
        return np.array(labels.map(index), dtype=np.int64)  # a copy: pandas 3 hands out read-only views

    # -- storage ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TabularSchema:
        return cls(**data)


@dataclass
class ImageSchema:
    """What an image model's input must be: its classes, channels (1 or 3) and image size (height, width); with
    ``crop_pct``, how an image is brought to that size: resized to cover ``image_size / crop_pct``, centre-cropped
    (:func:`lit_nets.core.data.image_io.decode`); without, resized to it."""

    classes: list[str]
    channels: int
    image_size: list[int]
    kind: Literal["image"] = "image"
    crop_pct: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_schema(data: dict[str, Any] | None) -> ImageSchema | TabularSchema | None:
    """The typed record of a schema as a checkpoint or an export sidecar keeps it (a dict of primitives, which
    ``torch.load(weights_only=True)`` reads), or None for none. Its ``kind`` says which record it is; lit_nets 0.1
    saved no kind, and there the tabular schema is the one with a target."""
    if not data:
        return None
    kind = data.get("kind") or ("tabular" if "target" in data else "image")
    return TabularSchema.from_dict(data) if kind == "tabular" else ImageSchema(**{**data, "kind": "image"})


def numeric_entry(
    whole: pd.Series, column: pd.Series, name: str, file: str | Path, quantile: bool = False
) -> dict[str, Any] | None:
    """A number column's entry (its median fills a missing value; mean and std standardise it; with ``quantile``,
    the knots of its quantile transform, and the transformed values' mean and std), fitted on the training rows
    ``column``; None when the column is not numbers (decided on all of the file's rows, ``whole``)."""
    values = as_numbers(column, name, file) if as_numbers(whole, name, file) is not None else None
    if values is None:
        return None
    median = float(values.median()) if values.notna().any() else 0.0
    filled = values.fillna(median)
    if quantile:
        fitted = quantiles.fit_quantiles(filled.to_numpy(dtype=np.float64))
        return {"name": name, "fill": median, "mean": fitted.pop("mean"), "std": fitted.pop("std"), "quantiles": fitted}
    std = float(filled.std(ddof=0)) if len(filled) > 1 else 1.0
    return {"name": name, "fill": median, "mean": float(filled.mean()), "std": std if std > 0 else 1.0}


def categorical_entry(
    column: pd.Series, name: str, encoding: Encoding, onehot_max: int, check: tuple[int, str | Path, bool]
) -> dict[str, Any]:
    """A category column's entry, one-hot or embedded (``check``: the most categories, the file, whether the user
    listed the column as categorical). The data's own values; a missing value is a slot of its own, by position (a
    category spelled "(missing)" or "(unseen)" is just another value)."""
    categories = sorted({label_text(v) for v in column.dropna()})
    has_missing = bool(column.isna().any())
    most, file, listed = check
    check_categories(column, categories, name, most, file, listed=listed)
    if encoding == "embedding" or (encoding == "auto" and len(categories) + has_missing > onehot_max):
        vocabulary = [UNSEEN, MISSING, *categories]
        return {
            "name": name,
            "categories": vocabulary,
            "encoding": "embedding",
            "size": embedding_size(len(vocabulary)),
        }
    return {
        "name": name,
        "categories": categories + [MISSING] * has_missing,
        "encoding": "onehot",
        "missing_at": len(categories) if has_missing else None,
    }


def target_numbers(column: pd.Series, name: str, file: str | Path) -> np.ndarray:
    """The numbers of a value target's column (float32); one line naming the first that is not a number."""
    import pandas as pd

    numbers = pd.to_numeric(column, errors="coerce")
    text = numbers.isna() & column.notna()
    if text.any():
        at = text.idxmax()
        raise UserError(
            f"{file}: column '{name}', line {line_of(at)}: {column[at]!r} is not a number; a value target (data.task "
            "value) needs numbers in every row: fix the row, or use data.task classes for labels"
        )
    out = numbers.to_numpy(dtype=np.float64)
    if not np.isfinite(out).all():
        raise UserError(f"{file}: column '{name}' holds an infinite number; a value target needs finite numbers")
    return out.astype(np.float32)


def value_strata(column: pd.Series, name: str, file: str | Path) -> Any:
    """Which tenth of the values (by quantile) each row's target falls in: the splits and the folds of a value target
    are stratified by it, so each holds small and large values alike. A constant target is an error."""
    import pandas as pd
    import torch

    numbers = target_numbers(column, name, file)
    if numbers.min() == numbers.max():
        raise UserError(
            f"{file}: target '{name}' is {numbers[0]:g} in every row: there is nothing to predict; set data.target to "
            "the column to predict"
        )
    codes = pd.qcut(pd.Series(numbers).rank(method="first"), q=min(10, len(numbers)), labels=False)
    return torch.as_tensor(codes.to_numpy(dtype=np.int64).copy())


YES = {"1", "1.0", "yes", "y", "true", "t"}
NO = {"0", "0.0", "no", "n", "false", "f"}


def label_flags(frame: pd.DataFrame, file: str | Path) -> np.ndarray:
    """Several labels' columns as 0/1 (float32, rows x labels): each column two-valued, 0/1, yes/no or true/false
    in any case; anything else is one line naming the column and the line."""
    out = np.zeros(frame.shape, dtype=np.float32)
    for j, name in enumerate(frame.columns):
        text = frame[name].map(lambda v: str(v).strip().lower())
        unknown = ~text.isin(YES | NO)
        if unknown.any():
            at = unknown.idxmax()
            raise UserError(
                f"{file}: label column '{name}', line {line_of(at)}: {frame[name][at]!r} is not one of 0/1, yes/no, "
                "true/false; several labels are two-valued columns (a column of classes is one target)"
            )
        out[:, j] = text.isin(YES).to_numpy()
    return out
