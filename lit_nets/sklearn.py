"""lit_nets as scikit-learn estimators: :class:`TabularClassifier`, :class:`TabularRegressor` and
:class:`ImageClassifier`, for ``Pipeline``, ``cross_val_score``, ``GridSearchCV``, ``clone`` and ``joblib``.

    from lit_nets.sklearn import TabularClassifier

    clf = TabularClassifier(hidden=(64, 32), max_epochs=100).fit(X_train, y_train)   # a DataFrame or an array
    clf.predict(X_test), clf.predict_proba(X_test), clf.score(X_test, y_test)

They train the models the commands train (``MLPClassifier``, ``CNNClassifier``) on the data modules' encoding
(text categories, missing values, a value target in its own units; :mod:`lit_nets.core.data.in_memory`), with the
commands' threads and device rules (:mod:`lit_nets.train.in_memory`), and write no file. Early stopping holds out
``validation_fraction`` of the rows (stratified) and keeps the epoch of the lowest validation loss, as
``HistGradientBoostingClassifier`` does: ``early_stopping="auto"`` turns it on from 1,000 rows (images: 1,000
images). Bad input is a ``ValueError`` with the commands' one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

__all__ = ["ImageClassifier", "TabularClassifier", "TabularRegressor"]
# how X is checked: any dtype (a DataFrame's text columns), NaN allowed (imputed), sparse rows made dense
CHECKS = {"dtype": None, "ensure_all_finite": "allow-nan", "accept_sparse": "csr"}
AUTO_EARLY_STOPPING = 1000  # rows (images) from which early_stopping="auto" holds out validation rows


class _Door(BaseEstimator):
    """What the three estimators share: seeding, early stopping's choice, training, outputs."""

    def _early(self, n: int) -> bool:
        if self.early_stopping not in (True, False, "auto"):
            raise ValueError(f"early_stopping must be True, False or 'auto', got {self.early_stopping!r}")
        return n >= AUTO_EARLY_STOPPING if self.early_stopping == "auto" else bool(self.early_stopping)

    def _seed(self) -> int:
        return int(check_random_state(self.random_state).randint(0, 2**31 - 1))

    def _train(self, build: Any, data: Any, early: bool, seed: int) -> None:
        from lit_nets.train import in_memory

        self.model_, self.history_ = in_memory.fit(
            build,
            data,
            max_epochs=self.max_epochs,
            patience=self.n_iter_no_change if early else None,
            progress=bool(self.verbose),
            seed=seed,
            accelerator=self.accelerator,
        )

    def _outputs(self, x: Any) -> Any:
        """The deployed model's outputs (logits divided by the temperature; a value in its units) for inputs ``x``."""
        import torch

        from lit_nets.core.models.deployable import Deployable

        deployed = Deployable.of(self.model_)
        with torch.inference_mode():
            return torch.cat([deployed(part).float() for part in torch.split(x, 4096)]) if len(x) else deployed(x)

    def _probabilities(self, x: Any) -> Any:
        import torch

        from lit_nets.core.models.deployable import probabilities

        with torch.inference_mode():
            return probabilities(self._outputs(x))

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False  # seeded by random_state
        return tags


def _value_error(call: Any) -> Any:
    """Run ``call``; a :class:`lit_nets.core.errors.UserError` (bad input) becomes the ``ValueError`` scikit-learn's
    callers expect, with the same one line."""
    from lit_nets.core.errors import UserError

    try:
        return call()
    except UserError as e:
        raise ValueError(str(e)) from None


def _two_samples(n: int) -> None:
    if n < 2:
        raise ValueError(f"n_samples={n}: a network needs at least 2 samples to train on")


class _Tabular(_Door):
    """Rows: a pandas DataFrame (text categories, missing values) or a numeric array."""

    _task = "classes"

    def __init__(
        self,
        hidden: tuple[int, ...] = (64, 32),
        dropout: float = 0.1,
        activation: str = "relu",
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        batch_size: int | None = None,
        max_epochs: int = 200,
        early_stopping: bool | str = "auto",
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 20,
        categorical_encoding: str = "auto",
        model_args: dict[str, Any] | None = None,
        random_state: int | None = None,
        verbose: int = 1,
        accelerator: str = "auto",
    ) -> None:
        self.hidden, self.dropout, self.activation = hidden, dropout, activation
        self.lr, self.weight_decay, self.batch_size, self.max_epochs = lr, weight_decay, batch_size, max_epochs
        self.early_stopping, self.validation_fraction = early_stopping, validation_fraction
        self.n_iter_no_change, self.categorical_encoding = n_iter_no_change, categorical_encoding
        self.model_args, self.random_state = model_args, random_state
        self.verbose, self.accelerator = verbose, accelerator

    def _checked(self, X: Any, y: Any, reset: bool) -> tuple[Any, Any]:
        """``X`` (and ``y``) checked as scikit-learn checks them, ``n_features_in_`` and ``feature_names_in_`` set
        (``reset``) or compared. A DataFrame keeps its columns' types (scikit-learn's array check would cast a
        ``category`` column of text to numbers and fail): only its names and width are checked here, its values by
        the encoding (an infinite number, a text in a number column: one line naming the column)."""
        import pandas as pd
        from sklearn.utils import check_array, check_consistent_length, column_or_1d

        if not isinstance(X, pd.DataFrame):
            if y is None:
                return validate_data(self, X, reset=reset, **CHECKS), None
            return validate_data(self, X, y, y_numeric=self._task == "value", **CHECKS)
        validate_data(self, X, reset=reset, skip_check_array=True)
        if y is not None:
            numeric = self._task == "value"
            y = check_array(y, ensure_2d=False, dtype="numeric" if numeric else None, input_name="y")
            y = column_or_1d(y, warn=True)
            check_consistent_length(X, y)
        return X, y

    def _frame(self, X: Any, checked: Any) -> Any:
        """Rows ``X`` (checked by scikit-learn: ``checked``) as a DataFrame with string column names: a DataFrame
        keeps its columns and types (text categories), an array gets x0, x1, ..."""
        import pandas as pd

        if isinstance(X, pd.DataFrame):
            frame = X.copy()
            frame.columns = [str(c) for c in frame.columns]
            return frame.reset_index(drop=True)
        checked = checked.toarray() if hasattr(checked, "toarray") else np.asarray(checked)
        return pd.DataFrame(checked, columns=[f"x{i}" for i in range(checked.shape[1])]).infer_objects()

    def fit(self, X: Any, y: Any) -> Any:
        """Train on rows ``X`` (a DataFrame or an array ``(n_samples, n_features)``) and targets ``y``."""
        from sklearn.utils.multiclass import check_classification_targets

        if y is None:  # scikit-learn's words
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        checked, y = self._checked(X, y, reset=True)
        frame = self._frame(X, checked)
        _two_samples(len(y))
        if self._task == "value":
            target = np.asarray(y, dtype=np.float64)
        else:
            check_classification_targets(y)
            self.classes_, target = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise ValueError(f"y has a single class ({self.classes_[0]!r}): a classifier needs two or more")
        name = "y" if "y" not in frame.columns else "__target__"
        features = list(frame.columns)
        frame[name] = target
        return _value_error(lambda: self._fit_frame(frame, features, name))

    def _fit_frame(self, frame: Any, features: list[str], target: str) -> Any:
        from lit_nets.core.data.contract import model_values
        from lit_nets.core.data.in_memory import FrameDataModule
        from lit_nets.core.models.classifier import MLPClassifier

        seed, early = self._seed(), self._early(len(frame))
        data = FrameDataModule(
            frame,
            name="X",
            target=target,
            task=self._task,
            features=features,
            val_fraction=self.validation_fraction if early else 0.0,
            categorical_encoding=self.categorical_encoding,
            batch_size=self.batch_size,
            seed=seed,
            na_values=[],
        )

        def build() -> Any:
            return MLPClassifier(
                **model_values(data),
                **{"hidden": list(self.hidden), "dropout": self.dropout, "activation": self.activation},
                **{"lr": self.lr, "weight_decay": self.weight_decay, "loss": "mse" if self._task == "value" else "ce"},
                **(self.model_args or {}),
            )

        self._train(build, data, early, seed)
        self.schema_ = data.fitted_schema
        return self

    def _inputs(self, X: Any) -> Any:
        import torch

        check_is_fitted(self)
        frame = self._frame(X, self._checked(X, None, reset=False)[0])
        return torch.from_numpy(_value_error(lambda: self.schema_.encode(frame, "X")))


class TabularClassifier(ClassifierMixin, _Tabular):
    """An MLP classifier of table rows (lit_nets' ``MLPClassifier``), as a scikit-learn estimator.

    Args:
        hidden: width of each hidden layer.
        dropout: dropout probability after each hidden layer.
        activation: relu, leaky_relu, elu, gelu or silu.
        lr: Adam's learning rate.
        weight_decay: L2 penalty (Adam's weight decay).
        batch_size: rows per step; None: from the rows, about 150 steps an epoch within [32, 1024].
        max_epochs: the most epochs trained.
        early_stopping: hold out ``validation_fraction`` of the rows, stop when their loss has not improved for
            ``n_iter_no_change`` epochs and keep the best epoch; ``auto``: on from 1,000 rows.
        validation_fraction: share of the rows held out (stratified) for early stopping.
        n_iter_no_change: epochs without a better validation loss before training stops.
        categorical_encoding: text columns of a DataFrame: onehot, embedding or auto (one-hot up to 10 categories).
        model_args: further ``MLPClassifier`` arguments (``{"numeric_embedding": "periodic", "ensemble": 8}``: the
            recipe's network; ``{"calibrate": "temperature"}`` needs early stopping's validation rows).
        random_state: seed of the split, the initial weights and the batches' order; None: a new one each fit.
        verbose: 1: one progress bar over the epochs; 0: nothing.
        accelerator: auto (a GPU when present), cpu, gpu, mps.
    """

    def predict_proba(self, X: Any) -> Any:
        """A probability per class of ``classes_``, ``(n_samples, n_classes)``."""
        return self._probabilities(self._inputs(X)).numpy()

    def predict(self, X: Any) -> Any:
        """The class of each row (for two classes, decided at the model's threshold), of ``classes_``."""
        import torch

        probs = torch.from_numpy(self.predict_proba(X))
        return self.classes_[self.model_.decide(probs).numpy()]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = tags.input_tags.sparse = True  # missing values are imputed
        tags.input_tags.string = True  # text categories
        return tags


class TabularRegressor(RegressorMixin, _Tabular):
    """An MLP of table rows predicting a number (lit_nets' ``MLPClassifier`` on a value target: MSE on the
    standardised target, predictions in its units, within the training targets' range). Arguments: those of
    :class:`TabularClassifier`; ``early_stopping`` holds out rows stratified by the target's tenths."""

    _task = "value"

    def predict(self, X: Any) -> Any:
        """The predicted value of each row, in the target's units."""
        return self._outputs(self._inputs(X))[:, 0].numpy().astype(np.float64)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = tags.input_tags.sparse = tags.input_tags.string = True
        return tags


class ImageClassifier(ClassifierMixin, _Door):
    """A CNN classifier of images (lit_nets' ``CNNClassifier``, the seed network), as a scikit-learn estimator.

    ``X``: images ``(n, H, W)`` (grey), ``(n, H, W, C)`` or ``(n, C, H, W)``, or rows of flattened pixels
    ``(n, C*H*W)`` (scikit-learn's digits, OpenML's mnist_784) shaped by ``image_shape`` (default: square grey
    images); uint8, or floats (scaled to 0-255 by the training images' largest value, 1 for [0, 1]).

    Args:
        conv_channels: output channels of each conv block (3x3 conv, ReLU, 2x2 max-pool).
        hidden: width of the hidden fully connected layer.
        dropout: dropout probability before the classifier layer.
        batch_norm: BatchNorm after each convolution.
        augment: none, or affine: a random rotation, shift and zoom per training image (digits).
        lr: Adam's learning rate.
        weight_decay: L2 penalty (Adam's weight decay).
        batch_size: images per step.
        max_epochs: the most epochs trained.
        early_stopping: hold out ``validation_fraction`` of the images, stop when their loss has not improved for
            ``n_iter_no_change`` epochs and keep the best epoch; ``auto``: on from 1,000 images.
        validation_fraction: share of the images held out (stratified) for early stopping.
        n_iter_no_change: epochs without a better validation loss before training stops.
        image_shape: (channels, height, width) of rows of flattened pixels.
        random_state: seed of the split, the initial weights and the batches' order; None: a new one each fit.
        verbose: 1: one progress bar over the epochs; 0: nothing.
        accelerator: auto (a GPU when present), cpu, gpu, mps.
    """

    def __init__(
        self,
        conv_channels: tuple[int, ...] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.0,
        batch_norm: bool = False,
        augment: str = "none",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        max_epochs: int = 20,
        early_stopping: bool | str = "auto",
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        image_shape: tuple[int, int, int] | None = None,
        random_state: int | None = None,
        verbose: int = 1,
        accelerator: str = "auto",
    ) -> None:
        self.conv_channels, self.hidden, self.dropout, self.batch_norm = conv_channels, hidden, dropout, batch_norm
        self.augment, self.lr, self.weight_decay, self.batch_size = augment, lr, weight_decay, batch_size
        self.max_epochs, self.early_stopping, self.validation_fraction = max_epochs, early_stopping, validation_fraction
        self.n_iter_no_change, self.image_shape, self.random_state = n_iter_no_change, image_shape, random_state
        self.verbose, self.accelerator = verbose, accelerator

    def fit(self, X: Any, y: Any) -> Any:
        """Train on images ``X`` and their classes ``y``."""
        from sklearn.utils.multiclass import check_classification_targets

        from lit_nets.core.data.in_memory import image_batch

        X, y = validate_data(self, X, y, allow_nd=True, ensure_all_finite=True, dtype=None)
        check_classification_targets(y)
        self.classes_, target = np.unique(y, return_inverse=True)
        _two_samples(len(y))
        if len(self.classes_) < 2:
            raise ValueError(f"y has a single class ({self.classes_[0]!r}): a classifier needs two or more")
        images, self.pixel_scale_ = _value_error(lambda: image_batch(X, self.image_shape))
        self.image_shape_ = tuple(images.shape[1:])
        self.n_features_in_ = int(np.prod(self.image_shape_))  # pixels per image, however the images were held
        return _value_error(lambda: self._fit_images(images, target))

    def _fit_images(self, images: Any, target: Any) -> Any:
        import torch

        from lit_nets.core.data.contract import model_values
        from lit_nets.core.data.in_memory import ArrayImageDataModule
        from lit_nets.core.models.classifier import CNNClassifier

        seed, early = self._seed(), self._early(len(images))
        data = ArrayImageDataModule(
            images,
            torch.from_numpy(target),
            [str(c) for c in self.classes_],
            val_fraction=self.validation_fraction if early else 0.0,
            augment=self.augment,
            batch_size=self.batch_size,
            seed=seed,
        )

        def build() -> Any:
            return CNNClassifier(
                **model_values(data),
                **{"conv_channels": list(self.conv_channels), "hidden": self.hidden, "dropout": self.dropout},
                **{"batch_norm": self.batch_norm, "lr": self.lr, "weight_decay": self.weight_decay},
            )

        self._train(build, data, early, seed)
        return self

    def _inputs(self, X: Any) -> Any:
        from sklearn.utils import check_array

        from lit_nets.core.data.in_memory import image_batch

        check_is_fitted(self)
        X = check_array(X, allow_nd=True, dtype=None)  # the images' shape is checked below, not X.shape[1]
        images, _ = _value_error(lambda: image_batch(X, self.image_shape, self.pixel_scale_))
        if tuple(images.shape[1:]) != self.image_shape_:
            shape = "x".join(map(str, self.image_shape_))
            raise ValueError(f"X: images of {'x'.join(map(str, images.shape[1:]))}; this model takes {shape}")
        return images

    def predict_proba(self, X: Any) -> Any:
        """A probability per class of ``classes_``, ``(n_samples, n_classes)``."""
        return self._probabilities(self._inputs(X)).numpy()

    def predict(self, X: Any) -> Any:
        """The class of each image (for two classes, decided at the model's threshold), of ``classes_``."""
        import torch

        probs = torch.from_numpy(self.predict_proba(X))
        return self.classes_[self.model_.decide(probs).numpy()]
