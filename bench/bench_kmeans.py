"""Benchmark: mcl.cluster.kmeans against scikit-learn's KMeans (Lloyd) and MiniBatchKMeans.

MiniBatchKMeans with the authors' settings (GitHub MajorDavidZhang/MCL, cluster.py: batch_size 1,000,000,
max_iter 100, tol 1e-5) is what MCL's released code clusters with; KMeans(n_init=1, algorithm="lloyd") is
the exact algorithm ours implements. Data: a mixture of K isotropic gaussians (numpy, float32). Every
inertia is computed the same way, with ``mcl.cluster.assign`` on the returned centroids. Ratios are
against ours on the CPU, measured in the same run; wall and process CPU time are both printed (on a
shared machine the CPU time is the steadier of the two). On CUDA, ours is also timed on the GPU (synchronised,
after a warm-up run). Run: ``python bench/bench_kmeans.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from sklearn.cluster import KMeans, MiniBatchKMeans
from threadpoolctl import threadpool_limits

from mcl.cluster import ami, assign, kmeans

FULL_SIZES = [(50_000, 512), (200_000, 768)]
QUICK_SIZES = [(5_000, 64), (20_000, 128)]


def mixture(n: int, d: int, k: int, seed: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    """n points of a mixture of k unit-variance gaussians (float32) whose means are drawn so that two means
    lie ``separation`` noise standard deviations apart on average: N(0, separation^2 / (2 d) I)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, separation / np.sqrt(2 * d), size=(k, d)).astype(np.float32)
    truth = rng.integers(0, k, size=n)
    x = rng.standard_normal(size=(n, d), dtype=np.float32)
    x += means[truth]
    return x, truth


def inertia_of(x: torch.Tensor, centroids: np.ndarray | torch.Tensor) -> float:
    _, cost = assign(x, torch.as_tensor(centroids, dtype=torch.float32))
    return float(cost.double().sum())


def run_size(n: int, d: int, k: int, seed: int, separation: float) -> list[dict]:
    x_np, truth = mixture(n, d, k, seed, separation)
    x = torch.from_numpy(x_np)
    rows = []

    def record(name: str, device: str, start: tuple[float, float], iters: int, centroids, labels) -> None:
        rows.append(
            {
                "method": name,
                "device": device,
                "seconds": time.perf_counter() - start[0],
                "cpu": time.process_time() - start[1] if device == "cpu" else float("nan"),
                "iters": iters,
                "inertia": inertia_of(x, centroids),
                "ami": ami(labels, truth),
            }
        )

    def clock() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    t = clock()
    ours = kmeans(x, k, n_iter=100, tol=1e-4, seed=seed)
    record("mcl kmeans", "cpu", t, ours.n_iter, ours.centroids, ours.labels)

    t = clock()
    sk = KMeans(k, n_init=1, algorithm="lloyd", max_iter=100, tol=1e-4, random_state=seed).fit(x_np)
    record("sklearn KMeans lloyd", "cpu", t, int(sk.n_iter_), sk.cluster_centers_, sk.labels_)

    t = clock()
    mb = MiniBatchKMeans(k, batch_size=1_000_000, max_iter=100, tol=1e-5, random_state=seed).fit(x_np)
    record("sklearn MiniBatchKMeans", "cpu", t, int(mb.n_steps_), mb.cluster_centers_, mb.labels_)

    if torch.cuda.is_available():
        xg = x.cuda()
        kmeans(xg, k, n_iter=2, seed=seed)  # warm-up: CUDA context, kernels
        torch.cuda.synchronize()
        t = clock()
        gpu = kmeans(xg, k, n_iter=100, tol=1e-4, seed=seed)
        torch.cuda.synchronize()
        record("mcl kmeans", "cuda", t, gpu.n_iter, gpu.centroids.cpu(), gpu.labels.cpu())
        xh = xg.half()
        t = clock()
        half = kmeans(xh, k, n_iter=100, tol=1e-4, seed=seed)
        torch.cuda.synchronize()
        record("mcl kmeans (fp16 input)", "cuda", t, half.n_iter, half.centroids.cpu(), half.labels.cpu())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (seconds) instead of 50k x 512 and 200k x 768"
    )
    parser.add_argument("--k", type=int, default=10, help="clusters (the authors use 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--separation",
        type=float,
        default=4.0,
        help="mean distance between two components' means, in noise standard deviations",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for torch and scikit-learn alike (default: torch's default)",
    )
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# k-means benchmark: K={args.k}, {threads} thread(s), {os.cpu_count()} CPU(s), load average "
        f"{load:.1f} at start, torch {torch.__version__}, {platform.processor() or platform.machine()}"
        f"{', CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ', no CUDA'}"
    )
    header = (
        f"| {'N x D':>13} | {'method':<25} | {'device':<6} | {'wall s':>7} | {'CPU s':>7} | "
        f"{'iters':>5} | {'inertia':>12} | {'AMI truth':>9} | {'wall / ours':>11} | "
        f"{'CPU / ours':>10} | {'inertia / ours':>14} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|")
    with threadpool_limits(threads):
        for n, d in QUICK_SIZES if args.quick else FULL_SIZES:
            rows = run_size(n, d, args.k, args.seed, args.separation)
            base = rows[0]
            for r in rows:
                print(
                    f"| {f'{n:,} x {d}':>13} | {r['method']:<25} | {r['device']:<6} | "
                    f"{r['seconds']:7.2f} | {r['cpu']:7.2f} | {r['iters']:5d} | {r['inertia']:12.6g} | "
                    f"{r['ami']:9.3f} | {r['seconds'] / base['seconds']:11.2f} | "
                    f"{r['cpu'] / base['cpu']:10.2f} | {r['inertia'] / base['inertia']:14.5f} |",
                    flush=True,
                )
    print(
        "# iters: Lloyd iterations (ours, KMeans); mini-batch steps (MiniBatchKMeans). AMI against the "
        "mixture's true components. CPU s: process CPU time (all threads), nan on CUDA."
    )


if __name__ == "__main__":
    main()
