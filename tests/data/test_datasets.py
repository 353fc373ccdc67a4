import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tvts.data.datasets import TranscriptVideoDataset, read_split_list, yt_paths
from tvts.data.samples import MaskSpec, collate
from tvts.data.transcripts import load_yt_annotation, segment_texts
from tvts.data.transforms import IMAGENET_MEAN, IMAGENET_STD, VideoTransform
from tvts.errors import ConfigError

FPS = 2
DURATION = 30.0  # 60 frames; frame i is shown during [i / 2, (i + 1) / 2) and its gray level encodes i
GOOD = [0, 1, 2, 3]
CORRUPT, EMPTY_TRANSCRIPT, SHORT_VIDEO = 4, 5, 6


def _name(i):
    return f"synth/data/vid_{i:05d}.mp4"


@pytest.fixture(scope="module")
def yt_root(tmp_path_factory, make_video, make_yt_annotation, gray_code):
    root = str(tmp_path_factory.mktemp("yt"))
    frames = gray_code.frames(int(DURATION * FPS), 48, 64)
    for i in range(7):
        video, annotation = yt_paths(root, _name(i))
        n_words = 0 if i == EMPTY_TRANSCRIPT else 60
        words = [f"v{i}w{j}" for j in range(n_words)]
        times = [0.25 + 0.5 * j for j in range(n_words)]
        make_yt_annotation(annotation, words, times, DURATION)
        if i == CORRUPT:
            os.makedirs(os.path.dirname(video), exist_ok=True)
            with open(video, "wb") as f:
                f.write(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
        elif i == SHORT_VIDEO:
            make_video(video, frames[:20], FPS)  # 10 s of video under a 30 s transcript
        else:
            make_video(video, frames, FPS)
    split = os.path.join(root, "yttemporal_train.csv")
    with open(split, "w") as f:
        f.write("Name\tOther\n" + "".join(f"{_name(i)}\tx\n" for i in range(7)))
    return root, split


def _dataset(yt_root, **kw):
    root, split = yt_root
    args = dict(
        num_segments=4,
        segment_seconds=4.0,
        gap=1.0,
        num_frames=8,
        transform=VideoTransform(32, train=kw.get("train", True)),
        mask=MaskSpec("random", num_slots=4, num_patches=4, ratio=0.5),
        seed=0,
    )
    args.update(kw)
    return TranscriptVideoDataset(root, split, **args)


def _frame_indices(frames, gray_code):
    return gray_code.index_normalized(frames.numpy(), IMAGENET_MEAN, IMAGENET_STD)


def test_split_list_and_paths(yt_root, tmp_path):
    root, split = yt_root
    assert read_split_list(split) == [_name(i) for i in range(7)]
    video, annotation = yt_paths("/data", "synth/data/vid_00003.mp4")
    assert video == os.path.join("/data", "videos", "synth", "data", "vid_00003.mp4")
    assert annotation == os.path.join("/data", "videos", "synth", "annotations", "vid_00003.json")
    missing = str(tmp_path / "missing.csv")
    with pytest.raises(ConfigError, match="missing.csv"):
        read_split_list(missing)
    for name, text in (("empty.csv", ""), ("noname.csv", "Video\nx.mp4\n"), ("header_only.csv", "Name\n")):
        p = tmp_path / name
        p.write_text(text)
        with pytest.raises(ConfigError, match=name):
            read_split_list(str(p))


def test_train_sample_contents_and_frames_inside_span(yt_root, gray_code):
    ds = _dataset(yt_root)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for i in GOOD:
            s = ds[i]
            assert s["index"] == i and s["video_id"] == _name(i)
            assert s["skipped"] == {} and s["bad_paths"] == []
            assert s["frames"].shape == (8, 3, 32, 32) and s["frames"].dtype == torch.float32
            assert s["keep"].shape == (4, 2) and s["keep"].dtype == torch.long
            order, bounds, times = s["order"], s["bounds"].numpy(), s["frame_times"].numpy()
            assert sorted(order.tolist()) == [0, 1, 2, 3]
            # Eq. 1 span inside the video
            np.testing.assert_allclose(np.diff(bounds, axis=1).ravel(), 4.0)
            np.testing.assert_allclose(bounds[1:, 0] - bounds[:-1, 1], 1.0)
            assert 0.0 <= bounds[0, 0] and bounds[-1, 1] <= DURATION
            # TSN: one time in each of 8 equal parts of [S_1, E_K]
            s1, ek = bounds[0, 0], bounds[-1, 1]
            part = np.floor((times - s1) / ((ek - s1) / 8)).astype(int)
            np.testing.assert_array_equal(part, np.arange(8))
            # the decoded frames are the frames shown at those times
            np.testing.assert_array_equal(_frame_indices(s["frames"], gray_code), np.floor(times * FPS).astype(int))
            # texts: the words of segment order[k], shuffled
            _, ann = yt_paths(yt_root[0], _name(i))
            expected = segment_texts(load_yt_annotation(ann), bounds)
            assert all(expected)
            assert s["texts"] == [expected[o] for o in order.tolist()]


def test_deterministic_for_seed_epoch_index(yt_root):
    a, b = _dataset(yt_root), _dataset(yt_root)
    for i in (0, 2):
        x, y = a[i], b[i]
        assert torch.equal(x["frames"], y["frames"]) and x["texts"] == y["texts"]
        assert torch.equal(x["order"], y["order"]) and torch.equal(x["keep"], y["keep"])
        assert torch.equal(x["bounds"], y["bounds"])
    b.set_epoch(1)
    other_seed = _dataset(yt_root, seed=1)
    assert not torch.equal(a[0]["bounds"], b[0]["bounds"])
    assert not torch.equal(a[0]["bounds"], other_seed[0]["bounds"])
    b.set_epoch(0)
    assert torch.equal(a[0]["frames"], b[0]["frames"])  # replayable


def test_fixed_windows_keep_one_pair_per_video(yt_root):
    """``windows="fixed"``: every epoch draws a video's middle window (the evaluation's), so its texts and bounds
    are one fixed pair, while the frame times inside it stay random; ``random`` moves the window (Eq. 1)."""
    fixed, random_, evaluation = _dataset(yt_root, windows="fixed"), _dataset(yt_root), _dataset(yt_root, train=False)
    for i in GOOD:
        draws, moved = [], []
        for epoch in range(4):
            fixed.set_epoch(epoch)
            random_.set_epoch(epoch)
            draws.append(fixed[i])
            moved.append(random_[i]["bounds"])
        for d in draws[1:]:
            assert torch.equal(d["bounds"], draws[0]["bounds"])
            assert sorted(d["texts"]) == sorted(draws[0]["texts"])
        assert torch.equal(draws[0]["bounds"], evaluation[i]["bounds"])
        assert len({tuple(d["frame_times"].tolist()) for d in draws}) == len(draws)  # TSN times still random
        assert len({tuple(b[:, 0].tolist()) for b in moved}) > 1
    with pytest.raises(ConfigError, match="windows"):
        _dataset(yt_root, windows="middle")


@pytest.mark.parametrize(
    "bad, reason, suffix",
    [
        (CORRUPT, "unreadable", "vid_00004.mp4"),
        (EMPTY_TRANSCRIPT, "empty_segment", "vid_00005.json"),
        (SHORT_VIDEO, "too_short", "vid_00006.mp4"),
    ],
)
def test_bad_sample_is_skipped_counted_and_replaced(yt_root, gray_code, bad, reason, suffix):
    s = _dataset(yt_root)[bad]
    assert s["skipped"].get(reason, 0) >= 1
    assert s["bad_paths"][0].endswith(suffix)
    assert sum(s["skipped"].values()) == len(s["bad_paths"])
    assert s["index"] in GOOD and s["video_id"] == _name(s["index"])
    # a real sample: real frames of the replacement video, real texts
    np.testing.assert_array_equal(
        _frame_indices(s["frames"], gray_code), np.floor(s["frame_times"].numpy() * FPS).astype(int)
    )
    assert all(t.startswith(f"v{s['index']}w") for t in s["texts"])
    assert torch.equal(_dataset(yt_root)[bad]["frames"], s["frames"])  # the replacement is deterministic


def test_only_bad_samples_raise_after_max_retries(yt_root):
    root, _ = yt_root
    ds = TranscriptVideoDataset(
        root,
        [_name(CORRUPT), _name(EMPTY_TRANSCRIPT)],
        transform=VideoTransform(32, train=True),
        mask=None,
        max_retries=4,
    )
    with pytest.raises(RuntimeError) as ei:
        ds[0]
    msg = str(ei.value)
    assert "4 consecutive failures" in msg and "unreadable" in msg and "vid_00004.mp4" in msg


def test_eval_mode_is_deterministic_middle_and_midpoints(yt_root, gray_code):
    ds = _dataset(yt_root, train=False, mask=None)
    s = ds[1]
    np.testing.assert_allclose(s["bounds"][:, 0].numpy(), [5.5, 10.5, 15.5, 20.5])
    np.testing.assert_allclose(s["frame_times"].numpy(), 5.5 + 19.0 / 8 * (np.arange(8) + 0.5))
    assert "keep" not in s
    ds.set_epoch(5)
    t = ds[1]
    assert torch.equal(s["frames"], t["frames"]) and s["texts"] == t["texts"]
    plain = _dataset(yt_root, train=False, mask=None, shuffle=False)[1]
    assert plain["order"].tolist() == [0, 1, 2, 3]
    assert [plain["texts"][o] for o in s["order"].tolist()] == s["texts"]


def test_dataloader_two_workers_matches_single_process(yt_root):
    ds = _dataset(yt_root)
    ds.set_epoch(2)
    loader = DataLoader(ds, batch_size=4, shuffle=False, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert [b["frames"].shape[0] for b in batches] == [4, 3]
    b0 = batches[0]
    assert b0["frames"].shape == (4, 8, 3, 32, 32)
    assert b0["order"].shape == (4, 4) and b0["keep"].shape == (4, 4, 2)
    assert len(b0["texts"]) == 4 and all(len(t) == 4 for t in b0["texts"])
    assert b0["bounds"].shape == (4, 4, 2) and b0["frame_times"].shape == (4, 8)
    skipped = sum(sum(b["skipped"].values()) for b in batches)
    assert skipped >= 3 and skipped == sum(len(b["bad_paths"]) for b in batches)
    # same samples as without workers: the randomness depends on (seed, epoch, index, attempt) only
    for k, i in enumerate(range(4, 7)):
        single = ds[i]
        assert torch.equal(batches[1]["frames"][k], single["frames"])
        assert batches[1]["texts"][k] == single["texts"]
        assert batches[1]["video_id"][k] == single["video_id"]


def test_evaluation_clips(yt_root, gray_code):
    """The evaluation clip of a video (extract's views, through the video processor): the midpoints of equal
    parts of the whole video; an unreadable file is reported with its reason, not raised."""
    from tvts.data.processor import VideoProcessor
    from tvts.eval.extract import ViewsDataset, collate_views

    root, _ = yt_root
    paths = [yt_paths(root, _name(i))[0] for i in (0, 1, CORRUPT)]
    ds = ViewsDataset(paths, ["a", "b", "bad"], VideoProcessor(num_frames=4, size=32))
    s = ds[1]
    assert s["video_id"] == "b" and s["index"] == 1 and s["frames"].shape == (1, 4, 3, 32, 32)
    # midpoints of 4 parts of [0, 30]: 3.75, 11.25, 18.75, 26.25 s -> frames 7, 22, 37, 52
    np.testing.assert_array_equal(_frame_indices(s["frames"][0], gray_code), [7, 22, 37, 52])
    batch = next(iter(DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_views)))
    assert batch["frames"].shape == (2, 1, 4, 3, 32, 32) and batch["video_id"] == ["a", "b"]
    assert [(f["video_id"], f["reason"]) for f in batch["failed"]] == [("bad", "unreadable")]

def test_any_source_gives_the_same_samples_through_the_one_builder(yt_root):
    """A dataset is a source (what sample i is made of) plus the one builder: a hand-written in-memory source
    holding the same videos and transcripts gives exactly the YT-Temporal dataset's samples, training and
    evaluation, bad-sample replacement included; a caption item is built from the same frame pipeline."""
    from tvts.data.samples import Item, SampleDataset
    from tvts.data.strings import PackedStrings

    root, split = yt_root

    class InMemory:
        def __init__(self):
            self.names = PackedStrings([_name(i) for i in range(7)])
            paths = [yt_paths(root, _name(i)) for i in range(7)]
            self.items = [Item(_name(i), video, transcript=load_yt_annotation(ann)) for i, (video, ann) in enumerate(paths)]

        def __len__(self):
            return len(self.items)

        def item(self, i):
            return self.items[i]

        def video_path(self, i):
            return self.items[i].video

        def sample_texts(self, i, builder):
            return builder.reachable_texts(self.items[i].transcript)

    for train in (True, False):
        kw = dict(num_segments=4, segment_seconds=4.0, gap=1.0, num_frames=8, transform=VideoTransform(32, train=train),
                  mask=MaskSpec("random", num_slots=4, num_patches=4, ratio=0.5), seed=3, train=train)
        ours, reference = SampleDataset(InMemory(), **kw), _dataset(yt_root, **kw)
        ours.set_epoch(2), reference.set_epoch(2)
        for i in (0, 3, CORRUPT, SHORT_VIDEO):  # the last two are replaced by the same draws
            a, b = ours[i], reference[i]
            assert a.keys() == b.keys() and a["skipped"] == b["skipped"] and a["index"] == b["index"]
            for key in ("frames", "order", "keep", "bounds", "frame_times"):
                assert torch.equal(a[key], b[key]), key
            assert a["texts"] == b["texts"] and a["caption"] == b["caption"]
        assert ours.sample_texts(1) == reference.sample_texts(1) and len(ours.sample_texts(1)) > 4

    captioned = SampleDataset(InMemory(), num_frames=4, transform=VideoTransform(32, train=False), train=False)
    captioned.source.items[0] = Item("c", captioned.source.items[0].video, caption="a red square spins")
    s = captioned[0]
    assert "order" not in s and s["texts"] == ["a red square spins"] and s["video_id"] == "c"
    np.testing.assert_allclose(s["bounds"].numpy(), [[0.0, DURATION]], atol=0.5)
    np.testing.assert_allclose(s["frame_times"].numpy(), (np.arange(4) + 0.5) * float(s["bounds"][0, 1]) / 4)
