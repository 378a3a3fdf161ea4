"""Which network an :class:`~lit_nets.core.models.classifier.MLPClassifier` builds for its data: a plain MLP,
one with entity embeddings for columns of many categories, or the tabular recipe's ensemble."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from lit_nets.core.data.schema import TabularSchema, read_schema
from lit_nets.core.errors import UserError
from lit_nets.core.models.ensemble import TabularEnsemble
from lit_nets.core.models.nets import MLP, TabularMLP


def mlp_for(
    schema: dict[str, Any] | None,
    input_shape: Sequence[int],
    num_outputs: int,
    mlp: dict[str, Any],
    ensemble: dict[str, Any],
) -> nn.Module:
    """The network for this data: ``mlp`` holds the MLP's arguments (hidden, dropout, activation, batch_norm, init),
    ``ensemble`` the recipe's (ensemble, numeric_embedding, numeric_embedding_size, frequency_scale)."""
    table = read_schema(schema)
    try:
        if ensemble["numeric_embedding"] != "none" or ensemble["ensemble"] != 1:
            return _ensemble(table, num_outputs, mlp, ensemble)
        if isinstance(table, TabularSchema) and table.embedded:  # columns of many categories: entity embeddings
            return TabularMLP(table.dense_size, table.embeddings, num_outputs, **mlp)
        return MLP(in_features=math.prod(input_shape), num_outputs=num_outputs, **mlp)
    except ValueError as e:
        raise UserError(f"model: {e}") from e


def _ensemble(table: Any, num_outputs: int, mlp: dict[str, Any], ensemble: dict[str, Any]) -> nn.Module:
    if not isinstance(table, TabularSchema):
        raise UserError("model.numeric_embedding and model.ensemble are for tables (CSV data); use ensemble: 1")
    if mlp["batch_norm"]:
        raise UserError("model.batch_norm is not for an ensemble (TabM has none); set it false")
    return TabularEnsemble(
        numeric=len(table.numeric),
        dense_features=table.dense_size,
        onehot=[len(c["categories"]) for c in table.onehot],
        embeddings=table.embeddings,
        num_outputs=num_outputs,
        hidden=mlp["hidden"],
        dropout=mlp["dropout"],
        activation=mlp["activation"],
        **ensemble,
    )
