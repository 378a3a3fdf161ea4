"""Predicting a table file in constant memory: its rows read a part at a time (:func:`lit_nets.core.data.tables.
table_batches`), encoded by the trained schema and handed out as batches, while the prediction writer appends its
rows to the output; memory holds a part of the file and the writer's pending rows, whatever the file's length."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset

from lit_nets.core.data.schema import TabularSchema
from lit_nets.core.data.tables import say_blanks, table_batches

PART_ROWS = 65_536  # rows read from the file at a time


class StreamedRows(IterableDataset):
    """Batches ``(x, y, index)`` of a table file's rows, read a part at a time: ``x`` encoded by ``schema``, ``y`` the
    target where every row of the batch has one (else -1, NaN for a value), ``index`` the rows' places in the file.
    The rows' ids (a ``data.id_column``'s values) wait in :attr:`ids` until the prediction writer takes them.

    Args:
        path: the table file (CSV, Parquet, Feather).
        schema: the trained encoding.
        batch_size: rows per batch.
        read: what :func:`~lit_nets.core.data.tables.table_batches` needs besides the path and sizes (na_values, sep,
            decimal, encoding).
        id_column: the column that names each row, if any.
    """

    def __init__(
        self, path: str, schema: TabularSchema, batch_size: int, read: dict[str, Any], id_column: str | None = None
    ) -> None:
        self.path, self.schema, self.batch_size, self.read, self.id_column = path, schema, batch_size, read, id_column
        self.ids = TakenIds()
        self.rows = 0

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        from lit_nets.core.data.column_values import closest_column
        from lit_nets.core.data.schema import named
        from lit_nets.core.errors import UserError

        targets = [self.schema.target] if isinstance(self.schema.target, str) else list(self.schema.target)
        value = self.schema.target_kind == "value"
        tally: dict[str, Counter] = {}
        blanks: Counter = Counter()
        self.rows, batches = 0, -1
        rank, world = _process()
        for frame in table_batches(self.path, rows=PART_ROWS, blanks=blanks, **self.read):
            if self.id_column and self.id_column not in frame.columns:
                raise UserError(
                    f"{self.path}: no data.id_column '{self.id_column}'"
                    f"{closest_column(self.id_column, list(frame.columns))}; the columns are "
                    f"{named(list(frame.columns))}"
                )
            x = torch.from_numpy(self.schema.encode(frame, self.path, tally))
            index = torch.as_tensor(frame.index.to_numpy(), dtype=torch.long)
            labelled = set(targets) <= set(frame.columns) and bool(frame[targets].notna().all().all())
            if labelled:
                y = torch.from_numpy(self.schema.encode_target(frame[self.schema.target], self.path))
            else:
                y = torch.full((len(x),), float("nan") if value else -1, dtype=None if value else torch.long)
            if self.id_column:
                self.ids.update(zip(index.tolist(), frame[self.id_column].tolist(), strict=True))
            self.rows += len(x)
            for start in range(0, len(x), self.batch_size):
                batches += 1
                if batches % world == rank:  # several processes (DDP): each predicts every world-th batch
                    part = slice(start, start + self.batch_size)
                    yield x[part], y[part], index[part]
        say_blanks(self.path, dict(blanks))
        self.schema.say_tally(self.path, tally)


def _process() -> tuple[int, int]:
    """This process's rank and the number of processes predicting (1 without torch.distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class TakenIds(dict):
    """Row ids by their place in the file, each forgotten once read (the prediction writer reads each once), so the
    ids held are those of the rows read but not yet written."""

    def __getitem__(self, index: int) -> Any:
        return self.pop(index)
