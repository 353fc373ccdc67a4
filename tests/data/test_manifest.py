"""The JSONL manifest: parsing, converters, compact storage, ManifestDataset = TranscriptVideoDataset."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch

from tvts.data.datasets import TranscriptVideoDataset
from tvts.data.samples import MaskSpec, collate
from tvts.data.manifest import (
    CAPTION,
    INVALID,
    TRANSCRIPT,
    ManifestDataset,
    ManifestRecords,
    load_manifest,
    manifest_from_webvid,
    manifest_from_yt,
    parse_record,
)
from tvts.data.synthetic import make_synthetic
from tvts.data.transforms import VideoTransform
from tvts.errors import ConfigError, SampleError


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    return make_synthetic(out, num_train=4, num_val=1, num_heldout=2, workers=1, progress=False)


def _kw(train=True):
    return dict(
        num_segments=4, segment_seconds=4.0, gap=1.0, num_frames=4, transform=VideoTransform(32, train=train),
        mask=MaskSpec("random", num_slots=2, num_patches=4, ratio=0.5), seed=3,
    )


def test_yt_manifest_gives_the_same_samples_as_the_yt_loader(synth, tmp_path):
    out = tmp_path / "sub" / "train.jsonl"
    report = manifest_from_yt(synth["yttemporal_root"], synth["train_csv"], out)
    assert report == {"written": 4, "skipped": {}, "skipped_files": []}
    first = json.loads(out.read_text().splitlines()[0])
    assert first["id"] == "synth/data/vid_00000.mp4" and not os.path.isabs(first["video"])
    assert isinstance(first["words"][0][0], str) and isinstance(first["words"][0][1], float)
    for train in (True, False):
        yt = TranscriptVideoDataset(synth["yttemporal_root"], synth["train_csv"], **_kw(train))
        man = ManifestDataset(out, **_kw(train))
        assert len(man) == len(yt) == 4
        for i in range(4):
            a, b = yt[i], man[i]
            assert a.keys() == b.keys()
            for k in ("frames", "order", "bounds", "frame_times", "keep"):
                assert torch.equal(a[k], b[k]), k
            assert a["texts"] == b["texts"] and a["video_id"] == b["video_id"] and b["skipped"] == {}
    batch = collate([man[0], man[1]])
    assert batch["frames"].shape == (2, 4, 3, 32, 32) and batch["order"].shape == (2, 4)


def test_webvid_csv_to_caption_samples(synth, tmp_path):
    clips = synth["heldout_videos"]
    names = sorted(os.listdir(clips))[:2]
    root = tmp_path / "webvid"
    for n in names:  # <root>/<page_dir>/<videoid>.mp4
        os.makedirs(root / "001", exist_ok=True)
        os.link(os.path.join(clips, n), root / "001" / n)
    csv_path = tmp_path / "results_2M_val.csv"
    rows = [f'{n[:-4]},https://x/{n},PT00H00M06S,001,"a clip, number {i}"' for i, n in enumerate(names)]
    csv_path.write_text("videoid,contentUrl,duration,page_dir,name\n" + "\n".join(rows) + "\n")
    out = tmp_path / "webvid.jsonl"
    assert manifest_from_webvid(csv_path, root, out) == {"written": 2}
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    assert recs[0] == {"id": names[0][:-4], "video": f"webvid/001/{names[0]}", "caption": "a clip, number 0",
                       "duration": 6.0}
    ds = ManifestDataset(out, **_kw(train=False))
    s = ds[1]
    assert s["texts"] == ["a clip, number 1"] and "order" not in s
    assert s["frames"].shape == (4, 3, 32, 32) and s["bounds"].shape == (1, 2)
    assert float(s["frame_times"].max()) < float(s["bounds"][0, 1])
    batch = collate([ds[0], s])
    assert batch["texts"] == [["a clip, number 0"], ["a clip, number 1"]] and "order" not in batch
    with pytest.raises(ConfigError, match="mixes"):
        collate([ds[0], {**ds[1], "order": torch.zeros(1, dtype=torch.long)}])
    bad = tmp_path / "bad.csv"
    bad.write_text("id,url\n1,x\n")
    with pytest.raises(ConfigError, match="page_dir"):
        manifest_from_webvid(bad, root, tmp_path / "x.jsonl")


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"\xff\xfe{}", "bad_annotation"),
        (b"[1, 2]", "bad_annotation"),
        (b'{"words": []}', "bad_annotation"),
        (b'{"video": "a.mp4"}', "bad_annotation"),
        (b'{"video": "a.mp4", "words": [], "caption": "x"}', "bad_annotation"),
        (b'{"video": "a.mp4", "words": [["a", "1"]]}', "bad_annotation"),
        (b'{"video": "a.mp4", "words": [], "duration": 0}', "zero_duration"),
        (b'{"video": "a.mp4", "caption": "  "}', "empty_caption"),
        (b'{"video": "a.mp4", "caption": "' + b"x" * 11 + b'"}', "caption_too_long"),
        (b'{"video": "a.mp4", "words": ' + json.dumps([["w", 1.0]] * 11).encode() + b"}", "transcript_too_long"),
    ],
)
def test_parse_record_reasons(line, reason):
    with pytest.raises(SampleError) as e:
        parse_record(line, "m.jsonl:1", max_words=10, max_caption_chars=10)
    assert e.value.reason == reason and e.value.path == "m.jsonl:1"


def test_parse_record_cleans_and_sorts_words():
    r = parse_record('{"video": "v.mp4", "words": [["b", 2.0], ["&amp;", 1.5], [" a ", 1.0]], "id": "x"}')
    assert r["words"] == ["a", "b"] and r["times"].tolist() == [1.0, 2.0] and r["id"] == "x"
    assert r["duration"] is None


def test_invalid_lines_become_invalid_records(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"video": "v.mp4", "caption": "ok"}\n\n\xff\n{"video": "w.mp4", "words": [["x", 0.5]]}\n')
    recs = load_manifest(path)
    assert recs.kind.tolist() == [CAPTION, INVALID, TRANSCRIPT]
    assert recs.invalid_reason(1)[0] == "bad_annotation" and recs.ids[1] == f"{path}:3"
    assert recs.video_path(2) == os.path.join(str(tmp_path), "w.mp4")
    t = recs.transcript(2, 3.0)
    assert t.words == ["x"] and t.times.tolist() == [0.5] and t.duration == 3.0
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="no records"):
        load_manifest(tmp_path / "empty.jsonl")


def _deep_size(obj) -> int:
    """Bytes of a nest of dicts/lists/str/float/ndarray, counting every Python object once."""
    seen, total, stack = set(), 0, [obj]
    while stack:
        o = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend(o)
    return total


def test_records_use_a_fixed_number_of_arrays():
    rng = np.random.default_rng(0)
    n = 100_000
    dicts = []
    for i in range(n):
        k = int(rng.integers(1, 6))
        dicts.append({"video": f"videos/{i:06d}.mp4", "id": f"{i:06d}", "duration": 30.0,
                      "words": [f"w{j}" for j in range(k)], "times": np.sort(rng.uniform(0, 30, k)).tolist()})
    recs = ManifestRecords(dicts, "/data")
    arrays = recs.arrays()
    # the in-memory structure is 12 numpy arrays whatever N is: nothing for forked workers to copy-on-read
    assert len(arrays) == 12 and all(isinstance(a, np.ndarray) for a in arrays)
    compact = sum(a.nbytes for a in arrays)
    as_dicts = _deep_size(dicts)
    assert compact * 4 < as_dicts, (compact, as_dicts)
    i = 54_321
    assert recs.videos[i] == dicts[i]["video"] and recs.ids[i] == dicts[i]["id"]
    t = recs.transcript(i, 30.0)
    assert t.words == dicts[i]["words"] and np.allclose(t.times, dicts[i]["times"])


def test_an_interrupted_manifest_write_leaves_the_old_file(tmp_path):
    from tvts.data.manifest import write_manifest

    out = tmp_path / "m.jsonl"
    assert write_manifest([{"id": "a", "video": "a.mp4", "caption": "x"}], out) == 1
    before = out.read_text()

    def records():
        yield {"id": "b", "video": "b.mp4", "caption": "y"}
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_manifest(records(), out, progress=True, total=2)
    assert out.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]
