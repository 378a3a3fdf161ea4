"""Image files into tensors: the one decoder that the folder data module, ``explain`` and ``serve`` share (PNG and
JPEG only; EXIF orientation applied; grey, colour and alpha modes to the channels asked; resized and centre-cropped
as the model was trained), the image files of a folder, the pixel statistics and the streaming dataset of a
folder's files."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from lit_nets.core.data.statistics import channel_histogram, stats_from_histogram
from lit_nets.core.errors import UserError

EXTENSIONS = {".png", ".jpg", ".jpeg"}
log = logging.getLogger(__name__)
IMAGE_FORMATS = ("PNG", "JPEG")
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
EXIF_ORIENTATION = 0x0112  # the EXIF tag that says how a camera held the photo


def cover_size(size: tuple[int, int], crop_pct: float) -> tuple[int, int]:
    """The size an image is resized to cover before its centre ``size`` is cropped: ``size / crop_pct`` (224 at
    0.875: 256)."""
    return round(size[0] / crop_pct), round(size[1] / crop_pct)


def resize_crop(image: torch.Tensor, size: tuple[int, int], crop_pct: float | None) -> torch.Tensor:
    """``image`` (C, H, W) at ``size``: resized to it (``crop_pct`` None), or resized, keeping its aspect ratio, to
    cover :func:`cover_size`, which is cropped from the centre, and then ``size`` from the centre of that. (The
    two crops make the second one the same pixels as a crop of a data module's stored training image.)"""
    from torchvision.transforms.v2 import functional as TF

    if crop_pct is None:
        return image if tuple(image.shape[1:]) == size else TF.resize(image, list(size), antialias=True)
    cover = cover_size(size, crop_pct)
    h, w = image.shape[1:]
    scale = max(cover[0] / h, cover[1] / w)
    resized = (max(cover[0], round(h * scale)), max(cover[1], round(w * scale)))
    if resized != (h, w):
        image = TF.resize(image, list(resized), antialias=True)
    return TF.center_crop(TF.center_crop(image, list(cover)), list(size))


def decode(
    source: Path | bytes,
    channels: int | None,
    size: tuple[int, int] | None,
    name: str = "",
    crop_pct: float | None = None,
) -> torch.Tensor:
    """One image (a file, or its bytes called ``name``) as uint8 (C, H, W): 16-bit scaled to 8-bit, palette
    expanded, alpha dropped. ``channels`` None keeps 1 channel for grey images (R = G = B) and 3 for colour ones.
    ``size`` and ``crop_pct``: see :func:`resize_crop` (a large JPEG is decoded at a reduced scale that still
    covers the size, which is several times faster).

    The EXIF orientation of a photo is applied (before resizing). Pillow decodes (PNG and JPEG only): it checks
    what it reads and raises on a truncated or malformed file, where torchvision's native decoder crashed the whole
    process on a 68-byte PNG with too little image data (a segfault in libpng's error handling). Resizing is
    torchvision's, antialiased.
    """
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    what = source if isinstance(source, Path) else name or "the image"
    try:
        with Image.open(source if isinstance(source, Path) else io.BytesIO(source), formats=IMAGE_FORMATS) as im:
            if size is not None and crop_pct and im.format == "JPEG":  # at 1/2, 1/4, 1/8 scale where that covers
                need = cover_size(tuple(size), crop_pct)
                im.draft(im.mode, (need[1], need[0]))
            im.load()  # every pixel: a truncated file raises here, not mid-epoch
            if im.getexif().get(EXIF_ORIENTATION, 1) != 1:  # a phone's photo, stored sideways: upright it first
                im = ImageOps.exif_transpose(im)
            if im.mode in GREY_MODES:
                pixels = np.array(im.convert("L") if im.mode in ("1", "LA", "La") else im)[None]
            else:
                pixels = np.array(im.convert("RGB")).transpose(2, 0, 1)  # palette expanded, alpha and CMYK gone
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        reason = "not a PNG or JPEG file" if isinstance(e, UnidentifiedImageError) else str(e).strip()
        raise BadImage(f"{what}: not a readable image ({reason[:120] or type(e).__name__})") from None
    if pixels.dtype != np.uint8:  # 16-bit (or 32-bit) grey: the top 8 bits, 0..65535 onto 0..255, not clipped
        pixels = (np.clip(pixels, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)
    image = torch.from_numpy(np.ascontiguousarray(pixels))
    if channels == 1 and image.shape[0] == 3:
        image = torch.from_numpy(np.array(Image.fromarray(pixels.transpose(1, 2, 0)).convert("L"))[None])
    elif channels == 3 and image.shape[0] == 1:
        image = image.expand(3, -1, -1).contiguous()
    elif (
        channels is None and image.shape[0] == 3 and torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    ):
        image = image[:1].contiguous()
    return image if size is None else resize_crop(image, tuple(size), crop_pct)


def header_size(files: list[Path]) -> tuple[int, int]:
    """The (width, height) of the first of ``files`` whose header reads, without decoding it; (1, 1) if none."""
    from PIL import Image

    for path in files[:10]:
        try:
            with Image.open(path, formats=IMAGE_FORMATS) as im:
                return im.size
        except Exception:  # a bad file is reported when it is decoded
            continue
    return 1, 1


class BadImage(Exception):
    """A file that cannot be decoded."""


class PixelStats:
    """Per-channel pixel value counts of the training images, for the normalisation: exact, without a float copy
    of the data. Grey images count in each colour channel of a data set that turns out to be in colour."""

    BATCH = 1024  # images counted together (one bincount per channel instead of one per image)

    def __init__(self) -> None:
        self.grey = torch.zeros(1, 256, dtype=torch.float64)
        self.colour = torch.zeros(3, 256, dtype=torch.float64)
        self._waiting: list[torch.Tensor] = []

    def add(self, image: torch.Tensor) -> None:
        if self._waiting and self._waiting[0].shape != image.shape:
            self._count()
        self._waiting.append(image)
        if len(self._waiting) >= self.BATCH:
            self._count()

    def _count(self) -> None:
        if self._waiting:
            counts = channel_histogram(torch.stack(self._waiting))
            if self._waiting[0].shape[0] == 1:
                self.grey += counts
            else:
                self.colour += counts
            self._waiting = []

    def mean_std(self, channels: int) -> tuple[list[float], list[float]]:
        self._count()
        return stats_from_histogram(self.grey if channels == 1 else self.colour + self.grey)


class ImageFiles(Dataset):
    """Streaming: decode one image per item (for folders too large to hold in memory), in the loader's workers.

    Each image is decoded as the in-memory path stores it (``size``, covering and centre-cropped with ``cover``),
    then either augmented (``transform``, training) or centre-cropped to ``crop`` (evaluation), so both paths give
    the model the same pixels.
    """

    def __init__(
        self,
        files: list[Path],
        labels: torch.Tensor,
        channels: int,
        size: tuple[int, int],
        cover: bool = False,
        crop: tuple[int, int] | None = None,
        transform: Any = None,
    ) -> None:
        self.files, self.labels, self.channels, self.size = files, labels, channels, size
        self.cover, self.crop, self.transform = cover, crop, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = decode(self.files[i], self.channels, self.size, crop_pct=1.0 if self.cover else None)
        if self.transform is not None:
            image = self.transform(image)
        elif self.crop is not None and tuple(image.shape[1:]) != self.crop:
            image = center_crop(image, self.crop)
        return image, self.labels[i]


def center_crop(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The centre ``size`` of an image (C, H, W) or a batch (N, C, H, W), as torchvision crops it."""
    from torchvision.transforms.v2 import functional as TF

    return TF.center_crop(images, list(size)).contiguous()


def image_files(folder: Path, others: list[str] | None = None) -> list[Path]:
    """The image files under ``folder`` (any depth), sorted; hidden files and folders are ignored, and the paths of
    other files (a GIF, a README) are added to ``others`` when given. One pass of
    ``os.scandir`` (its entries know their type without a ``stat`` per file: 70,000 files in a fraction of a
    second, where ``rglob`` with checks per file took seconds)."""
    found, folders = [], [folder]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    folders.append(entry.path)
                elif entry.is_file() and os.path.splitext(entry.name)[1].lower() in EXTENSIONS:
                    found.append(Path(entry.path))
                elif entry.is_file() and others is not None:
                    others.append(entry.path)
    return sorted(found)


def predict_images(root: str | Path) -> tuple[list[Path], list[str]]:
    """The images of ``data.predict_root`` (a flat or nested folder) and their names relative to it, for the
    predictions file; a missing or empty folder is one line."""
    folder = Path(root)
    if not folder.is_dir():
        raise UserError(f"data.predict_root {folder} is not a folder")
    others: list[str] = []
    files = image_files(folder, others)
    say_what_was_left_out(folder, others)
    if not files:
        raise UserError(f"data.predict_root {folder} holds no images (.png, .jpg, .jpeg)")
    return files, [str(p.relative_to(folder)) for p in files]


def say_what_was_left_out(where: Path, others: list[str]) -> None:
    """One warning with the count of files under ``where`` that are not images by their extension."""
    if others:
        kinds = sorted({os.path.splitext(p)[1].lower() or "(no extension)" for p in others})
        log.warning(
            "%s: left out %d file(s) that are not .png/.jpg/.jpeg (%s), e.g. %s; convert them to PNG to use them",
            where,
            len(others),
            ", ".join(kinds[:5]),
            sorted(others)[0],
        )


def class_folders(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` that are not hidden, sorted: one per class."""
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
