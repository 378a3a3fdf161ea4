"""lit_nets.sklearn: the estimators pass scikit-learn's own estimator checks (the exceptions listed with their
reason), and work where scikit-learn users put estimators: cross_val_score beside gradient boosting on a real table,
GridSearchCV, a Pipeline after a ColumnTransformer, clone, pickle and joblib; early stopping keeps the best epoch;
bad input is a ValueError of one line; Ctrl-C reaches the caller."""

from __future__ import annotations

import os
import pickle
import signal
import threading

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_digits, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from lit_nets.core.data.samples import sample_frame
from lit_nets.sklearn import ImageClassifier, TabularClassifier, TabularRegressor

# scikit-learn's checks feed tables of 1 to 5 features: an image classifier takes images (rows of a square number of
# pixels, or image_shape), so the checks that train it on such a table cannot apply; every other check passes
TABLE_CHECKS = [
    "check_fit_score_takes_y",
    "check_estimators_overwrite_params",
    "check_dont_overwrite_parameters",
    "check_estimators_fit_returns_self",
    "check_readonly_memmap_input",
    "check_n_features_in_after_fitting",
    "check_positive_only_tag_during_fit",
    "check_estimators_dtypes",
    "check_dtype_object",
    "check_pipeline_consistency",
    "check_estimators_nan_inf",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_classifier_data_not_an_array",
    "check_classifiers_classes",
    "check_classifiers_train",
    "check_supervised_y_2d",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_fit2d_1feature",
    "check_dict_unchanged",
    "check_fit_idempotent",
    "check_fit_check_is_fitted",
    "check_n_features_in",
    "check_fit2d_predict1d",
]


def expected_failures(estimator: object) -> dict[str, str]:
    if isinstance(estimator, ImageClassifier):
        return {name: "the check trains on a table of 1-5 features, not on images" for name in TABLE_CHECKS}
    return {}


@parametrize_with_checks(
    [
        TabularClassifier(max_epochs=30, verbose=0),
        TabularRegressor(max_epochs=30, verbose=0),
        ImageClassifier(max_epochs=3, verbose=0),
    ],
    expected_failed_checks=expected_failures,
)
def test_scikit_learn_checks(estimator, check) -> None:
    check(estimator)


@pytest.fixture(scope="module")
def cancer():
    """scikit-learn's breast cancer table (569 tumours, 30 measurements), as the shipped sample holds it."""
    table = sample_frame("breast_cancer")
    return table.drop(columns="diagnosis"), table["diagnosis"]


def test_cross_val_score_beside_gradient_boosting_on_a_real_table(cancer) -> None:
    X, y = cancer
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    ours = cross_val_score(TabularClassifier(max_epochs=50, random_state=0, verbose=0), X, y, cv=folds)
    trees = cross_val_score(HistGradientBoostingClassifier(random_state=0), X, y, cv=folds)
    print(f"breast cancer, 5 folds: TabularClassifier {ours.mean():.4f}, HistGradientBoosting {trees.mean():.4f}")
    assert ours.mean() >= trees.mean() - 0.02 and ours.min() > 0.9  # measured 0.9701 and 0.9701


def test_grid_search_over_width_and_epochs_picks_the_trained_one() -> None:
    X, y = load_wine(return_X_y=True)
    grid = {"hidden": [(8,), (64, 32)], "max_epochs": [2, 60]}
    search = GridSearchCV(TabularClassifier(random_state=0, verbose=0), grid, cv=3).fit(X, y)
    scores = dict(zip(map(str, search.cv_results_["params"]), search.cv_results_["mean_test_score"], strict=True))
    print("grid search, 3 folds of wine:", {k: round(float(v), 4) for k, v in scores.items()})
    assert search.best_params_["max_epochs"] == 60, scores  # two epochs of 4 steps leave the net near chance
    assert search.best_score_ > 0.9 and min(scores.values()) < 0.85, scores
    assert search.best_estimator_.max_epochs == 60 and search.best_estimator_.score(X, y) > 0.95


def test_a_pipeline_after_a_column_transformer_on_rows_with_text_and_gaps() -> None:
    cars = sample_frame("autompg")  # text brands, six missing horsepower values
    X, y = cars.drop(columns="origin"), cars["origin"]
    numbers = [c for c in X.columns if c != "brand"]
    prepare = ColumnTransformer(
        [("numbers", StandardScaler(), numbers), ("brand", OneHotEncoder(handle_unknown="ignore"), ["brand"])]
    )
    pipeline = make_pipeline(prepare, TabularClassifier(max_epochs=60, random_state=0, verbose=0))
    train, test = train_test_split(np.arange(len(X)), test_size=0.25, random_state=0, stratify=y)
    pipeline.fit(X.iloc[train], y.iloc[train])
    print(f"pipeline on Auto MPG's origin: {pipeline.score(X.iloc[test], y.iloc[test]):.4f}")
    assert pipeline.score(X.iloc[test], y.iloc[test]) > 0.9  # the brand says the origin; without it ~0.8
    assert set(pipeline.predict(X.iloc[test])) <= {"USA", "Europe", "Japan"}


def test_a_dataframe_with_text_and_missing_values_goes_in_as_it_is() -> None:
    cars = sample_frame("autompg")
    X, y = cars.drop(columns="origin"), cars["origin"]
    clf = TabularClassifier(max_epochs=60, random_state=0, verbose=0).fit(X, y)
    assert list(clf.feature_names_in_) == list(X.columns) and clf.n_features_in_ == 8
    assert list(clf.classes_) == ["Europe", "Japan", "USA"] and clf.score(X, y) > 0.9
    gaps = X[X["horsepower"].isna()]
    assert len(gaps) == 6 and clf.predict_proba(gaps).shape == (6, 3)
    with pytest.raises(ValueError, match="brand"):  # a column missing: scikit-learn's own check names it
        clf.predict(X.drop(columns="brand"))
    # pandas' category dtype for the text (scikit-learn's own array check would cast it to numbers and fail): the
    # same encoding, so the same model
    typed = X.astype({"brand": "category"})
    twin = TabularClassifier(max_epochs=60, random_state=0, verbose=0).fit(typed, y)
    np.testing.assert_allclose(twin.predict_proba(typed), clf.predict_proba(X), atol=1e-6)


def test_regression_in_the_targets_units() -> None:
    cars = sample_frame("autompg").drop(columns=["brand", "origin"])
    X, y = cars.drop(columns="mpg"), cars["mpg"]
    train, test = train_test_split(np.arange(len(X)), test_size=0.25, random_state=0)
    reg = TabularRegressor(max_epochs=100, random_state=0, verbose=0).fit(X.iloc[train], y.iloc[train])
    predicted = reg.predict(X.iloc[test])
    assert reg.score(X.iloc[test], y.iloc[test]) > 0.8
    assert abs(predicted.mean() - y.iloc[test].mean()) < 2  # in mpg: a scale-blind model is ~23 off
    assert predicted.min() >= y.iloc[train].min() and predicted.max() <= y.iloc[train].max()


def test_clone_pickle_and_joblib_give_the_same_predictions(tmp_path, cancer) -> None:
    X, y = cancer
    clf = TabularClassifier(hidden=(16,), max_epochs=20, random_state=3, verbose=0).fit(X, y)
    before = clf.predict_proba(X)
    joblib.dump(clf, tmp_path / "clf.joblib")
    for again in (joblib.load(tmp_path / "clf.joblib"), pickle.loads(pickle.dumps(clf))):
        np.testing.assert_array_equal(again.predict_proba(X), before)
        assert list(again.predict(X)) == list(clf.predict(X))
    twin = clone(clf)
    assert twin.get_params() == clf.get_params() and not hasattr(twin, "model_")
    np.testing.assert_array_equal(twin.fit(X, y).predict_proba(X), before)  # the same seed, the same model


def test_early_stopping_keeps_the_best_validation_epoch(cancer) -> None:
    import torch

    from lit_nets.core.data.in_memory import FrameDataModule

    X, y = cancer
    clf = TabularClassifier(max_epochs=500, early_stopping=True, n_iter_no_change=5, random_state=1, verbose=0)
    clf.fit(X, y)
    done = clf.history_
    assert done["epochs"] < 500 and done["epochs"] == done["best_epoch"] + 5 + 1
    # the held-out rows again (the same seed): the kept weights have the best epoch's validation loss
    frame = X.assign(y=np.unique(y, return_inverse=True)[1])
    seed = int(np.random.RandomState(1).randint(0, 2**31 - 1))
    data = FrameDataModule(frame, name="X", target="y", features=list(X.columns), val_fraction=0.1, seed=seed)
    data.setup("fit")
    x_val, y_val = data.splits.val
    loss = torch.nn.functional.cross_entropy(clf._outputs(x_val), y_val).item()
    assert loss == pytest.approx(done["best_val_loss"], rel=1e-4)


def test_images_as_flattened_rows_as_arrays_and_as_uint8() -> None:
    X, y = load_digits(return_X_y=True)  # 8x8 pixels of 0-16, as rows of 64
    train, test = train_test_split(np.arange(len(X)), test_size=0.25, random_state=0, stratify=y)
    clf = ImageClassifier(max_epochs=10, random_state=0, verbose=0).fit(X[train], y[train])
    assert clf.image_shape_ == (1, 8, 8) and clf.pixel_scale_ == pytest.approx(255 / 16)
    assert clf.score(X[test], y[test]) > 0.95
    images = X[test].reshape(-1, 8, 8)
    np.testing.assert_array_equal(clf.predict_proba(images), clf.predict_proba(X[test]))  # (N, H, W) the same
    with pytest.raises(ValueError, match="this model takes 1x8x8"):
        clf.predict(np.zeros((2, 10, 10)))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict(X[test]), clf.predict(X[test]))


def test_no_output_with_verbose_0_and_one_bar_with_1(capfd) -> None:
    X, y = load_wine(return_X_y=True)
    TabularClassifier(max_epochs=3, verbose=0).fit(X, y)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    TabularClassifier(max_epochs=3, verbose=1).fit(X, y)
    out, err = capfd.readouterr()
    assert out == "" and "Training" in err and "3/3" in err
    assert "GPU available" not in err and "Epoch 0" not in err and "Tip" not in err


def test_bad_input_is_a_value_error_of_one_line() -> None:
    X, y = load_wine(return_X_y=True)
    with pytest.raises(ValueError, match="infinity") as caught:
        TabularClassifier(max_epochs=1, verbose=0).fit(np.where(X[0, 0] == X, np.inf, X), y)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="early_stopping"):
        TabularClassifier(early_stopping="sometimes", verbose=0).fit(X, y)
    with pytest.raises(ValueError, match="image_shape"):
        ImageClassifier(verbose=0).fit(np.zeros((20, 10)), np.arange(20) % 2)


def test_ctrl_c_reaches_the_caller_and_its_handler_comes_back() -> None:
    """Lightning answers Ctrl-C with sys.exit(1) and ignores SIGINT from then on; a notebook must get a
    KeyboardInterrupt and keep its interrupt key."""
    X, y = load_wine(return_X_y=True)
    given = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever the runner set
    clf = TabularClassifier(max_epochs=3000, verbose=0)  # about 30 s: stopped after 1
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            clf.fit(X, y)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and not hasattr(clf, "model_")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, given)


def test_threads_follow_the_commands_rule(monkeypatch) -> None:
    """The estimators size torch's threads as the commands do (here the user's LIT_NETS_THREADS)."""
    import torch

    X, y = load_wine(return_X_y=True)
    before = torch.get_num_threads()
    monkeypatch.setenv("LIT_NETS_THREADS", "1")
    torch.set_num_threads(2)
    try:
        TabularClassifier(max_epochs=1, verbose=0).fit(X, y)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
