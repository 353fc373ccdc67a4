"""benchmarks/supervised_ceiling.py: every event of the training videos becomes a clip labelled with its action."""

from __future__ import annotations

import json

import numpy as np
import torch

from tvts.data.datasets import TranscriptVideoDataset, yt_paths
from tvts.data.synthetic import ACTIONS, make_synthetic
from tvts.data.transforms import VideoTransform


def test_event_clips_are_the_annotated_events_with_their_labels(load_benchmark, tmp_path):
    ceiling = load_benchmark("supervised_ceiling")
    out = tmp_path / "shapes"
    make_synthetic(out, seed=2, num_train=2, num_val=0, num_heldout=0, workers=1, progress=False)
    root = out / "yttemporal"
    videos = TranscriptVideoDataset(root, root / "meta_data" / "yttemporal_train.csv", num_frames=6,
                                    transform=VideoTransform(16, 1.125, train=True), seed=0)
    clips = ceiling.EventClips(videos, seed=0)
    events = [(i, ev) for i in range(len(videos))
              for ev in json.loads(open(yt_paths(root, videos.names[i])[1]).read())["events"]]
    assert [(i, e["start"], e["end"], ACTIONS.index(e["action"])) for i, e in events] == clips.events
    n = len(events)
    labels = []
    for draw in range(n):  # one pass visits every event once, in a seeded order
        item = clips[draw]
        assert item["frames"].shape == (6, 3, 16, 16) and item["frames"].dtype == torch.float32
        assert item["frames"].std() > 0  # decoded pictures, not a constant fill
        labels.append(item["label"])
    assert sorted(labels) == sorted(ACTIONS.index(e["action"]) for _, e in events)
    again = clips[3]
    assert torch.equal(again["frames"], clips[3]["frames"])  # a draw replays exactly
    order = np.random.default_rng([0, 0]).permutation(n)
    assert clips[0]["label"] == clips.events[order[0]][3]
