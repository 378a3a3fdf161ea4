"""The recipe's network for tables (``configs/tabular_best.yaml``): periodic embeddings of the numbers, then TabM's
efficient ensemble, and how an ensemble's members are averaged. A plain ``nn.Module``, as those of
:mod:`lit_nets.core.models.nets` (whose embedding tables it shares)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lit_nets.core.models.dropout import use_cpu_dropout
from lit_nets.core.models.nets import entity_tables, look_up

TABM_ACTIVATIONS = {"relu": "ReLU", "leaky_relu": "LeakyReLU", "elu": "ELU", "gelu": "GELU", "silu": "SiLU"}


class TabularEnsemble(nn.Module):
    """The literature's MLP for tables: periodic embeddings of the numbers, then TabM's efficient ensemble.

    - Numbers: each standardised number ``x`` becomes ``ReLU(Linear([cos(2π c x), sin(2π c x)]))`` with trainable
      frequencies ``c`` and a linear layer of its own ("PLR" embeddings: Gorishniy, Rubachev, Babenko, "On
      Embeddings for Numerical Features in Tabular Deep Learning", NeurIPS 2022; their package
      ``rtdl_num_embeddings``). An MLP sees a number through one weight per unit; the embedding lets it see
      thresholds and bumps, which is what trees see and plain MLPs miss.
    - Categories: one-hot inputs as they come, embedded columns through a learned table (as :class:`TabularMLP`).
    - Then ``k`` MLPs that share their weights and differ by a scaling of each layer's input (BatchEnsemble), each
      with an output layer of its own, trained together on every batch: TabM (Gorishniy, Kotelnikov, Babenko,
      "TabM: Advancing Tabular Deep Learning with Parameter-Efficient Ensembling", ICLR 2025; their package
      ``tabm``). In training the output is every member's logits, ``(batch, k, outputs)``, and the loss is their
      mean; in eval mode it is the logits of the members' mean probability, ``(batch, outputs)``, so predicting,
      exporting and serving see one classifier.

    The input is the schema's vector: ``numeric`` standardised numbers, the rest of ``dense_features`` (one-hot
    categories), then one index per embedded column.

    Args:
        numeric: numbers at the start of the input.
        dense_features: inputs before the indices (numbers and one-hot categories).
        onehot: the number of one-hot inputs of each one-hot column, in input order.
        embeddings: (vocabulary, size) of each embedded column's table, in input order.
        num_outputs: outputs of each member (classes, or 1 for a binary BCE head).
        hidden: the widths of the shared blocks (TabM's blocks all have one width).
        dropout: dropout after each block.
        activation: relu, leaky_relu, elu, gelu or silu.
        ensemble: ``k``, the members (1: one MLP, with the embeddings).
        numeric_embedding: ``periodic`` (PLR) or ``none`` (the numbers as they are).
        numeric_embedding_size: the size of each number's embedding.
        frequencies: periodic frequencies per number (the paper's ``k``).
        frequency_scale: the standard deviation of the initial frequencies (the paper's ``sigma``), the embedding's
            most important setting: larger sees finer detail in a number and overfits sooner.
    """

    head = "output"  # the members' output layers

    def __init__(
        self,
        numeric: int,
        dense_features: int,
        onehot: Sequence[int],
        embeddings: Sequence[tuple[int, int]],
        num_outputs: int,
        hidden: Sequence[int] = (256, 256),
        dropout: float = 0.1,
        activation: str = "relu",
        ensemble: int = 16,
        numeric_embedding: str = "periodic",
        numeric_embedding_size: int = 16,
        frequencies: int = 48,
        frequency_scale: float = 0.1,
    ) -> None:
        import tabm
        from rtdl_num_embeddings import PeriodicEmbeddings

        super().__init__()
        if not hidden or len(set(hidden)) != 1:
            raise ValueError(f"an ensemble's blocks share one width: hidden like [256, 256], got {list(hidden)}")
        if ensemble < 1:
            raise ValueError(f"ensemble must be at least 1, got {ensemble}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if numeric_embedding not in ("periodic", "none"):
            raise ValueError(f"numeric_embedding must be periodic or none, got {numeric_embedding!r}")
        if activation not in TABM_ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(TABM_ACTIVATIONS)}")
        if frequency_scale <= 0:
            raise ValueError(f"frequency_scale must be positive, got {frequency_scale}")
        self.numeric, self.dense_features, self.k = numeric, dense_features, ensemble
        self.periodic = (
            PeriodicEmbeddings(
                numeric,
                numeric_embedding_size,
                n_frequencies=frequencies,
                frequency_init_scale=frequency_scale,
                lite=False,
            )
            if numeric and numeric_embedding == "periodic"
            else None
        )
        self.numeric_width = numeric_embedding_size if self.periodic is not None else 1
        self.embeddings = entity_tables(embeddings)
        # TabM's first scaling is drawn once per feature (its "chunks"): a number's embedding, a one-hot column's
        # inputs, an embedded column's vector.
        chunks = [self.numeric_width] * numeric + list(onehot) + [size for _, size in embeddings]
        self.ensemble_view = tabm.EnsembleView(k=ensemble)
        self.backbone = tabm.make_tabm_backbone(
            d_in=sum(chunks),
            n_blocks=len(hidden),
            d_block=int(hidden[0]),
            dropout=dropout,
            activation=TABM_ACTIVATIONS[activation],
            k=ensemble,
            arch_type="tabm",
            start_scaling_init="normal" if self.periodic is not None else "random-signs",
            start_scaling_init_chunks=chunks,
        )
        use_cpu_dropout(self.backbone)  # tabm's nn.Dropout layers: their masks were a fifth of a CPU epoch
        self.output = tabm.LinearEnsemble(int(hidden[0]), num_outputs, k=ensemble)
        # how the members are averaged in eval mode (ensemble_logits): "" for classes, "sigmoid" for several labels,
        # "value" for a number; the classifier sets it for its task
        self.averages = ""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The members' shared input: each number's embedding, the one-hot inputs, each embedded column's vector."""
        n, dense = self.numeric, self.dense_features
        numbers = x[:, :n]
        parts = [self.periodic(numbers).flatten(1) if self.periodic is not None else numbers, x[:, n:dense]]
        return torch.cat([*parts, *look_up(self.embeddings, x[:, dense:])], dim=1)

    def baseline(self, z: torch.Tensor) -> torch.Tensor:
        """The embedding of "no information" for attributions: every number at its training mean (0 standardised),
        no one-hot category, a zero vector for an embedded column."""
        zero = torch.zeros(1, self.dense_features + len(self.embeddings), device=z.device, dtype=z.dtype)
        base = self.embed(zero)
        base[:, self.numeric * self.numeric_width :] = 0.0
        return base.expand_as(z)

    def from_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """The members' logits in training, ``(batch, k, outputs)``; the ensemble's in eval mode."""
        logits = self.output(self.backbone(self.ensemble_view(z)))
        return logits if self.training else ensemble_logits(logits, self.averages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_embedding(self.embed(x))


def ensemble_logits(members: torch.Tensor, averages: str = "") -> torch.Tensor:
    """``(batch, k, outputs)`` members to ``(batch, outputs)``, as ``averages`` says:

    - ``""`` (classes): the logits of the members' mean probability: a sigmoid's for one output (a binary head),
      else a softmax's, whose mean probability is ``exp`` of these;
    - ``"sigmoid"`` (several labels): each output's sigmoid, averaged, back to a logit;
    - ``"value"`` (regression): the members' mean output.
    """
    members = members.float()
    if averages == "value":
        return members.mean(dim=1)
    if members.shape[2] == 1 or averages == "sigmoid":  # log(mean p) - log(mean (1 - p)): steady near 0 or 1
        return torch.logsumexp(F.logsigmoid(members), dim=1) - torch.logsumexp(F.logsigmoid(-members), dim=1)
    return torch.logsumexp(members.log_softmax(dim=2), dim=1) - math.log(members.shape[1])
