"""The quantile transform of a number column (``data.numeric_scaling: quantile``): each value replaced by the normal
score of its rank among the training values, so a heavy-tailed column (a capital gain that is 0 on most rows and
99,999 on a few) reaches the network spread like the others. The tabular literature preprocesses every number so
(Gorishniy et al. 2021, 2022; TabM 2025: scikit-learn's ``QuantileTransformer(output_distribution="normal")``).

Written here rather than taken from scikit-learn because the fitted transform lives in the schema, which the
checkpoint, the exports' sidecar and the service carry as plain data (knots, no pickled estimator), and it is applied
with numpy wherever rows are encoded. It is scikit-learn's transform (the quantiles of the training values at
``KNOTS`` evenly spaced levels, interpolated linearly, ties averaged from both sides, levels clipped to
[1e-7, 1 - 1e-7] before the normal's inverse) but for one choice: scikit-learn sends a value equal to the training
minimum to the lowest score (-5.2), so a column that is 0 on 90% of its rows puts 90% of them there; here such a tie
gets the middle of its levels, as a tie inside the range does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

KNOTS = 256  # quantile levels kept per column (scikit-learn's default is 1,000; 256 changes nothing at our sizes)
CLIP = 1e-7  # the levels' distance from 0 and 1: normal scores within about ±5.2


def fit_quantiles(values: np.ndarray) -> dict[str, Any]:
    """The knots of one column's training ``values`` (no NaN): their quantiles at ``KNOTS`` levels, as lists,
    with the mean and std of the transformed training values (what the model's standardisation then uses)."""
    levels = np.linspace(0.0, 1.0, min(KNOTS, max(2, len(values))))
    knots = np.quantile(values.astype(np.float64), levels)
    entry = {"knots": knots.tolist(), "levels": levels.tolist()}
    scored = transform(values.astype(np.float64), entry)
    return {**entry, "mean": float(scored.mean()), "std": float(scored.std()) or 1.0}


def transform(values: np.ndarray, entry: dict[str, Any]) -> np.ndarray:
    """``values`` (float64, no NaN) as normal scores by the column's fitted knots; outside the training range, the
    end scores."""
    knots, levels = np.asarray(entry["knots"]), np.asarray(entry["levels"])
    # ties (many rows of one value) span several knots: interpolating upwards and downwards and averaging gives
    # such a value the middle of its levels, as scikit-learn's QuantileTransformer does
    up = np.interp(values, knots, levels)
    down = -np.interp(-values, -knots[::-1], -levels[::-1])
    ranks = np.clip(0.5 * (up + down), CLIP, 1.0 - CLIP)
    import torch  # its normal quantile function (ndtri), vectorised; imported where it is used, as the schema is

    return torch.special.ndtri(torch.from_numpy(ranks)).numpy()


def apply(numbers: np.ndarray, numeric: list[dict[str, Any]]) -> np.ndarray:
    """Every column of ``numbers`` (rows x numeric columns, missing values already filled) whose schema entry has
    knots, transformed in place; the others unchanged."""
    for i, column in enumerate(numeric):
        if "quantiles" in column:
            numbers[:, i] = transform(numbers[:, i], column["quantiles"])
    return numbers
