"""Plain ``nn.Module`` networks: no Lightning, no data, no files.

Everything here can be built, trained, saved and exported with PyTorch alone.
Shapes always come from the caller (the data), never from constants in this file.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
INITS = ("default", "kaiming", "xavier")


def make_activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (one of ``ACTIVATIONS``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def init_weights(module: nn.Module, scheme: str, activation: str = "relu") -> None:
    """Initialise every conv and linear layer of ``module`` in place.

    Args:
        module: the network to initialise.
        scheme: ``default`` (PyTorch's own), ``kaiming`` (He normal, for ReLU-like activations)
            or ``xavier`` (Glorot uniform).
        activation: the activation that follows the layers, for the kaiming gain.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    if scheme == "default":
        return
    nonlinearity = "leaky_relu" if activation == "leaky_relu" else "relu"
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Pixels(nn.Module):
    """The input scaling of a model without statistics: ``uint8`` pixels to [0, 1] (the torchvision convention: the
    dtype says the range), anything else as it is."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div(255.0) if x.dtype == torch.uint8 else x


class Standardize(nn.Module):
    """Input normalisation, kept inside the model so an exported model takes raw inputs.

    ``uint8`` inputs are pixels and are scaled to [0, 1] first (the torchvision convention:
    the dtype says the range). Then ``(x - mean) / std`` per channel (dim 1).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} values but std has {len(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {list(std)}")
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


class CNN(nn.Module):
    """A small convolutional classifier; the default is the seed architecture.

    ``conv3x3(32) → act → pool → conv3x3(64) → act → pool → fc(128) → act → fc(classes)``.
    Each conv block is ``conv{i}`` [``bn{i}``] ``act{i}`` ``pool{i}`` inside ``features`` (with two convs a
    block, ``conv{i}`` [``bn{i}``] ``act{i}`` ``conv{i}b`` [``bn{i}b``] ``act{i}b`` ``pool{i}``, as VGG stacks them)
    and the head is
    ``flatten drop1 fc1 act_fc1 drop2 fc2`` inside ``classifier`` (so the seed's ``model.conv1.weight`` is
    ``net.features.conv1.weight`` here).

    Args:
        in_channels: channels of the input images (1 grey, 3 RGB).
        num_outputs: size of the last layer (classes, or 1 for a binary BCE head).
        image_size: (height, width) of the input images.
        channels: output channels of each conv block; one block per entry.
        hidden: width of the fully connected hidden layer (0 for none).
        kernel_size: conv kernel size (odd; padding keeps the spatial size).
        batch_norm: BatchNorm after each conv.
        dropout: dropout probability before each fully connected layer.
        activation: relu, leaky_relu, elu, gelu or silu.
        init: weight initialisation: default, kaiming or xavier.
        freeze: conv blocks (1-based) whose weights and BatchNorm statistics stay fixed.
        convs_per_block: convolutions before each pooling (1 or 2): a second one sees a wider field at the same size.
    """

    head = "classifier.fc2"  # the output layer: re-initialised when transferring to other classes

    def __init__(
        self,
        in_channels: int = 1,
        num_outputs: int = 10,
        image_size: Sequence[int] = (28, 28),
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        kernel_size: int = 3,
        batch_norm: bool = False,
        dropout: float = 0.0,
        activation: str = "relu",
        init: str = "default",
        freeze: Sequence[int] = (),
        convs_per_block: int = 1,
    ) -> None:
        super().__init__()
        if convs_per_block not in (1, 2):
            raise ValueError(f"convs_per_block must be 1 or 2, got {convs_per_block}")
        if not channels:
            raise ValueError("channels must list at least one conv block, e.g. [32, 64]")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so padding keeps the size, got {kernel_size}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        bad = [b for b in freeze if not 1 <= b <= len(channels)]
        if bad:
            raise ValueError(f"freeze lists blocks {bad}, but the blocks are numbered 1..{len(channels)}")
        height, width = (int(s) for s in image_size)
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = in_channels
        for i, c_out in enumerate(channels, start=1):
            for name in [f"{i}", f"{i}b"][:convs_per_block]:
                conv = nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not batch_norm)
                layers[f"conv{name}"] = conv
                if batch_norm:
                    layers[f"bn{name}"] = nn.BatchNorm2d(c_out)
                layers[f"act{name}"] = make_activation(activation)
                c_in = c_out
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            height, width = height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(
                f"images of {tuple(image_size)} are too small for {len(channels)} pooling blocks; "
                "use fewer channels entries or larger images"
            )
        self.features = nn.Sequential(layers)
        flat = c_in * height * width  # computed from the data's shape, never hard-coded
        head: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        if hidden > 0:
            head["drop1"] = nn.Dropout(dropout)
            head["fc1"] = nn.Linear(flat, hidden)
            head["act_fc1"] = make_activation(activation)
            flat = hidden
        head["drop2"] = nn.Dropout(dropout)
        head["fc2"] = nn.Linear(flat, num_outputs)
        self.classifier = nn.Sequential(head)
        init_weights(self, init, activation)
        self.frozen_blocks = tuple(sorted(set(freeze)))
        for block in self.frozen_blocks:
            for module in self.block_modules(block):
                module.requires_grad_(False)
        # Lightning never calls .train() at fit start (it keeps, and restores, each module's own mode), so the
        # frozen BatchNorm layers must be in eval mode from the start, not only after a .train() call.
        self.train()

    @property
    def cam_layer(self) -> str:
        """Where Grad-CAM looks by default: the last conv block's activation (the deepest spatial map)."""
        return "features." + [name for name, _ in self.features.named_children() if name.startswith("act")][-1]

    def block_modules(self, block: int) -> list[nn.Module]:
        """The conv (and BatchNorm) modules of conv block ``block`` (1-based)."""
        names = (f"conv{block}", f"bn{block}", f"conv{block}b", f"bn{block}b")
        return [m for name, m in self.features.named_children() if name in names]

    def train(self, mode: bool = True) -> CNN:
        super().train(mode)
        # Frozen blocks keep their BatchNorm running statistics too.
        for block in self.frozen_blocks:
            for module in self.block_modules(block):
                module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """A multilayer perceptron for feature vectors (or flattened images).

    ``[fc → [bn] → act → dropout] × len(hidden) → fc(outputs)``; layers are ``fc1, bn1, act1, drop1, ...``
    inside ``layers`` and the last one is ``out``.

    Args:
        in_features: size of one input vector (images are flattened first).
        num_outputs: size of the last layer (classes, or 1 for a binary BCE head).
        hidden: width of each hidden layer; one layer per entry (empty for logistic regression).
        dropout: dropout probability after each hidden layer.
        activation: relu, leaky_relu, elu, gelu or silu.
        batch_norm: BatchNorm after each hidden linear layer.
        init: weight initialisation: default, kaiming or xavier.
    """

    head = "out"  # the output layer

    def __init__(
        self,
        in_features: int,
        num_outputs: int,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.0,
        activation: str = "relu",
        batch_norm: bool = False,
        init: str = "default",
    ) -> None:
        super().__init__()
        if in_features < 1:
            raise ValueError(f"in_features must be positive, got {in_features}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = in_features
        for i, h in enumerate(hidden, start=1):
            layers[f"fc{i}"] = nn.Linear(width, h, bias=not batch_norm)
            if batch_norm:
                layers[f"bn{i}"] = nn.BatchNorm1d(h)
            layers[f"act{i}"] = make_activation(activation)
            layers[f"drop{i}"] = nn.Dropout(dropout)
            width = h
        self.layers = nn.Sequential(layers)
        self.out = nn.Linear(width, num_outputs)
        init_weights(self, init, activation)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The input of the hidden layers (here the input itself; :class:`TabularMLP` adds embeddings)."""
        return x

    def baseline(self, z: torch.Tensor) -> torch.Tensor:
        """The embedding of "no information" for attributions: zero (numbers at their mean, no category)."""
        return torch.zeros_like(z)

    def from_embedding(self, z: torch.Tensor) -> torch.Tensor:
        """The logits from :meth:`embed`'s output."""
        return self.out(self.layers(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.layers(x))


def entity_tables(embeddings: Sequence[tuple[int, int]]) -> nn.ModuleList:
    """A learned table of vectors per embedded column, (vocabulary, size) each. Index 0 is the category not seen in
    training and index 1 a missing value: both start at zero (no information until training says otherwise); the
    rest small, at fastai's scale."""
    tables = nn.ModuleList(nn.Embedding(n, size) for n, size in embeddings)
    with torch.no_grad():
        for table in tables:
            nn.init.normal_(table.weight, std=0.1)
            table.weight[:2] = 0.0
    return tables


def look_up(tables: nn.ModuleList, codes: torch.Tensor) -> list[torch.Tensor]:
    """Each column's vector for its codes (a float column of indices per table); an index outside a table (a
    malformed request) reads as index 0, the unseen category."""
    codes = codes.long()
    vectors = []
    for i, table in enumerate(tables):
        code = codes[:, i]
        inside = (code >= 0) & (code < table.num_embeddings)
        vectors.append(table(torch.where(inside, code, torch.zeros_like(code))))
    return vectors


class TabularMLP(MLP):
    """An :class:`MLP` for table rows whose last inputs are category indices, each looked up in a learned table of
    vectors (entity embeddings, as fastai and pytorch_tabular use for columns of many values).

    The input is one float vector per row: ``dense_features`` numbers (standardised values, one-hot categories),
    then one category index per embedded column. The vectors are concatenated to the numbers and fed to the MLP;
    ``embed`` gives that concatenation (what feature attributions are computed on). Index 0 of every table is the
    category not seen in training and index 1 a missing value; both start at zero (no information), and an index
    outside a table (a malformed request) reads as index 0.

    Args:
        dense_features: inputs before the indices.
        embeddings: (vocabulary, size) of each embedded column's table, in input order.
        num_outputs: size of the last layer (classes, or 1 for a binary BCE head).
        **kwargs: the :class:`MLP` arguments (hidden, dropout, activation, batch_norm, init).
    """

    def __init__(
        self, dense_features: int, embeddings: Sequence[tuple[int, int]], num_outputs: int, **kwargs: object
    ) -> None:
        if not embeddings:
            raise ValueError("TabularMLP needs at least one embedded column; use MLP without")
        super().__init__(dense_features + sum(size for _, size in embeddings), num_outputs, **kwargs)  # type: ignore[arg-type]
        self.dense_features = dense_features
        self.embeddings = entity_tables(embeddings)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP's input: the dense inputs, then each embedded column's vector."""
        return torch.cat([x[:, : self.dense_features], *look_up(self.embeddings, x[:, self.dense_features :])], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.layers(self.embed(x)))
