"""Where does gradient boosting stand on the rows the MLP trains on? scikit-learn's ``HistGradientBoostingClassifier``
at its defaults, fitted on the very training rows that ``fit`` with the same configs gives the MLP (the inputs as the
MLP gets them: numbers standardised, categories one-hot), scored on the same test rows: the fit's seconds and test
accuracy, for perspective beside ``benchmarks/loops.py``'s table.

    python benchmarks/boosting.py --config configs/diamonds.yaml
    python benchmarks/boosting.py --config configs/insteval.yaml --repeat 3

The configs stack on ``configs/mlp.yaml`` as the command line stacks them (the CLI's own parser, :func:`harness.build`).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from harness import REPO, build, median, print_table


def boosting(configs: list[str], repeat: int) -> dict[str, Any]:
    """Fit the booster ``repeat`` times on the configs' training rows: the median seconds, the test accuracy."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    dm, _ = build(configs)
    (x, y), (tx, ty) = dm.splits.train, dm.splits.test
    seconds, accuracy = [], 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        booster = HistGradientBoostingClassifier(random_state=0).fit(x.numpy(), y.numpy())
        seconds.append(time.perf_counter() - start)
        accuracy = float((booster.predict(tx.numpy()) == ty.numpy()).mean())
    return {"data": dm.source, "rows": len(x), "fit_s": median(seconds), "test_acc": accuracy}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Fit, print the row, return it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", default=[], help="a config stacked on configs/mlp.yaml")
    parser.add_argument("--repeat", type=int, default=1, help="fits (default 1); the median time is shown")
    args = parser.parse_args(argv)
    result = boosting([str(REPO / "configs" / "mlp.yaml"), *args.config], args.repeat)
    print_table(
        ["run", "training rows", "seconds (the whole fit)", "test acc"],
        [["G: gradient boosting", f"{result['rows']:,}", f"{result['fit_s']:.2f}", f"{result['test_acc']:.4f}"]],
        f"{result['data']}, median of {args.repeat} fit(s)",
    )
    return result


if __name__ == "__main__":
    main()
