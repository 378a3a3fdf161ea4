"""Reading a table file as a user's spreadsheet wrote it: separator, decimal mark and text encoding found out (or
given), duplicated column names refused; Parquet and Feather files (by extension, through pyarrow) as they are.

Parquet (``.parquet``, ``.pq``) and Feather / Arrow IPC (``.feather``, ``.arrow``) files carry their column types:
they are read with pyarrow and nothing is guessed or re-parsed: a numeric column is numbers, any other column (text,
dictionary, boolean) is categories (the frame's ``attrs["typed"]`` tells
:class:`~lit_nets.core.data.schema.TabularSchema` so), and a null is a missing value.

Excel writes ``;``-separated files with decimal commas in much of Europe, in the Windows code page rather than
UTF-8, sometimes with a byte-order mark; pandas reads all of that when told, and is told here:

- **encoding**: UTF-8 (a UTF-8 or UTF-16 byte-order mark is honoured); a file that is not valid UTF-8 is read as
  Windows-1252 (the Windows code page of Western Europe and the Americas, a superset of Latin-1) with a warning
  that names ``data.encoding``;
- **separator**: the one of ``,`` ``;`` tab ``|`` that splits the header and the first rows into the same number of
  columns, most of them (Python's ``csv.Sniffer`` prefers ``,`` on a tie, and a row of decimal commas ties);
- **decimal mark**: ``,`` when the separator is not ``,`` and numbers are written ``1,5`` and never ``1.5``.

What was found is logged when it is not plain comma-separated UTF-8. ``data.sep``, ``data.decimal`` and
``data.encoding`` override each. Written by hand around pandas: neither pandas nor the standard library detect the
decimal mark, and ``csv.Sniffer`` picks ``,`` for such files.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)
SEPARATORS = (",", ";", "\t", "|")
SAMPLE_BYTES = 1 << 20  # what detection looks at: the first MiB
ROWS_LOOKED_AT = 50
COMMA_DECIMAL = re.compile(r"^\s*[+-]?\d*,\d+(?:[eE][+-]?\d+)?\s*$")
POINT_DECIMAL = re.compile(r"^\s*[+-]?\d*\.\d+(?:[eE][+-]?\d+)?\s*$")
NAMES = {"\t": "tab", ",": "','", ";": "';'", "|": "'|'"}


@dataclass
class Dialect:
    """How a file is written: what pandas' ``read_csv`` needs to be told."""

    sep: str = ","
    decimal: str = "."
    encoding: str = "utf-8"
    skipinitialspace: bool = False  # a space after every separator (UCI's adult.data: "39, State-gov, ...")

    def describe(self) -> str:
        marks = "decimal commas" if self.decimal == "," else f"decimal mark {self.decimal!r}"
        spaced = " (a space after each, stripped)" if self.skipinitialspace else ""
        return f"{NAMES.get(self.sep, repr(self.sep))}-separated{spaced}, {marks}, encoding {self.encoding}"


def detect_encoding(head: bytes, path: str | Path) -> str:
    """The text encoding of a file from its first bytes: a byte-order mark, else UTF-8, else Windows-1252."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        head.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as e:
        if e.start >= len(head) - 3:  # a character cut by the end of the sample, not a wrong encoding
            return "utf-8"
        try:
            head.decode("cp1252")
        except UnicodeDecodeError:
            raise UserError(
                f"{path} is not UTF-8 text (byte 0x{head[e.start]:02x} at position {e.start}) nor Windows-1252: "
                "set data.encoding to the file's encoding, e.g. latin-1, cp1250 or utf-16"
            ) from None
        log.warning(
            "%s is not UTF-8 (byte 0x%02x at position %d): read as Windows-1252; if names or texts come out wrong, "
            "set data.encoding to the file's encoding (e.g. cp1250, latin-1)",
            path,
            head[e.start],
            e.start,
        )
        return "cp1252"


def detect_separator(lines: list[str]) -> str:
    """The separator that splits the header and the first rows into the same number of columns, most of them."""
    best, best_columns = ",", 1
    for sep in SEPARATORS:
        counts = {len(row) for row in csv.reader(lines, delimiter=sep) if row}
        if len(counts) == 1 and (columns := counts.pop()) > best_columns:
            best, best_columns = sep, columns
    return best


def detect_decimal(lines: list[str], sep: str) -> str:
    """``,`` when the separator is not a comma and the numbers are written with decimal commas, else ``.``."""
    if sep == ",":
        return "."
    fields = Counter()
    for row in csv.reader(lines[1:], delimiter=sep):
        for field in row:
            fields["comma"] += bool(COMMA_DECIMAL.match(field))
            fields["point"] += bool(POINT_DECIMAL.match(field))
    return "," if fields["comma"] and not fields["point"] else "."


def detect_spaces(lines: list[str], sep: str) -> bool:
    """Whether the fields after a separator start with a space, most of them (header and rows): such files (UCI's
    census table and others written by C's printf) are read with the space stripped, names and values alike."""
    fields = [field for row in csv.reader(lines, delimiter=sep) for field in row[1:]]
    return sep != " " and bool(fields) and sum(f.startswith(" ") for f in fields) > 0.5 * len(fields)


def dialect_of(
    path: str | Path, sep: str | None = None, decimal: str | None = None, encoding: str | None = None
) -> Dialect:
    """How ``path`` is written; the given values win, the others are detected from its first MiB."""
    with open(path, "rb") as f:
        head = f.read(SAMPLE_BYTES)
    encoding = encoding or detect_encoding(head, path)
    try:
        text = head.decode(encoding, errors="replace")
    except LookupError:
        raise UserError(f"data.encoding {encoding!r} is not an encoding Python knows (e.g. utf-8, cp1252)") from None
    lines = text.lstrip("\ufeff").splitlines()[: ROWS_LOOKED_AT + 1]
    if len(text) >= SAMPLE_BYTES // 2 and len(lines) > 1:
        lines = lines[:-1]  # the last line of the sample may be cut short
    sep = sep or detect_separator(lines)
    spaced = detect_spaces(lines, sep)
    return Dialect(sep=sep, decimal=decimal or detect_decimal(lines, sep), encoding=encoding, skipinitialspace=spaced)


TYPED = {".parquet": "Parquet", ".pq": "Parquet", ".feather": "Feather", ".arrow": "Feather"}


def read_typed(path: str | Path) -> Any:
    """A Parquet or Feather file as a pandas DataFrame with its own column types (``attrs["typed"]`` set)."""
    import pandas as pd

    kind = TYPED[Path(path).suffix.lower()]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise UserError(f"{path}: reading {kind} files needs pyarrow: pip install pyarrow") from None
    import pyarrow as pa
    from pyarrow import feather, parquet

    try:
        table = parquet.read_table(path) if kind == "Parquet" else feather.read_table(path)
    except Exception as e:  # pyarrow's errors have no common base: ArrowInvalid, OSError, ...
        raise UserError(f"{path} is not a readable {kind} file: {str(e).strip().splitlines()[0]}") from None
    for i, column in enumerate(table.schema):
        if pa.types.is_nested(column.type):
            raise UserError(
                f"{path}: column {column.name!r} holds {column.type} values (lists or records), not one "
                "number or category per row: flatten it into columns, or leave it out of the file"
            )
        if pa.types.is_decimal(column.type):  # exact decimals are numbers to a model (pandas would give objects)
            table = table.set_column(i, column.name, table.column(i).cast(pa.float64()))
    frame = table.to_pandas()
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0:
        frame = frame.reset_index(drop=True)  # rows numbered 0.. as a CSV's are (a pandas index saved in the file)
    names = [str(c) for c in frame.columns]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(
            f"{path}: column {twice[0]!r} appears {names.count(twice[0])} times: rename them so that each "
            "name is unique"
        )
    frame.columns = names
    frame.attrs["typed"] = True
    return frame


def read_table(
    path: str | Path,
    na_values: list[str],
    sep: str | None = None,
    decimal: str | None = None,
    encoding: str | None = None,
) -> Any:
    """A table file as a pandas DataFrame: Parquet and Feather by their extension (:func:`read_typed`), anything
    else as CSV read as :func:`dialect_of` says; errors name the file and what to set."""
    if Path(path).suffix.lower() in TYPED:
        return read_typed(path)
    frame = _read_csv(path, na_values, dialect_of(path, sep, decimal, encoding))
    frame = blanks_as_missing(frame, path)
    say_what_is_missing(frame, path, na_values)
    return frame


def _read_csv(path: str | Path, na_values: list[str], dialect: Dialect, chunk_rows: int | None = None) -> Any:
    """pandas' ``read_csv`` as the dialect says (a reader of ``chunk_rows``-row frames when given), its errors as one
    line naming the file and what to set."""
    import pandas as pd

    if dialect != Dialect():
        log.info("%s: read as %s (set data.sep, data.decimal, data.encoding to change that)", path, dialect.describe())
    try:
        frame = pd.read_csv(
            path,
            na_values=na_values,
            sep=dialect.sep,
            decimal=dialect.decimal,
            encoding=dialect.encoding,
            skipinitialspace=dialect.skipinitialspace,
            chunksize=chunk_rows,
        )
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty: a CSV file needs a header line and rows") from None
    except UnicodeDecodeError as e:
        raise _not_text(path, dialect, e) from None
    except pd.errors.ParserError as e:
        raise _unreadable(path, dialect, e) from None
    check_column_names(path, dialect)
    return frame


def _not_text(path: str | Path, dialect: Dialect, e: UnicodeDecodeError) -> UserError:
    return UserError(
        f"{path} is not {dialect.encoding} text (byte 0x{e.object[e.start]:02x} at position {e.start}): set "
        "data.encoding to the file's encoding, e.g. cp1252 or latin-1"
    )


def _unreadable(path: str | Path, dialect: Dialect, e: Exception) -> UserError:
    return UserError(
        f"{path} is not a readable CSV file ({dialect.describe()}): {str(e).strip()}; if the separator is wrong, set "
        "data.sep"
    )


def table_batches(
    path: str | Path,
    na_values: list[str],
    rows: int,
    sep: str | None = None,
    decimal: str | None = None,
    encoding: str | None = None,
    blanks: Counter | None = None,
) -> Iterator[Any]:
    """A table file as DataFrames of at most ``rows`` rows, read one after another (the file is never whole in
    memory), each indexed by its rows' places in the file (0-based data rows) and read as :func:`read_table` reads
    the whole: a CSV file through pandas' reader of chunks, Parquet and Feather through pyarrow's batch readers.
    Cells of only spaces become missing values, counted in ``blanks`` by column."""
    import pandas as pd

    if Path(path).suffix.lower() in TYPED:
        start = 0
        for batch in typed_batches(path, rows):
            frame = batch.to_pandas()
            frame.index = pd.RangeIndex(start, start + len(frame))
            frame.columns = [str(c) for c in frame.columns]
            frame.attrs["typed"] = True
            start += len(frame)
            yield frame
        return
    dialect = dialect_of(path, sep, decimal, encoding)
    chunks = _read_csv(path, na_values, dialect, chunk_rows=rows)
    with chunks:
        while True:
            try:
                frame = next(chunks)
            except StopIteration:
                return
            except UnicodeDecodeError as e:
                raise _not_text(path, dialect, e) from None
            except pd.errors.ParserError as e:
                raise _unreadable(path, dialect, e) from None
            yield blanks_as_missing(frame, path, blanks)


def typed_batches(path: str | Path, rows: int) -> Iterator[Any]:
    """The record batches of a Parquet file (``rows`` each) or a Feather / Arrow IPC file (as written), read one at a
    time by pyarrow; a column of lists or records is refused, exact decimals become floats (as :func:`read_typed`)."""
    import pyarrow as pa
    from pyarrow import ipc, parquet

    kind = TYPED[Path(path).suffix.lower()]
    try:
        if kind == "Parquet":
            source = parquet.ParquetFile(path)
            schema, batches = source.schema_arrow, source.iter_batches(batch_size=rows)
        else:
            reader = ipc.open_file(pa.memory_map(str(path)))
            schema = reader.schema
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
    except Exception as e:  # pyarrow's errors have no common base: ArrowInvalid, OSError, ...
        raise UserError(f"{path} is not a readable {kind} file: {str(e).strip().splitlines()[0]}") from None
    for column in schema:
        if pa.types.is_nested(column.type):
            raise UserError(
                f"{path}: column {column.name!r} holds {column.type} values (lists or records), not one "
                "number or category per row: flatten it into columns, or leave it out of the file"
            )
    decimals = [i for i, column in enumerate(schema) if pa.types.is_decimal(column.type)]
    for batch in batches:
        for i in decimals:
            batch = batch.set_column(i, schema.field(i).name, batch.column(i).cast(pa.float64()))
        yield batch


def blanks_as_missing(frame: Any, path: str | Path, tally: Counter | None = None) -> Any:
    """Cells of only spaces are missing values (pandas reads ``" "`` as text, which made a numeric column with a
    few blank cells, as in IBM's telco churn table, a column of text); a warning names each column and count (with
    ``tally``: counted there instead, for a file read in parts)."""
    import pandas as pd

    counts = {}
    for name in frame.columns:
        column = frame[name]
        if not (pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)):
            continue
        blank = column.map(lambda v: isinstance(v, str) and not v.strip()).astype(bool)
        if blank.any():
            counts[name] = int(blank.sum())
            frame[name] = column.mask(blank)
    if tally is not None:
        tally.update(counts)
    elif counts:
        say_blanks(path, counts)
    return frame


def say_blanks(path: str | Path, counts: dict[str, int]) -> None:
    """The warning of :func:`blanks_as_missing`."""
    if counts:
        listed = ", ".join(f"{name} ({n:,})" for name, n in counts.items())
        log.warning("%s: read %d cell(s) of only spaces as missing values: %s", path, sum(counts.values()), listed)


def say_what_is_missing(frame: Any, path: str | Path, na_values: list[str]) -> None:
    """One line with the number of cells read as missing per column (empty, "NA", "?" and the other markers)."""
    counts = frame.isna().sum()
    counts = counts[counts > 0]
    if len(counts):
        markers = ", ".join(repr(m) for m in ["", "NA", *na_values])
        shown = ", ".join(f"{name} ({int(n):,})" for name, n in list(counts.items())[:10])
        more = f" and {len(counts) - 10} more column(s)" if len(counts) > 10 else ""
        log.info("%s: %d cell(s) read as missing (%s, ...): %s%s", path, int(counts.sum()), markers, shown, more)


def check_column_names(path: str | Path, dialect: Dialect) -> None:
    """Refuse a header that names a column twice (pandas would silently call the second ``name.1``)."""
    with open(path, encoding=dialect.encoding, errors="replace", newline="") as f:
        header = next(csv.reader(io.StringIO(f.readline()), delimiter=dialect.sep), [])
    seen: dict[str, list[int]] = {}
    for number, name in enumerate(header, start=1):
        seen.setdefault(name.strip(), []).append(number)
    twice = {name: at for name, at in seen.items() if len(at) > 1}
    if twice:
        name, at = next(iter(twice.items()))
        more = f" (and {len(twice) - 1} more name(s))" if len(twice) > 1 else ""
        raise UserError(
            f"{path}: the header names column {name!r} {len(at)} times (columns "
            f"{', '.join(map(str, at))}){more}: rename them so that each name is unique"
        )
