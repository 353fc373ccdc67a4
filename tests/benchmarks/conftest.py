"""Load a benchmark script of ``benchmarks/`` as a module, as ``python benchmarks/<name>.py`` would run it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import their sibling _report
    try:
        spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return mod


@pytest.fixture(scope="session")
def val_videos(tmp_path_factory):
    """``(YT-Temporal root, the 6 validation names)`` of a small generated dataset (3 direction pairs)."""
    from tvts.data.datasets import read_split_list
    from tvts.data.synthetic import make_synthetic

    out = tmp_path_factory.mktemp("val_videos") / "shapes"
    make_synthetic(out, seed=3, num_train=0, num_val=6, num_heldout=0, workers=1, progress=False)
    yt = out / "yttemporal"
    return yt, read_split_list(yt / "meta_data" / "yttemporal_val.csv")


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark(name)`` → the module of ``benchmarks/<name>.py``."""
    return _load
