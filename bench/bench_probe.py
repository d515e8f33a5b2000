"""Linear probes: ``mcl.evaluate.probe_attributes`` (torch L-BFGS) vs scikit-learn's StandardScaler +
LogisticRegression (lbfgs), the pipeline it replaced, on the book's own features.

Features: the Trifeature book-scale MCL run of seed 0 (``mclbook.experiments.multistage``, loaded from
``_build/book/runs`` when ``make book`` trained it, else trained here, a few minutes): stage 0 alone
(``[10000, 256]``) and the three stages concatenated (``[10000, 768]``), probed for shape, texture and
colour, as chapters 2 and 3 do. These features are ill-conditioned (both solvers take hundreds of
iterations), which is where the time goes; well-separated synthetic blobs converge in a few dozen and
show no difference. Each row: seconds (median over interleaved rounds), accuracies, ratio to ours.
Usage: ``python bench/bench_probe.py [--repeats 1] [--threads N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from mcl.evaluate import features, probe_attributes
from mcl.stages import concat_features
from mclbook import experiments
from mclbook.scales import preset


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
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    setup = preset("trifeature", "book")
    train, test = experiments.load_data("trifeature", setup)
    models = experiments.multistage("trifeature", setup, train, scale="book", device="cpu").models
    train_x = [features(m, train, device="cpu", normalize=False) for m in models]
    test_x = [features(m, test, device="cpu", normalize=False) for m in models]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; Trifeature book run, seed 0")
    print(f"{'features':<18} | {'method':<28} | {'s (median)':>10} | {'shape texture colour':>20} | x ours")
    for label, combine in (("stage 0", lambda xs: xs[0]), ("stages 0-2 concat", concat_features)):
        split = (combine(train_x), train.labels, combine(test_x), test.labels)
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
            print(f"{label:<18} | {name:<28} | {median:>10.2f} | {acc:>20} | {median / ours:5.2f}")


if __name__ == "__main__":
    main()
