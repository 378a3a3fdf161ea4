"""Tables as they come from outside (issue 30): UCI's census file with ", " and " ?", IBM's telco churn with blank
numbers, Parquet's own types, categories spelled like our reserved entries, sparse category columns, the shipped
samples written only where the configs keep them, and prediction ids that join back to the file. Each table is a
real one that ships in a package (wine, breast cancer), written the way those files are written."""

from __future__ import annotations

import logging
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from lit_nets.core.data.samples import write_csv_sample
from lit_nets.core.errors import UserError
from lit_nets.data import CSVDataModule


@pytest.fixture(scope="module")
def wine(tmp_path_factory) -> pd.DataFrame:
    return pd.read_csv(write_csv_sample("wine", tmp_path_factory.mktemp("wine") / "wine.csv"))


def setup(path: Path, **kwargs) -> CSVDataModule:
    dm = CSVDataModule(path=str(path), **{"target": "cultivar", **kwargs})
    dm.setup("fit")
    return dm


def test_a_census_style_file_strips_the_spaces_and_reads_question_marks_as_missing(wine, tmp_path, caplog) -> None:
    """adult.data writes ``39, State-gov, 77516, ...`` and `` ?`` for missing: before, the header kept its spaces
    (the target had to be typed ``" cultivar"``) and `` ?`` became a category of its own."""
    caplog.set_level(logging.INFO)
    rng = np.random.default_rng(0)
    table = wine.astype(object)
    table["colour"] = rng.choice(["red", "white", "rose"], len(table)).astype(object)
    table.loc[rng.choice(len(table), 9, replace=False), "colour"] = "?"
    table.loc[rng.choice(len(table), 5, replace=False), "ash"] = "?"
    path = tmp_path / "adult.csv"
    lines = [", ".join(table.columns)] + [", ".join(str(v) for v in row) for row in table.itertuples(index=False)]
    path.write_text("\n".join(lines) + "\n")
    dm = setup(path)  # the target as the header names it, without its leading space
    (colour,) = dm.fitted_schema.categorical
    assert colour["categories"] == ["red", "rose", "white", "(missing)"], colour  # no " ?" nor " red"
    assert "ash" in [c["name"] for c in dm.fitted_schema.numeric]  # a number column with " ?" cells
    assert dm.class_names == ["class_0", "class_1", "class_2"]
    assert "(a space after each, stripped)" in caplog.text
    assert "14 cell(s) read as missing" in caplog.text and "ash (5), colour (9)" in caplog.text


def test_a_test_file_spelling_its_labels_another_way_is_relabelled(wine, tmp_path) -> None:
    """UCI's adult.test ends every label in a full stop (``<=50K.``): without data.relabel the test file's first such
    row is the one line that names it; with it, the test rows are the training file's classes, row for row."""
    wine = wine.sample(frac=1.0, random_state=0)  # the file is sorted by class
    wine.iloc[:120].to_csv(tmp_path / "train.csv", index=False)
    test = wine.iloc[120:].assign(cultivar=wine["cultivar"].iloc[120:] + ".")
    test.to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(UserError, match=r"test\.csv: column 'cultivar', line 2: label 'class_1\.' is not one of"):
        setup(tmp_path / "train.csv", test_path=str(tmp_path / "test.csv"))
    relabel = {f"class_{k}.": f"class_{k}" for k in range(3)}
    dm = setup(tmp_path / "train.csv", test_path=str(tmp_path / "test.csv"), relabel=relabel)
    truth = [dm.class_names.index(c) for c in wine["cultivar"].iloc[120:]]
    assert dm.splits.test[1].tolist() == truth and len(truth) == len(wine) - 120


def test_blank_cells_in_a_number_column_are_missing_with_a_warning(wine, tmp_path, caplog) -> None:
    table = wine.astype({"magnesium": object})
    table.loc[[5, 50, 100], "magnesium"] = [" ", "", "   "]
    table.to_csv(tmp_path / "telco.csv", index=False)
    dm = setup(tmp_path / "telco.csv")
    assert "magnesium" in [c["name"] for c in dm.fitted_schema.numeric]
    assert "read 2 cell(s) of only spaces as missing values: magnesium (2)" in caplog.text  # "" is missing anyway
    table.loc[7, "magnesium"] = "unknown"  # real text among numbers: the error says how to mark it missing
    table.to_csv(tmp_path / "telco.csv", index=False)
    with pytest.raises(UserError, match=r"line 9 has 'unknown' .*add 'unknown' to data\.na_values"):
        setup(tmp_path / "telco.csv")


@pytest.mark.parametrize("encoding", ["onehot", "embedding"])
def test_categories_spelled_like_the_reserved_entries_stay_apart(wine, tmp_path, encoding: str) -> None:
    table = wine.copy()
    table["tag"] = np.array(["(missing)", "(unseen)", None], dtype=object)[np.arange(len(table)) % 3]
    table.to_csv(tmp_path / "tags.csv", index=False)
    dm = setup(tmp_path / "tags.csv", categorical_encoding=encoding)
    schema = dm.fitted_schema
    x = schema.encode(table.iloc[:6], "tags.csv")
    if encoding == "onehot":  # three distinct inputs: the text "(missing)", the text "(unseen)", a missing value
        codes = x[:, -3:].argmax(1)
        assert (x[:, -3:].sum(1) == 1).all() and codes.tolist() == [0, 1, 2, 0, 1, 2]
    else:  # indices 2 and 3 for the texts, 1 for the missing value, 0 only for a value never seen
        assert x[:, -1].tolist() == [2, 3, 1, 2, 3, 1]
        unseen = schema.encode(table.iloc[:1].assign(tag="never seen"), "new.csv")
        assert unseen[0, -1] == 0


def test_a_sparse_category_column_trains_embedded_and_an_id_is_still_refused(tmp_path) -> None:
    """300 postcodes over breast cancer's 569 rows (210 different in 370 training rows) were refused as an id."""
    table = pd.read_csv(write_csv_sample("breast_cancer", tmp_path / "bc.csv"))
    rng = np.random.default_rng(1)
    table["postcode"] = [f"P{n:04d}" for n in rng.integers(0, 300, len(table))]
    table.to_csv(tmp_path / "postcodes.csv", index=False)
    dm = setup(tmp_path / "postcodes.csv", target="diagnosis")
    (postcode,) = dm.fitted_schema.embedded
    assert postcode["name"] == "postcode" and len(postcode["categories"]) - 2 > 0.5 * len(dm.frames()["train"])
    table["postcode"] = [f"ID{i}" for i in range(len(table))]  # unique per row: an id
    table.to_csv(tmp_path / "ids.csv", index=False)
    with pytest.raises(UserError, match=r"column 'postcode' has 3\d\d different values in 3\d\d training rows .*an id"):
        setup(tmp_path / "ids.csv", target="diagnosis")


def test_parquet_decimals_are_numbers_and_lists_are_one_line(wine, tmp_path) -> None:
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(wine, preserve_index=False)
    prices = pa.array([decimal.Decimal(f"{v:.2f}") for v in wine["proline"]], type=pa.decimal128(10, 2))
    table = table.set_column(table.schema.get_field_index("proline"), "proline", prices)
    pq.write_table(table, tmp_path / "decimal.parquet")
    dm = setup(tmp_path / "decimal.parquet")
    proline = next(c for c in dm.fitted_schema.numeric if c["name"] == "proline")
    assert proline["mean"] == pytest.approx(wine.loc[dm.frames()["train"].index, "proline"].mean())
    listed = table.append_column("readings", pa.array([[1.0, 2.0]] * len(wine)))
    pq.write_table(listed, tmp_path / "lists.parquet")
    with pytest.raises(UserError, match=r"lists\.parquet: column 'readings' holds list<.*: double> values"):
        setup(tmp_path / "lists.parquet")


def test_a_target_without_values_is_one_line(wine, tmp_path) -> None:
    wine.assign(cultivar=None).to_csv(tmp_path / "empty_target.csv", index=False)
    with pytest.raises(UserError, match=r"the target column 'cultivar' has no values \(all 178 rows"):
        setup(tmp_path / "empty_target.csv")


def test_the_sample_is_written_only_where_the_config_keeps_it(tmp_path, monkeypatch, wine) -> None:
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "x" / "new" / "wine.csv"
    with pytest.raises(UserError, match=r"training CSV file .*x/new/wine\.csv does not exist \(the shipped wine"):
        setup(elsewhere, sample="wine")
    assert not elsewhere.exists() and not elsewhere.parent.exists()
    at_home = setup("data/wine.csv", sample="wine")  # the config's own path: written, and said to be the sample
    assert Path("data/wine.csv").is_file() and "the shipped sample" in at_home.splits.source
    mine = tmp_path / "mine" / "wine.csv"  # a user's own file of the same name is theirs
    mine.parent.mkdir()
    wine.iloc[:120].to_csv(mine, index=False)
    assert "shipped sample" not in setup(mine, sample="wine").splits.source
    wine.iloc[:120].to_csv("data/wine.csv", index=False)  # and so is their own file put at the sample's place
    assert "shipped sample" not in setup("data/wine.csv", sample="wine").splits.source


def test_prediction_ids_of_the_test_split_are_the_files_rows(wine, tmp_path) -> None:
    wine.to_csv(tmp_path / "wine.csv", index=False)
    dm = setup(tmp_path / "wine.csv")
    ids = dm.predict_ids
    _, y = dm.splits.test
    assert len(ids) == len(y) == 36 and ids != list(range(36))
    labels = wine.loc[ids, "cultivar"].astype(str).tolist()
    assert labels == [dm.class_names[i] for i in y.tolist()]  # joinable back to the file


def test_a_row_id_is_left_out_with_a_line_and_exclude_leaves_out_any_column(wine, tmp_path, caplog) -> None:
    """A numeric ``ID`` (whole numbers rising by one from row to row) was used as a feature silently (an
    explanation ranked it third); and leaving one column out meant listing all the others."""
    table = wine.copy()
    table.insert(0, "ID", np.arange(1, len(table) + 1))
    table.to_csv(tmp_path / "ids.csv", index=False)
    features = lambda dm: [c["name"] for c in dm.fitted_schema.numeric + dm.fitted_schema.categorical]  # noqa: E731
    dm = setup(tmp_path / "ids.csv")
    assert "ID" not in features(dm) and len(features(dm)) == 13
    assert "left out 'ID': whole numbers rising by one from row to row (an id" in caplog.text
    dm = setup(tmp_path / "ids.csv", exclude=["ash", "hue"])
    assert {"ID", "ash", "hue"}.isdisjoint(features(dm)) and len(features(dm)) == 11
    listed = setup(tmp_path / "ids.csv", features=["ID", "alcohol"])  # named by the user: used
    assert features(listed) == ["ID", "alcohol"]
    with pytest.raises(UserError, match=r"ids.csv: no column 'ahs' \(did you mean 'ash'\?\); the columns are 'ID'"):
        setup(tmp_path / "ids.csv", exclude=["ahs"])
    shuffled = table.sample(frac=1.0, random_state=0)  # ids out of row order: a number like any other
    shuffled.to_csv(tmp_path / "shuffled.csv", index=False)
    assert "ID" in features(setup(tmp_path / "shuffled.csv"))


def test_a_target_named_without_its_trailing_space_gets_the_near_name(wine, tmp_path) -> None:
    """The UCI credit default table's header holds ``default `` with a space: ``--data.target default`` said only
    that there is no such column."""
    wine.rename(columns={"cultivar": "default "}).to_csv(tmp_path / "credit.csv", index=False)
    with pytest.raises(UserError) as refused:
        setup(tmp_path / "credit.csv", target="default")
    assert "no target column 'default' (did you mean 'default ', spaces included: quote it in YAML?)" in str(
        refused.value
    )
    assert setup(tmp_path / "credit.csv", target="default ").class_names == ["class_0", "class_1", "class_2"]


def test_a_text_id_says_how_to_leave_it_out(wine, tmp_path) -> None:
    table = wine.copy()
    table["PassengerId"] = [f"{i:04d}_01" for i in range(len(table))]
    table.to_csv(tmp_path / "titanic.csv", index=False)
    with pytest.raises(UserError, match=r"column 'PassengerId' has \d+ different values .* leave it out with "
                                        r"data.exclude \[PassengerId\]"):  # fmt: skip
        setup(tmp_path / "titanic.csv")
    assert setup(tmp_path / "titanic.csv", exclude=["PassengerId"]).class_names[0] == "class_0"


def test_quantile_scaling_spreads_a_heavy_tailed_column_as_scikit_learn_does(wine, tmp_path) -> None:
    """``data.numeric_scaling: quantile``: a census-like column (0 on 90% of rows, a log-normal tail) reaches the
    model as normal scores; off the ties, scikit-learn's QuantileTransformer gives the same scores; the tie at 0
    gets the middle of its levels (scikit-learn: the lowest score, -5.2); the schema's standardisation is of the
    transformed values, and an encoded file reads back the same."""
    from sklearn.preprocessing import QuantileTransformer

    rng = np.random.default_rng(0)
    table = wine.assign(gain=np.where(rng.random(len(wine)) < 0.9, 0.0, rng.lognormal(8, 1, len(wine))))
    table.to_csv(tmp_path / "census.csv", index=False)
    dm = setup(tmp_path / "census.csv", numeric_scaling="quantile")
    schema = dm.fitted_schema
    gain = next(c for c in schema.numeric if c["name"] == "gain")
    x = schema.encode(table, "census.csv")[:, [c["name"] for c in schema.numeric].index("gain")]
    train = table.loc[dm.frames()["train"].index, "gain"].to_numpy()
    reference = QuantileTransformer(n_quantiles=len(train), output_distribution="normal").fit(train[:, None])
    expected = reference.transform(table[["gain"]].to_numpy())[:, 0]
    inside = (table["gain"] > 0).to_numpy() & (table["gain"] < train.max()).to_numpy()
    assert inside.sum() > 5 and np.allclose(x[inside], expected[inside], atol=1e-4)
    zero_level = (train == 0).mean() / 2  # the middle of the levels the tie spans
    assert np.allclose(x[(table["gain"] == 0).to_numpy()], NormalDist().inv_cdf(zero_level), atol=0.05)
    assert abs(x.mean() - gain["mean"]) < 0.2 and abs(gain["std"] - x.std()) < 0.2
    standard = setup(tmp_path / "census.csv").fitted_schema  # the default: standardised raw values, no knots
    assert "quantiles" not in next(c for c in standard.numeric if c["name"] == "gain")
