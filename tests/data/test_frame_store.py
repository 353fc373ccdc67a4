"""The frame store gives exactly the frames decoding gives, and the dataset the same samples."""

import os

import numpy as np
import pytest
import torch

from tvts.data.datasets import TranscriptVideoDataset, yt_paths
from tvts.data.samples import MaskSpec
from tvts.data.decode import decode_frames
from tvts.data.frame_store import FrameStore
from tvts.data.transforms import VideoTransform
from tvts.errors import SampleError

FPS = 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, make_video, make_yt_annotation, gray_code):
    """Three 12 s videos (frame i's gray level encodes i; the second with a keyframe every 5 frames) with
    timed transcripts, and a fourth file that is not a video."""
    root = str(tmp_path_factory.mktemp("store"))
    frames = gray_code.frames(12 * FPS, 48, 64)
    names = [f"synth/data/vid_{i:05d}.mp4" for i in range(4)]
    for i, name in enumerate(names):
        video, annotation = yt_paths(root, name)
        make_yt_annotation(annotation, [f"w{j}" for j in range(40)], [0.1 + 0.29 * j for j in range(40)], 12.0)
        if i == 3:
            os.makedirs(os.path.dirname(video), exist_ok=True)
            with open(video, "wb") as f:
                f.write(b"not a video" * 50)
        else:
            make_video(video, frames, FPS, gop=5 if i == 1 else None)
    return root, names


def _dataset(corpus, transform):
    root, names = corpus
    return TranscriptVideoDataset(root, names, num_segments=2, segment_seconds=3.0, gap=1.0, num_frames=6,
                                  transform=transform, mask=MaskSpec("random", 3, 4, 0.5), seed=3)


def test_store_frames_equal_decoded_frames(corpus, tmp_path):
    """At any times (before the first frame, between frames, on a frame's own time, past the end), the store
    returns the resized frames decode_frames returns."""
    root, names = corpus
    transform = VideoTransform(32, 1.125, train=True)
    paths = [yt_paths(root, n)[0] for n in names]
    store, path, reused = FrameStore.open_or_build(tmp_path, paths, transform, workers=2)
    assert not reused and path.is_file() and len(store) == 4
    times = np.array([-1.0, 0.0, 0.1249, 0.25, 0.2501, 3.3, 7.0, 11.74, 11.75, 30.0])
    for i in range(3):
        expected = transform.resize(decode_frames(paths[i], times))
        assert np.array_equal(store.frames(i, times), expected)
        assert store.frames(i, times).shape == (len(times), 36, 48, 3)
    with pytest.raises(SampleError) as err:
        store.frames(3, times)
    assert err.value.reason == "unreadable" and err.value.path == paths[3]
    again, _, reused = FrameStore.open_or_build(tmp_path, paths, transform, workers=1)
    assert reused and np.array_equal(again.frames(1, times), store.frames(1, times))
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary file left behind


def test_a_new_resolution_or_a_changed_video_builds_a_new_store(corpus, tmp_path):
    root, names = corpus
    paths = [yt_paths(root, n)[0] for n in names[:2]]
    _, first, _ = FrameStore.open_or_build(tmp_path, paths, VideoTransform(32, 1.125))
    _, other, reused = FrameStore.open_or_build(tmp_path, paths, VideoTransform(16, 1.125))
    assert not reused and other != first
    _, subset, reused = FrameStore.open_or_build(tmp_path, paths[:1], VideoTransform(32, 1.125))
    assert not reused and subset != first


def test_dataset_samples_are_the_same_with_and_without_the_store(corpus, tmp_path):
    """Same seed, same index: identical frames, texts, order, mask; a bad video is the same bad sample."""
    root, names = corpus
    transform = VideoTransform(32, 1.125, train=True)
    plain = _dataset(corpus, transform)
    stored = _dataset(corpus, transform)
    stored.frame_store, _, _ = FrameStore.open_or_build(tmp_path, [plain.video_path(i) for i in range(4)], transform)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        stored.set_epoch(epoch)
        for i in range(4):
            a, b = plain[i], stored[i]
            assert torch.equal(a["frames"], b["frames"])
            assert a["texts"] == b["texts"] and torch.equal(a["order"], b["order"]) and torch.equal(a["keep"], b["keep"])
            assert a["index"] == b["index"] and a["skipped"] == b["skipped"]
    assert stored[3]["skipped"] == {"unreadable": 1}  # replaced by another index, as when decoding
