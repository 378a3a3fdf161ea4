"""Images with several labels each (multi-label): a folder of images and a CSV manifest, ``file,labels``, the labels
of an image separated by spaces (the common layout of multi-label image sets; an image with no label has an empty
``labels``). Decoding, checking, caching, statistics and streaming are the class-folder module's."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch

from lit_nets.core.data.folder import ImageFolderDataModule
from lit_nets.core.data.image_io import predict_images
from lit_nets.core.data.samples import MANIFEST, PNG_SAMPLES, is_shipped_sample
from lit_nets.core.data.splits import Splits, hold_out
from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)


class ImageLabelsDataModule(ImageFolderDataModule):
    """Images with several labels each: ``root`` holds the images (in any sub-folders), ``manifest`` names them and
    their labels; the model gets a 0/1 per label (``multi_label``). Validation and test are held out at random
    (plain, not stratified: label sets are too many to stratify by).

    Args:
        manifest: the CSV file with the columns ``file`` (a path under root) and ``labels`` (space-separated);
            default: ``root/manifest.csv``.
        sample: as for class folders: ``mnist_pairs`` (two real MNIST digits side by side, labelled with both).
        **kwargs: the :class:`ImageFolderDataModule` arguments (root, image_size, val_fraction, ...).
    """

    def __init__(
        self, manifest: str | None = None, sample: Literal["mnist_pairs"] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(sample=sample, **kwargs)  # type: ignore[arg-type]
        self.manifest = manifest

    @property
    def multi_label(self) -> bool:
        return True

    @property
    def class_weights(self) -> list[float] | None:
        """Each label's negatives per positive in the training split (BCE's positive weight)."""
        if self.trained and self.trained.get("class_weights"):
            return list(self.trained["class_weights"])
        y = self._need("train")[1].double()
        return [round(float((len(y) - p) / p), 6) if p else 1.0 for p in y.sum(0)]

    def _read_manifest(self, root: Path, classes: list[str] | None) -> tuple[list[Path], list[list[int]], list[str]]:
        import pandas as pd

        file = Path(self.manifest) if self.manifest else root / MANIFEST
        if not file.is_file():
            raise UserError(f"data.manifest {file}: no such file (a CSV of file,labels; default: root/{MANIFEST})")
        table = pd.read_csv(file, dtype=str, keep_default_na=False)
        missing = [c for c in ("file", "labels") if c not in table.columns]
        if missing:
            raise UserError(
                f"{file}: no column {missing[0]!r}; a manifest has the columns file and labels (space-separated), "
                f"it has {', '.join(table.columns)}"
            )
        if table.empty:
            raise UserError(f"{file} has a header but no rows")
        sets = [label.split() for label in table["labels"]]
        names = classes or sorted({name for found in sets for name in found}, key=_natural)
        if len(names) < 2 and classes is None:
            raise UserError(f"{file}: {len(names)} label(s) in all; several labels need two or more names")
        index = {name: i for i, name in enumerate(names)}
        files, flags = [], []
        for line, (path, found) in enumerate(zip(table["file"], sets, strict=True), start=2):
            unknown = [name for name in found if name not in index]
            if unknown:
                raise UserError(f"{file}, line {line}: label {unknown[0]!r} is not among the training labels")
            image = root / path
            if not image.is_file():
                self._bad(f"{file}, line {line}: {image} does not exist")
                continue
            files.append(image)
            row = [0] * len(names)
            for name in found:
                row[index[name]] = 1
            flags.append(row)
        if not files:
            raise UserError(f"{file} names no image that exists under {root}")
        return files, flags, names

    def load(self) -> Splits:
        restored = self.restored
        parts: dict[str, tuple[list[Path], list]] = {}
        classes = list(restored["classes"]) if restored else None
        if not (self.stage == "predict" and self.predict_root and restored):
            root = self._root()
            files, flags, classes = self._read_manifest(root, classes)
            needed = 2 + (self.test_fraction > 0)
            rest = torch.arange(len(files))
            about = dict(source=str(root), unit="images", needed=needed, apart="a second manifest")
            if self.test_fraction > 0:
                keep, held = hold_out(torch.zeros(len(rest), dtype=torch.long), self.test_fraction, self.seed,
                                      split="test", **about)  # fmt: skip
                parts["test"] = [files[i] for i in held.tolist()], [flags[i] for i in held.tolist()]
                rest = keep
            fraction = self.val_fraction / (1 - self.test_fraction)
            keep, held = self.validation_split(torch.zeros(len(rest), dtype=torch.long), fraction, self.seed, **about)
            parts["val"] = [files[i] for i in rest[held].tolist()], [flags[i] for i in rest[held].tolist()]
            parts["train"] = [files[i] for i in rest[keep].tolist()], [flags[i] for i in rest[keep].tolist()]
        predict_ids = None
        if self.predict_root:
            files, predict_ids = predict_images(self.predict_root)
            parts["predict"] = (files, [-1] * len(files))
        splits = self._decode_all(parts, classes, restored)
        if self.skipped:
            log.warning("skipped %d bad file(s), e.g. %s", len(self.skipped), "; ".join(self.skipped[:3]))
        c, h, w = self._shape
        source = f"{self.root} ({len(classes)} labels, {c}x{h}x{w})"
        if self.sample and self.root and is_shipped_sample(self.root):
            source += f"; the shipped sample: {PNG_SAMPLES[self.sample]}"
        predict = splits.get("predict")
        return Splits(
            train=splits.get("train"),
            val=splits.get("val"),
            test=splits.get("test"),
            class_names=classes,
            predict=predict[:1] if isinstance(predict, tuple) else predict,
            predict_ids=predict_ids,
            source=source,
        )


def _natural(name: str) -> tuple[int, Any]:
    """Numbers in numeric order ("2" before "10"), then names."""
    return (0, int(name)) if name.isdigit() else (1, name)
