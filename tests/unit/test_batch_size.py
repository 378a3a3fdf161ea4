"""A table's default batch size follows its training rows (about 150 steps an epoch, a power of two in [32, 1024])."""

from __future__ import annotations

import pytest

from lit_nets.core.data.tabular import batch_size_for
from lit_nets.data import CSVDataModule


@pytest.mark.parametrize(
    ("rows", "batch"), [(1, 32), (120, 32), (4_000, 32), (9_000, 64), (35_000, 256), (10**6, 1024)]
)
def test_the_batch_size_of_a_table(rows: int, batch: int) -> None:
    assert batch_size_for(rows) == batch


def test_a_null_batch_size_is_chosen_from_the_training_rows_and_a_given_one_is_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    auto = CSVDataModule(path="data/wine.csv", target="cultivar", sample="wine", batch_size=None)
    auto.setup("fit")
    assert auto.batch_size == 32 and len(auto.splits.train[0]) < 150
    given = CSVDataModule(path="data/wine.csv", target="cultivar", sample="wine", batch_size=16)
    given.setup("fit")
    assert given.batch_size == 16
