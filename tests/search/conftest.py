"""Search fixtures: narrated-shapes videos (several 5 s events each, ground truth in their annotations), a
tiny random model, and a helper that builds an index of a folder with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tvts.data.synthetic import make_synthetic


@pytest.fixture(scope="session")
def narrated(tmp_path_factory) -> dict:
    """6 narrated videos (4-8 events of 5 s): ``{"dir": folder of the mp4s, "events": {name: [event, ...]}}``."""
    base = tmp_path_factory.mktemp("narrated")
    s = make_synthetic(base / "shapes", seed=1234, num_train=0, num_val=6, num_heldout=0, workers=1, progress=False)
    root = Path(s["yttemporal_root"]) / "videos" / "synth"
    events = {p.name: json.loads((root / "annotations" / f"{p.stem}.json").read_text())["events"]
              for p in sorted((root / "data").glob("*.mp4"))}
    return {"dir": root / "data", "events": events}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(model, its folder): a tiny TVTS model with random weights (4 frames of 16x16, embeddings of 16)."""
    from tvts.models import build_model, load_model
    from tvts.testing import make_tiny_bert, tiny_model_config

    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("tinysearch")
    build_model(tiny_model_config(make_tiny_bert(base / "bert"))).save_pretrained(base / "model")
    return load_model(base / "model"), str(base / "model")


@pytest.fixture(scope="session")
def copy_videos():
    """``copy_videos(src_dir, dst_dir, names)``: copies (with their mtimes) into a new folder; returns it."""
    def copy(src: Path, dst: Path, names: list[str]) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copy2(src / n, dst / n)
        return dst
    return copy


def build_with(model_and_dir, videos: Path, out: Path, **kw) -> dict:
    """``build_index`` with the model's own preprocessing (4 s windows every 2 s), no workers, no progress bar."""
    from tvts.data.processor import VideoProcessor
    from tvts.search.index import build_index

    model, model_dir = model_and_dir
    proc = VideoProcessor.from_pretrained(model_dir)
    kw = {"window": 4.0, "stride": 2.0, "batch_size": 8, "workers": 0, "progress": False, **kw}
    return build_index(model, videos, out, model_dir=model_dir, processor=proc, **kw)


@pytest.fixture(scope="session")
def index_with():
    """``index_with((model, model_dir), videos, out, **kw)``: :func:`build_with` for any model."""
    return build_with


@pytest.fixture(scope="session")
def build(tiny_model):
    """``build(videos, out, **kw)``: index ``videos`` into ``out`` with the tiny model."""
    return lambda videos, out, **kw: build_with(tiny_model, videos, out, **kw)


@pytest.fixture(scope="session")
def small_index(narrated, build, tmp_path_factory) -> Path:
    """An index of all 6 narrated videos, built once (tests must not change it)."""
    out = tmp_path_factory.mktemp("smallindex") / "index"
    build(narrated["dir"], out)
    return out
