"""A folder's images decoded once: on every core, and kept in a cache so that the next run on the same files starts
at once.

Decoding 70,000 PNG files on one core took 30 s at the start of every run. :func:`decoded_images` decodes them in
DataLoader worker processes (torch's own machinery for parallel loading) and saves the result as one uint8 tensor
in a cache file, keyed by the list of files with their sizes, inode numbers and change times (``st_ctime``, which
the system sets on every write and no tool can set back, unlike the modification time that ``touch -r``, rsync and
restores keep) and by the channels and size asked for: a changed, added or removed file gives another key, so a
stale cache is never read. The cache holds plain tensors and strings only and is read with
``torch.load(weights_only=True)``: a cache file cannot run code. A request (these files, at this size) keeps one
cache file, its newest; a folder keeps the ``KEEP`` most recently used ones, so that fit and predict on the same
folder (other files, or another size) do not evict each other. The cache folder can be deleted at any time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)
FROM_FILES = 1000  # fewer files are decoded in this process and not cached: starting workers would cost more
CACHE_FORMAT = 3  # raised when what a cache file holds changes (old files are then not read)
KEEP = 4  # cache files kept per folder (the most recently used)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lit_nets/decoded``, else ``~/.cache/lit_nets/decoded``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lit_nets" / "decoded"


class _DecodeEach(Dataset):
    """Item ``i``: file ``i`` decoded as a NumPy array (pickled back to the main process as plain bytes), or the
    message of the :class:`~lit_nets.core.data.image_io.BadImage` it raised."""

    def __init__(self, files: list[Path], decode: Callable[[Path], torch.Tensor]) -> None:
        self.files, self.decode = files, decode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        from lit_nets.core.data.image_io import BadImage

        try:
            return self.decode(self.files[i]).numpy()
        except BadImage as e:
            return str(e)


def _as_list(batch: list) -> list:
    return batch


def decode_in_parallel(files: list[Path], decode: Callable[[Path], torch.Tensor], workers: int) -> list:
    """Each file decoded (a uint8 tensor) or its error message, in the files' order, ``workers`` processes."""
    from tqdm.auto import tqdm

    loader = DataLoader(_DecodeEach(files, decode), batch_size=64, num_workers=workers, collate_fn=_as_list)
    out: list = []
    with tqdm(total=len(files), desc="Decoding images", unit="img", leave=False) as bar:
        for batch in loader:
            out += [item if isinstance(item, str) else torch.from_numpy(item) for item in batch]
            bar.update(len(batch))
    return out


def cache_key(
    files: list[Path], channels: int | None, size: tuple[int, int] | None, variant: str = ""
) -> tuple[str, str, str]:
    """(the folder's name in the cache, the request: these file names at this size, the key of the files' contents
    as they are now); ``variant``: how they were resized, when not to ``size`` exactly."""
    asked = json.dumps([CACHE_FORMAT, channels, list(size) if size else None, [str(f) for f in files], variant])
    stats = [(st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns) for f in files for st in (f.stat(),)]
    folder = os.path.commonpath([str(f.parent) for f in files]) if files else ""
    digest = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    return digest(folder)[:12], digest(asked)[:12], digest(json.dumps(stats))[:24]


def decoded_images(
    files: list[Path],
    decode: Callable[[Path], torch.Tensor],
    channels: int | None,
    size: tuple[int, int] | None,
    cache_dir: Path | None,
    variant: str = "",
) -> dict[Path, torch.Tensor | str]:
    """Every file decoded (a uint8 (C, H, W) tensor) or its error message: from the cache when it holds these files
    as they are now, else decoded on every core and cached (``cache_dir`` None: not cached)."""
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / ("-".join(cache_key(files, channels, size, variant)) + ".pt")
        cached = _read(cache_file, files)
        if cached is not None:
            with contextlib.suppress(OSError):  # most recently used: kept when the folder's older caches go
                os.utime(cache_file)
            log.info(
                "data: %d decoded images from the cache %s (data.cache false decodes again)", len(files), cache_file
            )
            return dict(zip(files, cached, strict=True))
    workers = min(len(os.sched_getaffinity(0)), 16)
    decoded = decode_in_parallel(files, decode, workers)
    grey = 0
    if channels is None:
        decoded, grey = one_channel_count(decoded)
    if cache_file is not None:
        _write(cache_file, files, decoded, grey)
    return dict(zip(files, decoded, strict=True))


def one_channel_count(decoded: list) -> tuple[list, int]:
    """A folder's images decoded without a channel count asked (grey images as 1 channel, colour as 3) with one
    count for all: 3 when any is colour, the grey ones' channel repeated (R = G = B), as a model of colour images
    sees them. A colour folder holds a few grey pictures (245 of CIFAR-10's first 20,000 JPEGs): the mixed shapes
    kept such a folder from ever being cached."""
    images = [d for d in decoded if not isinstance(d, str)]
    grey = sum(d.shape[0] == 1 for d in images)
    if not grey or grey == len(images):
        return decoded, 0
    say_mixed(grey, len(images))
    return [d if isinstance(d, str) or d.shape[0] == 3 else d.expand(3, -1, -1).contiguous() for d in decoded], grey


def say_mixed(grey: int, count: int) -> None:
    """The line a folder of colour images with grey ones among them gets, every run."""
    log.info(
        "data: %d of %d images are grey (R = G = B) among colour ones: every image is used with 3 channels "
        "(data.image_channels 1 trains on grey)",
        grey,
        count,
    )


def _read(cache_file: Path, files: list[Path]) -> list | None:
    if not cache_file.is_file():
        return None
    try:
        saved = torch.load(cache_file, weights_only=True, mmap=True)
        if saved["format"] != CACHE_FORMAT or saved["files"] != "\n".join(str(f) for f in files):
            return None
        images, errors = saved["images"], saved["errors"]
        if saved.get("grey"):
            say_mixed(saved["grey"], len(files) - len(errors))
        return [errors.get(i) or images[i] for i in range(len(files))]
    except Exception as e:  # torn or from another version: decode again (the file is rewritten)
        log.warning("data: the cache file %s cannot be read (%s); decoding again", cache_file, str(e)[:100])
        return None


def _write(cache_file: Path, files: list[Path], decoded: list, grey: int = 0) -> None:
    """One tensor of every decoded image (zeros where a file was bad), when they share one shape; the folder's older
    cache files go."""
    shapes = {tuple(d.shape) for d in decoded if not isinstance(d, str)}
    if len(shapes) != 1:  # differing sizes end in an error (or nothing decoded): nothing worth keeping
        return
    (shape,) = shapes
    images = torch.zeros((len(decoded), *shape), dtype=torch.uint8)
    for i, d in enumerate(decoded):
        if not isinstance(d, str):
            images[i] = d
    errors = {i: d for i, d in enumerate(decoded) if isinstance(d, str)}
    partial = cache_file.with_suffix(f".{os.getpid()}.partial")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        files_text = "\n".join(str(f) for f in files)  # one string: read back at once (a list of 70,000 took 0.7 s)
        saved = {"format": CACHE_FORMAT, "files": files_text, "images": images, "errors": errors, "grey": grey}
        torch.save(saved, partial)
        partial.replace(cache_file)  # whole or absent: a run stopped while writing leaves no torn cache
        _evict(cache_file)
        log.info(
            "data: decoded images cached in %s (%.0f MB; delete it any time)",
            cache_file,
            cache_file.stat().st_size / 2**20,
        )
    except Exception as e:  # a read-only or full disk (torch.save raises RuntimeError there): go on without a cache
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        reason = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        log.warning(
            "data: could not cache the decoded images in %s (%s); the run goes on without a cache",
            cache_file.parent,
            reason,
        )


def _evict(cache_file: Path) -> None:
    """The older cache files of the same request go (stale: their files changed), then the folder's least recently
    used ones beyond ``KEEP``."""
    folder, request, _ = cache_file.stem.split("-")
    for old in cache_file.parent.glob(f"{folder}-{request}-*.pt"):
        if old != cache_file:
            old.unlink(missing_ok=True)
    others = [f for f in cache_file.parent.glob(f"{folder}-*.pt") if f != cache_file]
    others.sort(key=lambda f: f.stat().st_mtime, reverse=True)
    for old in others[KEEP - 1 :]:
        old.unlink(missing_ok=True)
