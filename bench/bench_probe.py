"""Linear probes: ``mcl.evaluate.probe_attributes`` (torch L-BFGS) vs scikit-learn's StandardScaler +
LogisticRegression (lbfgs), the pipeline it replaced, on the same features.

Features imitate the book's Trifeature probes: N x D float32 (D = 256 for one stage, 768 for three
concatenated), two 10-class attributes read from overlapping class means, so both solvers need hundreds
of iterations. Each row prints seconds (median over interleaved rounds), test accuracy, and the ratio.
Usage: ``python bench/bench_probe.py [--n 10000] [--dims 256 768] [--repeats 3] [--threads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from mcl.evaluate import probe_attributes


def features(n: int, dim: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``[n, dim]`` features and two attributes, each a 10-class label whose class mean is hidden in noise."""
    g = torch.Generator().manual_seed(seed)
    labels = {name: torch.randint(0, 10, (n,), generator=g) for name in ("shape", "texture")}
    x = torch.randn(n, dim, generator=g)
    for y in labels.values():
        x += 0.15 * torch.randn(10, dim, generator=g)[y]
    return x, labels


def sklearn_probes(train_x, train_labels, test_x, test_labels) -> dict[str, float]:
    scaler = StandardScaler().fit(train_x.numpy())
    train, test = scaler.transform(train_x.numpy()), scaler.transform(test_x.numpy())
    return {
        name: float(
            LogisticRegression(max_iter=1000).fit(train, y.numpy()).score(test, test_labels[name].numpy())
        )
        for name, y in train_labels.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 768])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, N {args.n}, "
        "2 attributes x 10 classes"
    )
    print(f"{'D':>5} | {'method':<28} | {'s (median)':>10} | {'accuracy':>17} | x ours")
    for dim in args.dims:
        x, labels = features(args.n + 2000, dim, dim)
        split = (x[: args.n], {k: v[: args.n] for k, v in labels.items()}, x[args.n :])
        split += ({k: v[args.n :] for k, v in labels.items()},)
        methods = {"mcl probe_attributes": probe_attributes, "sklearn Scaler+LogReg lbfgs": sklearn_probes}
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        accuracy = {}
        for _ in range(args.repeats):
            for name, fn in methods.items():
                start = time.perf_counter()
                accuracy[name] = fn(*split)
                seconds[name].append(time.perf_counter() - start)
        ours = statistics.median(seconds["mcl probe_attributes"])
        for name in methods:
            median = statistics.median(seconds[name])
            acc = " ".join(f"{v:.3f}" for v in accuracy[name].values())
            print(f"{dim:>5} | {name:<28} | {median:>10.2f} | {acc:>17} | {median / ours:5.2f}")
    print(f"(numpy {np.__version__}; accuracies per attribute: shape texture)")


if __name__ == "__main__":
    main()
