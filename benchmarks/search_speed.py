"""Latency of one ``tvts search`` query over a large index: exact matrix product vs FAISS, side by side.

An index of ``--windows`` random unit vectors (``--dims``: 128 is the demo model, 512 TVTSv2 ViT-B/16) in
videos of ``--per-video`` windows (4 s every 2 s) is built in memory; each query is a random unit vector.
Timed: the whole :meth:`tvts.search.query.SearchIndex.search` call (scores, top candidates, merging into
``k`` moments), median and 95th percentile over ``--queries`` queries after ``--warmup`` untimed ones.
The FAISS row (``IndexFlatIP``: exact inner products, what a user would reach for instead; its index is built
once, before timing) is skipped when ``faiss`` is not installed (``pip install 'tvts[faiss]'``). Both use
``--threads`` threads (torch and FAISS/OpenMP). The rankings of the two are checked to agree.

    python benchmarks/search_speed.py [--windows 100000] [--dims 128 512] [--k 10] [--queries 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from tvts.search.index import IndexData
from tvts.search.query import SearchIndex


def random_index(n: int, dim: int, per_video: int, seed: int = 0) -> SearchIndex:
    g = torch.Generator().manual_seed(seed)
    videos = -(-n // per_video)
    counts = [per_video] * (videos - 1) + [n - per_video * (videos - 1)]
    spans = torch.cat([torch.stack([torch.arange(c) * 2.0, torch.arange(c) * 2.0 + 4.0], 1) for c in counts]).double()
    recs = [{"video": f"v{i:06d}.mp4", "key": f"{i:016x}", "windows": c, "duration": 2.0 * c + 2} for i, c in enumerate(counts)]
    settings = {"window": 4.0, "stride": 2.0, "model": {"name": "random", "embed_dim": dim}, "root": "/nowhere"}
    data = IndexData(settings, recs, F.normalize(torch.randn(n, dim, generator=g), dim=-1),
                     F.normalize(torch.randn(videos, dim, generator=g), dim=-1),
                     torch.repeat_interleave(torch.arange(videos), torch.tensor(counts)), spans)
    return SearchIndex("/nowhere", data)


def time_queries(idx: SearchIndex, queries: torch.Tensor, k: int, backend: str, warmup: int) -> tuple[np.ndarray, list]:
    for q in queries[:warmup]:
        idx.search(q, k, backend=backend)
    times, answers = [], []
    for q in queries[warmup:]:
        t0 = time.perf_counter()
        answers.append([(m.video, m.start, m.end) for m in idx.search(q, k, backend=backend)])
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3, answers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=100_000)
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--per-video", type=int, default=30, help="windows per video (a 1-minute video: 30)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        faiss = None
    rows = []
    for dim in args.dims:
        idx = random_index(args.windows, dim, args.per_video)
        qs = F.normalize(torch.randn(args.queries + args.warmup, dim, generator=torch.Generator().manual_seed(1)), dim=-1)
        exact, want = time_queries(idx, qs, args.k, "exact", args.warmup)
        rows.append({"backend": "exact (torch matmul)", "dim": dim, "median_ms": float(np.median(exact)),
                     "p95_ms": float(np.percentile(exact, 95)), "same_as_exact": True})
        if faiss is not None:
            t0 = time.perf_counter()
            idx.search(qs[0], args.k, backend="faiss")  # builds the FAISS index
            build_s = time.perf_counter() - t0
            fast, got = time_queries(idx, qs, args.k, "faiss", args.warmup)
            rows.append({"backend": f"faiss IndexFlatIP (built in {build_s:.2f} s)", "dim": dim,
                         "median_ms": float(np.median(fast)), "p95_ms": float(np.percentile(fast, 95)),
                         "same_as_exact": got == want})
    print(f"{args.windows} windows, k={args.k}, {args.queries} queries, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
          + (f", faiss {faiss.__version__}" if faiss is not None else ", faiss not installed"))
    print("| backend | D | median ms | p95 ms | same moments as exact |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['backend']} | {r['dim']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | {r['same_as_exact']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
