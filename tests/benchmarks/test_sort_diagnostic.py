"""benchmarks/sort_diagnostic.py: a segment's event coverage, read from the generator's annotations."""

from __future__ import annotations

import json

import pytest
import torch

from tvts.data.datasets import yt_paths


@pytest.fixture(scope="module")
def diagnostic(load_benchmark):
    return load_benchmark("sort_diagnostic")


@pytest.fixture(scope="module")
def video(val_videos):
    """``(YT-Temporal root, a validation video's name, its annotated events)``."""
    root, names = val_videos
    return root, names[0], json.loads(open(yt_paths(root, names[0])[1]).read())["events"]


def test_event_coverage(diagnostic, video):
    root, name, events = video
    a, b = events[1], events[2]
    length = b["end"] - b["start"]
    bounds = torch.tensor([
        [a["start"], a["end"]],  # exactly one event
        [a["start"] + 0.25 * length, a["end"] - 0.25 * length],  # inside one event
        [a["end"] - 0.5 * length, a["end"] + 0.5 * length],  # half in each of two events
        [a["end"] - 0.3 * length, a["end"] + 0.7 * length],  # mostly in the second
        [events[-1]["end"] + 1.0, events[-1]["end"] + 2.0],  # after the last event
    ], dtype=torch.float64)
    coverage = diagnostic.event_coverage(root, name, bounds)
    assert coverage == pytest.approx([1.0, 1.0, 0.5, 0.7, 0.0], abs=1e-9)
