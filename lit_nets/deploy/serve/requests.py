"""A request's body into model inputs: an uploaded PNG or JPEG (header first, pixels only when within the limit), or
JSON records of a table (typed, missing markers, limits); a bad one is :class:`Rejected` with its status."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from lit_nets.core.data.image_io import IMAGE_FORMATS
from lit_nets.core.data.schema import TabularSchema
from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)


class Rejected(Exception):
    """A request the service answers with an HTTP error and a JSON ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class Item:
    """One decoded request: its model inputs (one row per record or image), or why it was rejected."""

    x: torch.Tensor | None = None
    many: bool = False  # a JSON list of records: answer with a list
    explain: bool = False
    error: Rejected | None = None
    result: dict[str, Any] = field(default_factory=dict)


def read_image(
    data: bytes, channels: int, size: tuple[int, int], max_pixels: int, crop_pct: float | None = None
) -> torch.Tensor:
    """An uploaded image as uint8 (C, H, W) at the model's size, prepared as its data was (``crop_pct``: see
    :func:`lit_nets.core.data.image_io.decode`). The header is read first (Pillow reads no pixels on open): only PNG and
    JPEG are decoded, and only when they hold at most ``max_pixels`` pixels."""
    from PIL import Image, UnidentifiedImageError

    from lit_nets.core.data.image_io import BadImage, decode

    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as header:
            width, height = header.size
    except Image.DecompressionBombError:  # Pillow's own limit (179 M pixels) is higher than ours: the same answer
        width = height = None
    except (UnidentifiedImageError, OSError):
        raise Rejected(400, "the file is not a PNG or JPEG image") from None
    if width is None:
        raise Rejected(400, f"the image is larger than the limit of {max_pixels:,} pixels")
    if width * height > max_pixels:
        raise Rejected(400, f"the image is {width}x{height} pixels, above the limit of {max_pixels:,}")
    try:
        return decode(data, channels, size, name="the image", crop_pct=crop_pct)
    except BadImage as e:
        raise Rejected(400, str(e)) from None


def wants_attributions(body: Any, table: TabularSchema) -> bool:
    """Whether a tabular request asks for the columns' contributions: ``"explain": 1`` (or true) in its record, or in
    any record of a list (unless the model has a feature called ``explain``)."""
    if "explain" in table.features:
        return False
    records = body if isinstance(body, list) else [body]
    return any(isinstance(r, dict) and str(r.get("explain", "")).lower() in ("1", "true", "yes") for r in records)


def read_records(body: Any, table: TabularSchema) -> torch.Tensor:
    """A JSON record (object) or a list of them as model inputs, encoded as in training. Every record must name
    every feature; a numeric feature takes a finite number (or a numeric string), a categorical one a string or
    a number; ``null``, ``NaN`` and the training file's missing markers (``""``, ``"NA"``, ``"?"``, ...) mean
    missing: the training median, or the category ``(missing)``, as for a CSV file."""
    import numpy as np
    import pandas as pd

    from lit_nets.core.data.schema import FLOAT32_MAX

    records = body if isinstance(body, list) else [body]
    if not records or not all(isinstance(r, dict) for r in records):
        raise Rejected(400, "send a JSON object of feature values, or a non-empty list of them")
    numeric = {c["name"] for c in table.numeric}
    markers = missing_markers(table)
    rows = []
    for i, record in enumerate(records):
        where = f"record {i + 1} of {len(records)}: " if isinstance(body, list) else ""
        absent = [name for name in table.features if name not in record]
        if absent:
            shown = ", ".join(repr(a) for a in absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            raise Rejected(
                400,
                f"{where}missing feature(s) {shown}; send null for a value you do not know "
                f"(GET /info has an example record)",
            )
        row = {}
        for name in table.features:
            value = record[name]
            problem = None
            if value is None or (isinstance(value, str) and value.strip() in markers):
                value = None
            elif isinstance(value, (bool, dict, list)):
                problem = f"{json.dumps(value)} is not a feature value"
            elif name in numeric:
                number = _number(value)
                if number is None:
                    problem = f"{json.dumps(value)} is not a number"
                elif number != number:  # NaN: missing, as null
                    value = None
                elif not abs(number) <= FLOAT32_MAX:
                    problem = f"{json.dumps(value)} is not a finite number the model can take"
                else:
                    value = number
            if problem:
                wanted = "number" if name in numeric else "category as text"
                raise Rejected(400, f"{where}feature {name!r}: {problem}; send a {wanted}, or null if unknown")
            row[name] = value
        rows.append(row)
    # numbers as one float block (NaN where missing), built at once: column by column took seconds for 5,000
    names = [c["name"] for c in table.numeric]
    numbers = np.array([[row[n] for n in names] for row in rows], dtype=np.float64).reshape(len(rows), len(names))
    frame = pd.DataFrame(numbers, columns=names)
    if table.categorical:
        texts = {c["name"]: [row[c["name"]] for row in rows] for c in table.categorical}
        frame = pd.concat([frame, pd.DataFrame(texts)], axis=1)
    try:
        encoded = table.encode(frame, "request")
    except UserError as e:
        raise Rejected(400, str(e)) from None
    return torch.from_numpy(encoded)


def _number(value: Any) -> float | None:
    """A JSON number or numeric string as a float (``inf`` and ``NaN`` included, for the caller to judge)."""
    try:
        if isinstance(value, (int, float, str)):
            return float(value)
    except OverflowError:  # an integer of hundreds of digits: beyond any float, as inf is
        return float("inf")
    except ValueError:
        return None
    return None


def missing_markers(table: Any) -> set[str]:
    """Strings that mean "missing" in a request: those of the training file (pandas' defaults, and the data's
    ``na_values``, which the schema records)."""
    from pandas._libs.parsers import STR_NA_VALUES  # pandas' own default list; there is no public name for it

    return set(STR_NA_VALUES) | set(getattr(table, "missing_markers", ["?"]))


# -- the LitServe API ---------------------------------------------------------------------------------------
