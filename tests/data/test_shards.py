"""WebDataset shards: round trip, split over ranks x workers, determinism, exact resume, re-encoding."""

from __future__ import annotations

import json
import tarfile

import pytest
import torch
from torch.utils.data import DataLoader

from tvts.data.samples import MaskSpec
from tvts.data.decode import probe
from tvts.data.manifest import ManifestDataset, manifest_from_yt
from tvts.data.shards import ShardDataset, _memory_file, _tar_samples, write_shards
from tvts.data.synthetic import make_synthetic
from tvts.data.transforms import VideoTransform

pytest.importorskip("webdataset", reason="webdataset is not installed (pip install 'tvts[shards]')")
N = 8


def _kw():
    return dict(num_segments=2, segment_seconds=3.0, gap=1.0, num_frames=2, transform=VideoTransform(16, train=True),
                mask=MaskSpec("random", num_slots=1, num_patches=4, ratio=0.5), seed=5)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    d = tmp_path_factory.mktemp("shards")
    synth = make_synthetic(d / "synth", num_train=N, num_val=1, num_heldout=1, workers=1, progress=False)
    manifest = d / "train.jsonl"
    manifest_from_yt(synth["yttemporal_root"], synth["train_csv"], manifest)
    report = write_shards(manifest, d / "out", samples_per_shard=2, progress=False)
    return manifest, d / "out", report


def _positions(ds, workers, batch):
    loader = DataLoader(ds, batch_size=batch, num_workers=workers,
                        collate_fn=lambda b: [(s["index"], s["position"]) for s in b])
    return [x for b in loader for x in b]


def test_round_trip_gives_the_manifest_samples(packed):
    manifest, out, report = packed
    assert report["samples"] == N and report["skipped"] == {} and len(report["shards"]) == N // 2
    index = json.loads((out / "shards.json").read_text())
    assert [s["samples"] for s in index["shards"]] == [2] * (N // 2)
    with tarfile.open(report["shards"][0]) as tar:
        assert sorted(tar.getnames()) == ["000000000.json", "000000000.mp4", "000000001.json", "000000001.mp4"]
        assert json.load(tar.extractfile("000000001.json"))["id"] == "synth/data/vid_00001.mp4"
    ds = ShardDataset(out, **_kw(), shuffle_buffer=4)
    ref = ManifestDataset(manifest, **_kw())
    got = list(ds)
    assert sorted(s["index"] for s in got) == list(range(N))
    for s in got:
        r = ref[s["index"]]
        for k in ("frames", "order", "bounds", "frame_times", "keep"):
            assert torch.equal(s[k], r[k]), k
        assert s["texts"] == r["texts"] and s["video_id"] == r["video_id"] and s["skipped"] == {}


def test_ranks_and_workers_cover_each_sample_once_in_stream_order(packed):
    _, out, _ = packed
    seen = []
    for rank in range(2):
        ds = ShardDataset(out, **_kw(), rank=rank, world_size=2, shuffle_buffer=3, block_size=2)
        ds.set_position(1)
        got = _positions(ds, workers=2, batch=2)
        assert [p for _, p in got] == list(range(len(got)))  # the loader delivers the rank's stream in order
        assert [i for i, _ in got] == [i for i, _ in ds.stream()]
        seen += [i for i, _ in got]
    assert sorted(seen) == list(range(N))


def test_same_seed_same_order_and_epochs_differ(packed):
    _, out, _ = packed
    orders = []
    for epoch in (0, 0, 1):
        ds = ShardDataset(out, **_kw(), shuffle_buffer=3)
        ds.set_position(epoch)
        orders.append([i for i, _ in ds.stream()])
    assert orders[0] == orders[1] and orders[0] != orders[2] and sorted(orders[2]) == list(range(N))


def test_resume_skips_exactly(packed):
    _, out, _ = packed
    ds = ShardDataset(out, **_kw(), shuffle_buffer=3, block_size=2)
    ds.set_position(2)
    full = _positions(ds, workers=2, batch=2)
    ds.set_position(2, start=3)
    resumed = _positions(ds, workers=2, batch=2)
    assert resumed == full[3:]


def test_reencode_to_short_side_and_fps(packed, tmp_path):
    manifest, _, _ = packed
    report = write_shards(manifest, tmp_path / "small", samples_per_shard=4, short_side=32, fps=2.0, progress=False)
    assert report["samples"] == N
    (index, data), *_ = list(_tar_samples(report["shards"][0]))
    with _memory_file(data) as path:
        info = probe(path)
    assert (info.width, info.height, info.fps) == (32, 32, 2.0)
    source = json.loads(manifest.read_text().splitlines()[index])
    assert abs(info.duration - source["duration"]) <= 0.5
    s = next(iter(ShardDataset(tmp_path / "small", **_kw(), shuffle_buffer=0)))
    assert s["frames"].shape == (2, 3, 16, 16) and 0 <= s["index"] < N


def test_shard_and_manifest_commands(packed, tmp_path, capsys):
    from tvts.data.cli_commands import build_parser

    manifest, _, _ = packed
    root = manifest.parent / "synth" / "yttemporal"
    out = tmp_path / "m.jsonl"
    split = root / "meta_data" / "yttemporal_val.csv"
    args = build_parser().parse_args(["data", "manifest", "yt", str(root), str(split), str(out)])
    assert args.func(args) == 0 and len(out.read_text().splitlines()) == 1
    args = build_parser().parse_args(["data", "shard", str(out), str(tmp_path / "s"), "--samples-per-shard", "5",
                                      "--short-side", "16", "--no-progress"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 1 records" in printed and "wrote 1 samples in 1 shards" in printed
    assert json.loads((tmp_path / "s" / "shards.json").read_text())["samples"] == 1


def test_unequal_shards_give_every_rank_the_same_length(packed, tmp_path):
    manifest, _, _ = packed
    write_shards(manifest, tmp_path / "s3", samples_per_shard=3, progress=False)  # shards of 3, 3, 2 samples
    for epoch in range(3):
        got = []
        for rank in range(2):
            ds = ShardDataset(tmp_path / "s3", **_kw(), rank=rank, world_size=2, shuffle_buffer=2)
            ds.set_position(epoch)
            got.append([i for i, _ in ds.stream()])
        assert len(got[0]) == len(got[1]) == len(ds) in (2, 3)  # ranks hold {3, 3} | {2} or {3, 2} | {3}
        assert not set(got[0]) & set(got[1])
