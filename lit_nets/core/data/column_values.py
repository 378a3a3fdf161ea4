"""How a table column's values become the numbers a model takes: numbers checked finite (a value named when it
is not), categories checked against the trained ones (unseen and missing ones counted and logged), and the codes of
an embedded column (its reserved slots by position)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from lit_nets.core.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
MISSING = "(missing)"
UNSEEN = "(unseen)"  # an embedded column's index 0: a category not seen in training
Encoding = Literal["onehot", "embedding", "auto"]
ID_SHARE = 0.9  # a text column with more different values than this share of its rows is an id or free text
SPARSE_SHARE = 0.5  # above this share it is kept (embedded), with a note that most of its values are rare
RESERVED = 2  # an embedded column's indices 0 (unseen) and 1 (missing): reserved by position, whatever the data hold
ID_MIN = 20  # ... when it has more than this many values (a small file's few categories are not ids)


MOSTLY_NUMBERS = 0.9  # a text column whose values are at least this share of numbers is a numeric column


def line_of(index: Any) -> int:
    """The line of the CSV file that holds the row with this (0-based, default) index; the header is line 1."""
    return int(index) + 2


def label_text(value: Any) -> str:
    """A class label as text; whole floats (from an int column with gaps) lose their ``.0``."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def first_non_number(column: pd.Series) -> tuple[Any, Any]:
    """(index, value) of the first value that is present but not a number."""
    import pandas as pd

    parsed = pd.to_numeric(column, errors="coerce")
    bad = column.notna() & parsed.isna()
    index = bad.idxmax()
    return index, column[index]


def log_counts(level: int, file: str | Path, what: str, counts: dict[str, int]) -> None:
    """One log line: ``FILE: <what with the total>: column (count), ...``; nothing when there are no counts."""
    if counts:
        per_column = ", ".join(f"{name} ({n})" for name, n in counts.items())
        log.log(level, "%s: %s: %s", file, what.format(sum(counts.values())), per_column)


def check_categories(
    column: pd.Series, categories: list[str], name: str, most: int, file: str | Path, listed: bool = False
) -> None:
    """Refuse a text column that is free text or an id rather than categories: more values than ``most``, or (with
    more than ``ID_MIN``, unless the user ``listed`` it in data.categorical) a different value on more than
    ``ID_SHARE`` of its rows, which teaches a model nothing about the rows it has not seen."""
    present = int(column.notna().sum())
    index, value = column.index[0], column.iloc[0]
    example = f"e.g. {value!r} on line {line_of(index)}"
    if not listed and len(categories) > ID_MIN and len(categories) > SPARSE_SHARE * present:
        log.info(
            "%s: column '%s' has %d different values in %d training rows: most are rare, and an embedding "
            "learns little for them",
            file,
            name,
            len(categories),
            present,
        )
    if not listed and len(categories) > ID_MIN and len(categories) > ID_SHARE * present:
        raise UserError(
            f"{file}: column '{name}' has {len(categories):,} different values in {present:,} training rows "
            f"({example}): an id or free text, not categories a model can learn from; leave it out with "
            f"data.exclude [{name}] (or list it in data.categorical to embed it anyway), or fix it if it should hold "
            "numbers"
        )
    if len(categories) > most:
        raise UserError(
            f"{file}: column '{name}' has {len(categories):,} different text values ({example}), more than "
            f"data.max_categories={most}: leave it out with data.exclude [{name}], raise max_categories, or fix it if "
            "it should hold numbers"
        )


def closest_column(name: str, columns: list[str]) -> str:
    """`` (did you mean ...?)`` naming the column ``name`` most likely meant (spaces around it, its case, or a close
    spelling: a published table's ``default `` with its trailing space), or nothing."""
    import difflib

    text = [str(c) for c in columns]
    same = [c for c in text if c.strip().casefold() == name.strip().casefold()]
    close = same or difflib.get_close_matches(name, text, n=1)
    if not close:
        return ""
    found = close[0]
    spaces = ", spaces included: quote it in YAML" if found != found.strip() else ""
    return f" (did you mean {found!r}{spaces}?)"


def is_row_id(column: pd.Series) -> bool:
    """Whether a column counts the rows: whole numbers rising by one from row to row (a row number, an
    auto-increment order or passenger id). It tells a model where a row sits in the file, nothing about what it is."""
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce")
    if len(values) <= ID_MIN or values.isna().any():
        return False
    numbers = values.to_numpy(dtype=float)
    return bool(np.all(numbers == np.round(numbers)) and np.all(np.diff(numbers) == 1.0))


def real_categories(entry: dict[str, Any]) -> tuple[list[str], int | None]:
    """(the data's categories of a categorical column entry, the slot of a missing value or None). An embedding
    reserves its first ``RESERVED`` indices; a one-hot entry names its missing slot (``missing_at``; checkpoints of
    lit_nets 0.2 have none: there the slot is where the text ``(missing)`` stands)."""
    categories = entry["categories"]
    if entry.get("encoding") == "embedding":
        return list(categories[RESERVED:]), 1
    at = (
        entry["missing_at"] if "missing_at" in entry else (categories.index(MISSING) if MISSING in categories else None)
    )
    return [c for i, c in enumerate(categories) if i != at], at


def category_codes(column: pd.Series, entry: dict[str, Any]) -> np.ndarray:
    """Each value's index among the entry's inputs (one-hot position or embedding index); -1 for a value not seen
    in training (and for a missing value where training had none)."""
    import pandas as pd

    real, missing = real_categories(entry)
    slots = np.array(
        [
            i
            for i in range(len(entry["categories"]))
            if i != missing and (entry.get("encoding") != "embedding" or i >= RESERVED)
        ],
        dtype=np.int64,
    )
    present = column.notna().to_numpy()
    codes = np.full(len(column), -1 if missing is None else missing, dtype=np.int64)
    found = pd.Index(real).get_indexer([label_text(v) for v in column[present]])
    codes[present] = np.where(found >= 0, slots[np.maximum(found, 0)] if len(slots) else -1, -1)
    return codes


FLOAT32_MAX = float(np.finfo(np.float32).max)


def finite(values: pd.Series, column: pd.Series, name: str, file: str | Path) -> pd.Series:
    """``values``, when every number in it is finite and fits the model's float32; else an error naming the line.
    (``inf`` or ``1e39`` would make every loss NaN: a model at chance, trained without a word.)"""
    array = values.to_numpy(dtype=np.float64)
    bad = ~np.isnan(array) & ~(np.abs(array) <= FLOAT32_MAX)
    if bad.any():
        index = values.index[int(bad.argmax())]
        raise UserError(
            f"{file}: column '{name}', line {line_of(index)} has {shown(column[index])}, not a finite number a model "
            f"can take (the largest is {FLOAT32_MAX:.3g}); fix the value, or leave the cell empty to mark it missing"
        )
    return values


def shown(value: Any) -> str:
    """A cell's value as a message quotes it: numbers as written (``inf``, ``1e+39``), texts in quotes."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return format(float(value), "g")
    return repr(value)


def as_numbers(column: pd.Series, name: str, file: str | Path, strict: bool = False) -> pd.Series | None:
    """The column as floats; None when it is a text column (categories). A column of mostly numbers with a
    stray text value, or (``strict``) any text in a numeric column, is an error naming the line."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return finite(column.astype(float), column, name, file)
    parsed = pd.to_numeric(column, errors="coerce")
    present = int(column.notna().sum())
    numbers = int(parsed.notna().sum())
    if numbers == present:
        return finite(parsed.astype(float), column, name, file)
    if strict or (present and numbers / present >= MOSTLY_NUMBERS):
        index, value = first_non_number(column)
        what = "holds numbers" if not strict else "was numeric in training"
        raise UserError(
            f"{file}: column '{name}' {what}, but line {line_of(index)} has {value!r} "
            f"({present - numbers} value(s) of the column are not numbers): fix the file, or add {value!r} to "
            "data.na_values if it marks a missing value"
            + ("" if strict else ", or list the column in data.categorical to treat it as categories")
        )
    return None
