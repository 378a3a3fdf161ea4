"""Table files (CSV, Parquet, Feather) as an in-memory data module (pandas to tensors, once).

The columns are encoded by a :class:`~lit_nets.core.data.schema.TabularSchema` fitted on the training split. The
schema goes into the model's hyper-parameters (through the CLI link ``data.schema -> model.schema``), and
validating, testing or predicting with ``--ckpt_path`` hands it back (the data module's ``trained`` values), so new
files need only the checkpoint.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import torch

from lit_nets.core.data.base import TensorDataModule
from lit_nets.core.data.column_values import closest_column, is_row_id
from lit_nets.core.data.samples import (
    CSV_SAMPLES,
    is_default_place,
    is_shipped_sample,
    mark_as_sample,
    write_csv_sample,
)
from lit_nets.core.data.schema import Encoding, TabularSchema, class_order, label_flags, named, value_strata
from lit_nets.core.data.splits import Splits, hold_out
from lit_nets.core.data.tables import read_table
from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)
MIN_BATCH, MAX_BATCH, STEPS = 32, 1024, 150  # the default batch size: about STEPS steps an epoch, within these
Sample = Literal["breast_cancer", "wine", "autompg", "insteval", "diamonds", "diamond_labels"]


class CSVDataModule(TensorDataModule):
    """Rows of table files (read with pandas), held in memory as float tensors. Every path takes a CSV file, or a
    Parquet (.parquet, .pq) or Feather (.feather, .arrow) file, read with pyarrow with the column types it holds.

    Args:
        path: table file with the feature columns and the target column; split into train/val/test
            (stratified, seeded) unless val_path / test_path are given.
        target: name of the target column; its values (ints, strings, ...) become the classes. Several names,
            ``[a, b, c]``: several labels at once (multi-label), each column two-valued (0/1, yes/no, true/false).
        task: ``classes`` (the target's values are classes) or ``value`` (a number to predict, regression: the
            model gives it in the target's units; configs/regression.yaml); several target columns are labels.
        features: feature columns (default: every column but the target and those excluded; a column of whole
            numbers rising by one from row to row is an id and left out with a line).
        exclude: columns to leave out (ids, leaks), when features is not given.
        id_column: a column that names each row (PassengerId): left out of the features, and the ``id`` of each row
            in the predictions file, under its own name (default: the row's number in the file).
        categorical: columns to one-hot encode even though they hold numbers (codes, ids of groups).
        val_path: a separate validation file (then no validation rows are taken from path).
        test_path: a separate test file (then no test rows are taken from path).
        predict_path: file to predict on; the target column may be absent (default: the test split).
        val_fraction: share of path's rows held out for validation.
        test_fraction: share of path's rows held out for testing.
        categorical_encoding: how text and categorical columns reach the model: onehot (an input per
            category), embedding (an index the model looks up in a learned table of embedding vectors, as fastai
            and pytorch_tabular do), or auto: one-hot up to onehot_max categories, an embedding above.
        numeric_scaling: how numbers reach the model: standard (standardised by the training mean and std) or
            quantile (the normal score of each value's rank among the training values, as the tabular literature
            preprocesses them: heavy tails and outliers spread like the rest; configs/adult.yaml).
        onehot_max: most categories a column may have for auto to one-hot encode it.
        max_categories: most different values a text column may have; a column with a different value on most of
            its rows (an id, free text) is an error whatever this says.
        na_values: extra strings that mean "missing" (pandas already knows "", "NA", "NaN", "null", ...).
        relabel: target values that name a class another way, in any file: ``{"<=50K.": "<=50K", ">50K.": ">50K"}``
            (UCI's adult.test ends its labels in a full stop; configs/adult.yaml).
        sep: the column separator; default: detected (",", ";", tab or "|"), and logged when not ",".
        decimal: the decimal mark of numbers; default: detected ("," in ";"-separated files written with decimal
            commas, else ".").
        encoding: the files' text encoding; default: UTF-8 (a byte-order mark is honoured), or Windows-1252 with a
            warning for a file that is not UTF-8.
        sample: when path does not exist and is named ``<sample>.csv``, write this real data set that ships
            in an installed package there first: breast_cancer, wine, autompg, insteval, diamonds or diamond_labels
            (the configs' offline default).
    """

    needs_validation = True  # val_fraction 0 without a val_path is refused (FrameDataModule may train on every row)

    def __init__(
        self,
        path: str | None = None,
        target: str | list[str] = "target",
        task: Literal["classes", "value"] = "classes",
        features: list[str] | None = None,
        exclude: list[str] = [],  # noqa: B006 (jsonargparse shows list defaults; never mutated)
        id_column: str | None = None,
        categorical: list[str] = [],  # noqa: B006
        val_path: str | None = None,
        test_path: str | None = None,
        predict_path: str | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        categorical_encoding: Encoding = "auto",
        numeric_scaling: Literal["standard", "quantile"] = "standard",
        onehot_max: int = 10,
        max_categories: int = 10_000,
        na_values: list[str] = ["?"],  # noqa: B006
        relabel: dict[str, str] = {},  # noqa: B006
        sep: str | None = None,
        decimal: str | None = None,
        encoding: str | None = None,
        sample: Sample | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= value < 1.0:
                raise UserError(f"data.{name} must be in [0, 1), got {value}")
        if val_fraction == 0 and not val_path and self.needs_validation:
            raise UserError("data.val_fraction must be above 0 unless data.val_path gives validation rows")
        if val_fraction + test_fraction >= 1.0:
            raise UserError("data.val_fraction + data.test_fraction must leave rows for training")
        self.path, self.target, self.task_kind = path, target, task
        self.targets = [target] if isinstance(target, str) else list(target)
        if not isinstance(target, str):  # several columns: several labels at once
            if task == "value" or not self.targets or len(set(self.targets)) != len(self.targets):
                raise UserError(
                    f"data.target {target}: several labels are two or more different two-valued columns, with "
                    "data.task classes (a value is one column)"
                )
            self.task_kind = "labels"
        if task == "value" and self.class_weighting is not None:
            raise UserError("data.class_weights is for classes; a value target (data.task value) has none")
        self.features, self.exclude, self.categorical = features, list(exclude), list(categorical)
        self.id_column = id_column
        if id_column and id_column not in self.exclude:
            self.exclude.append(id_column)
        self.val_path, self.test_path, self.predict_path = val_path, test_path, predict_path
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        if onehot_max < 1:
            raise UserError(f"data.onehot_max must be at least 1, got {onehot_max}")
        self.categorical_encoding, self.onehot_max = categorical_encoding, onehot_max
        self.numeric_scaling = numeric_scaling
        self.max_categories, self.na_values, self.relabel = max_categories, list(na_values), dict(relabel)
        self.dialect = {"sep": sep, "decimal": decimal, "encoding": encoding}
        self.sample = sample
        self._schema: TabularSchema | None = None
        self._frames: dict[str, Any] | None = None

    # -- reading ------------------------------------------------------------------------------------------
    def _read(self, path: str, what: str):
        file = Path(path)
        if not file.exists() and self.sample and is_default_place(file, self.sample, ".csv"):
            write_csv_sample(self.sample, file)
            mark_as_sample(file)
            log.warning("wrote the shipped sample to %s: %s", file, CSV_SAMPLES[self.sample])
        if not file.is_file():
            kind = "CSV " if file.suffix.lower() == ".csv" else ""
            where = (
                f" (the shipped {self.sample} sample is written only at data/{self.sample}.csv)" if self.sample else ""
            )
            raise UserError(f"{what} {kind}file {path} does not exist{where}")
        frame = read_table(file, self.na_values, **self.dialect)
        if frame.empty:
            raise UserError(f"{path} has a header but no rows")
        return frame

    def _labelled(self, path: str, what: str):
        frame = self._read(path, what)
        for target in self.targets:
            if target not in frame.columns:
                raise UserError(
                    f"{path}: no target column '{target}'{closest_column(target, list(frame.columns))}; the "
                    f"columns are {named(list(frame.columns))} (set data.target)"
                )
        missing = frame[self.targets].isna().any(axis=1)
        if missing.all():
            raise UserError(
                f"{path}: the target column '{self.target}' has no values (all {len(frame):,} rows are "
                "empty or missing markers): fill it in, or set data.target to the column to predict"
            )
        if missing.any():
            log.warning("%s: dropped %d row(s) whose target '%s' is missing", path, int(missing.sum()), self.target)
            frame = frame[~missing]
        if self.relabel:
            frame = frame.assign(**{t: frame[t].replace(self.relabel) for t in self.targets})
        return frame

    def frames(self) -> dict[str, Any]:
        """The labelled DataFrames: train, val and test (each split off path unless given as its own file)."""
        if self._frames is not None:
            return self._frames
        if self.path is None:
            raise UserError("data.path is not set: give the CSV file to train on")
        main = self._labelled(self.path, "training")
        if self.task_kind == "value":
            classes, y = [self.target], value_strata(main[self.target], self.target, self.path)
        elif self.task_kind == "labels":  # plain k-fold: no stratification of label sets (said by cv)
            classes, y = self.targets, torch.zeros(len(main), dtype=torch.long)
            label_flags(main[self.targets], self.path)  # a column that is not two-valued: one line, before splitting
        else:
            classes = self._schema.classes if self._schema else class_order(main[self.target])
            y = self._class_indices(main, classes)
        rest = torch.arange(len(main))
        frames: dict[str, Any] = {}
        splits = 1 + (not self.val_path) + (not self.test_path and self.test_fraction > 0)
        names = [f"the {i + 1}. tenth of the values" for i in range(10)] if self.task_kind == "value" else classes
        if self.test_path:
            frames["test"] = self._labelled(self.test_path, "test")
        elif self.test_fraction > 0:
            keep, held = hold_out(
                y, self.test_fraction, self.seed, split="test", apart="data.test_path", **self._about(splits)
            )
            frames["test"], rest = main.iloc[held.numpy()], keep
        if self.val_path:
            self.validation_apart()
            frames["val"] = self._labelled(self.val_path, "validation")
        elif self.val_fraction == 0:  # a module that may train without validating (FrameDataModule)
            frames["val"] = main.iloc[:0]
        else:
            fraction = self.val_fraction / (1.0 - (0.0 if self.test_path else self.test_fraction))
            keep, held = self.validation_split(
                y[rest], fraction, self.seed + 1, apart="data.val_path", names=names, **self._about(splits)
            )
            frames["val"], rest = main.iloc[rest[held].numpy()], rest[keep]
        frames["train"] = main.iloc[rest.numpy()]
        frames["whole"] = main
        frames["classes"] = classes
        self._frames = frames
        return frames

    def _class_indices(self, main: Any, classes: list[str]) -> torch.Tensor:
        if len(classes) < 2:
            raise UserError(
                f"{self.path}: target '{self.target}' has a single class ({classes[0]!r}); a classifier needs two"
            )
        if len(classes) > len(main) / 2:
            raise UserError(
                f"{self.path}: target '{self.target}' has {len(classes):,} different values in {len(main):,} rows, so "
                "most classes have a single row: a classifier needs several rows per class to learn and to be "
                "validated. If the target is a measurement, bin it into classes first; if it is an id, set "
                "data.target to another column"
            )
        return torch.as_tensor(TabularSchema(self.target, classes, []).encode_target(main[self.target], self.path))

    def _about(self, splits: int) -> dict[str, Any]:
        """What :func:`hold_out` says about this data when a split cannot be made."""
        return {"source": self.path, "unit": "rows", "needed": splits}

    # -- the schema ---------------------------------------------------------------------------------------
    @property
    def fitted_schema(self) -> TabularSchema:
        if self._schema is None:
            if self.trained:  # validate, test, predict with --ckpt_path: the checkpoint's encoding
                self._schema = trained_schema(self.trained)
                log.info("data: column encoding and classes from the checkpoint")
            else:
                frames = self.frames()
                train = frames["train"]
                absent = [f for f in [*(self.features or []), *self.exclude, *self.categorical] if f not in train]
                if absent:
                    raise UserError(
                        f"{self.path}: no column {absent[0]!r}{closest_column(absent[0], list(train.columns))}; the "
                        f"columns are {named(list(train.columns))}"
                    )
                features = self.features or self._default_features(frames["whole"])
                if set(self.targets) & set(features):
                    raise UserError(f"data.features lists the target column '{self.target}'")
                self._schema = TabularSchema.fit(
                    train,
                    self.targets if self.task_kind == "labels" else self.target,
                    frames["classes"],
                    features,
                    self.categorical,
                    self.max_categories,
                    self.path,
                    whole=frames["whole"],
                    encoding=self.categorical_encoding,
                    onehot_max=self.onehot_max,
                    target_kind=self.task_kind,
                    scaling=self.numeric_scaling,
                )
                self._schema.missing_markers = list(self.na_values)  # a served model's requests use them too
        return self._schema

    def _default_features(self, whole: Any) -> list[str]:
        """Every column but the target, the excluded ones and row ids (said in a line)."""
        candidates = [c for c in whole.columns if c not in self.targets and c not in self.exclude]
        ids = [c for c in candidates if c not in self.categorical and is_row_id(whole[c])]
        if ids:
            log.warning(
                "%s: left out %s: whole numbers rising by one from row to row (an id: where a row sits in the file, "
                "not what it is); data.features lists the columns to use",
                self.path,
                named(ids),
            )
        return [c for c in candidates if c not in ids]

    @property
    def id_name(self) -> str:
        """The name of the predictions file's first column: the id column's, else ``id``."""
        return self.id_column or "id"

    @property
    def schema(self) -> dict[str, Any]:
        return self.fitted_schema.to_dict()

    @property
    def class_names(self) -> list[str]:
        return list(self.fitted_schema.classes)

    @property
    def multi_label(self) -> bool:
        """Several labels at once (a list of target columns)."""
        return self.task_kind == "labels"

    @property
    def class_weights(self) -> list[float] | None:
        """Several labels: each label's negatives per positive in the training split (BCE's positive weight, so a
        rare label counts as much as a common one); else as the base class says."""
        if not self.multi_label:
            return super().class_weights
        if self.trained and self.trained.get("class_weights"):
            return list(self.trained["class_weights"])
        y = self._need("train")[1].double()
        positives = y.sum(0)
        return [round(float((len(y) - p) / p), 6) if p else 1.0 for p in positives]

    @property
    def value_target(self) -> dict[str, Any] | None:
        """A value target (``data.task value``): its name, the training split's mean and std to standardise it with,
        and its lowest and highest value (predictions stay within them); None for classes
        (:mod:`lit_nets.core.models.tasks`)."""
        if self.fitted_schema.target_kind != "value":
            return None
        if self.trained and self.trained.get("value_target"):
            return dict(self.trained["value_target"])
        y = self._need("train")[1].double()
        stats = {"mean": y.mean(), "std": y.std(), "low": y.min(), "high": y.max()}
        return {"name": self.target, **{k: float(v) for k, v in stats.items()}}

    @property
    def input_shape(self) -> list[int]:
        return [self.fitted_schema.input_size]

    @property
    def mean(self) -> list[float]:
        return self.fitted_schema.normalization()[0]

    @property
    def std(self) -> list[float]:
        return self.fitted_schema.normalization()[1]

    def train_class_counts(self) -> list[int]:
        return list(self.fitted_schema.class_counts)

    # -- predicting a file: streamed -------------------------------------------------------------------------
    def predict_dataloader(self) -> Any:
        """``predict`` on ``predict_path``: the file read a part at a time (:class:`~lit_nets.core.data.streamed.
        StreamedRows`), so memory does not grow with its rows; else the test split."""
        if not self.predict_path:
            return super().predict_dataloader()
        from torch.utils.data import DataLoader

        from lit_nets.core.data.streamed import StreamedRows

        read = {"na_values": self.na_values, **self.dialect}
        batch = MAX_BATCH if self.auto_batch else self.batch_size  # no gradient: the largest batch
        self.stream = StreamedRows(self.predict_path, self.fitted_schema, batch, read, self.id_column)
        return DataLoader(self.stream, batch_size=None, num_workers=0)

    @property
    def predict_ids(self) -> Any:
        """The predicted rows' names: a streamed file's id column values as they are read (none: the rows'
        places, which the batches carry)."""
        stream = getattr(self, "stream", None)
        if stream is not None:
            return stream.ids if self.id_column else None
        return super().predict_ids

    # -- tensors ------------------------------------------------------------------------------------------
    def _tensors(self, frame: Any, file: str) -> tuple[torch.Tensor, torch.Tensor]:
        schema = self.fitted_schema
        x = torch.from_numpy(schema.encode(frame, file))
        return x, torch.from_numpy(schema.encode_target(frame[self.target], file))

    def load(self) -> Splits:
        schema = self.fitted_schema
        split = {"train": None, "val": None, "test": None}
        if not (self.stage == "predict" and self.predict_path):  # predicting on a file needs no training data
            frames = self.frames()
            files = {
                "train": self.path,
                "val": self.val_path or self.path,
                "test": self.test_path or self.path,
            }
            split = {k: self._tensors(frames[k], files[k]) if k in frames else None for k in split}
        n_inputs, n_columns = schema.input_size, len(schema.features)
        embedded = ", ".join(
            f"{c['name']} ({len(c['categories']) - 2:,} categories -> {c['size']})" for c in schema.embedded
        )
        embedded = f"; embedded: {embedded}" if embedded else ""
        source = f"{self.path} (target '{self.target}', {n_inputs} inputs from {n_columns} columns{embedded})"
        if self.sample and self.path and is_shipped_sample(self.path):
            about = CSV_SAMPLES[self.sample]
            if f"target '{self.target}'" not in about:  # a column of the sample other than its usual target
                about = about.split(", target ")[0]
            source += f"; the shipped sample: {about}"
        val_ids = None
        if split["val"] is not None and not self.val_path:
            val_ids = [int(i) for i in self.frames()["val"].index]  # 0-based data rows of path, as predict_ids
        test_ids = None
        if split["test"] is not None:  # 0-based data rows of the test file, or of path for a split-off test split
            test_ids = [int(i) for i in self.frames()["test"].index]
        if self.auto_batch and split["train"] is None:  # predicting a file: no gradient, the largest batch
            self.batch_size = MAX_BATCH
        elif self.auto_batch:
            self.batch_size = batch_size_for(len(split["train"][0]))
            log.info(
                "data: batch size %d for %s training rows (data.batch_size to choose)",
                self.batch_size,
                f"{len(split['train'][0]):,}",
            )
        return Splits(
            **split,
            class_names=schema.classes,
            source=source,
            val_ids=val_ids,
            test_ids=test_ids,
        )


def trained_schema(trained: dict[str, Any]) -> TabularSchema:
    """The :class:`TabularSchema` of a checkpoint's data values."""
    schema = trained.get("schema")
    if not schema or "numeric" not in schema:
        raise UserError("--ckpt_path: the checkpoint holds no CSV schema (was it trained on a CSV data module?)")
    return TabularSchema.from_dict(schema)


def batch_size_for(rows: int) -> int:
    """The batch size of a table of ``rows`` training rows when ``data.batch_size`` is null: rows / STEPS rounded to
    a power of two, within [MIN_BATCH, MAX_BATCH] (32 for wine's 120 rows, 256 for 35,000): a large table's epoch
    takes fewer, larger steps, and a small table keeps enough steps to learn from."""
    return int(min(MAX_BATCH, max(MIN_BATCH, 2 ** round(math.log2(max(1, rows) / STEPS)))))
