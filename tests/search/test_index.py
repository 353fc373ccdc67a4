"""``tvts index``: windows, the same preprocessing as ``tvts extract``, incremental updates, resuming after a
crash, one model per index, bad files skipped and named."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tvts.data.decode import decode_frames, probe
from tvts.data.processor import VideoProcessor
from tvts.errors import ConfigError
from tvts.search.index import INDEX_FILE, failed_line, read_index, window_spans


@pytest.mark.parametrize("duration,window,stride", [(30.0, 4.0, 2.0), (21.3, 4.0, 2.0), (10.0, 3.0, 3.0), (2.5, 4.0, 2.0),
                                                    (9.0, 4.0, 1.5), (4.0, 4.0, 2.0)])
def test_windows_cover_the_video_and_have_the_window_length(duration, window, stride):
    spans = np.array(window_spans(duration, window, stride))
    assert spans[0, 0] == 0 and spans[-1, 1] == pytest.approx(duration)
    assert np.allclose(spans[:, 1] - spans[:, 0], min(window, duration))
    starts = spans[:-1, 0]
    assert np.allclose(np.diff(starts), stride) if len(starts) > 1 else True
    assert np.all(np.diff(spans[:, 0]) > 0)  # no window twice
    assert np.all(spans[1:, 0] <= spans[:-1, 1] + 1e-9)  # no gap between windows (stride <= window)
    with pytest.raises(ConfigError):
        window_spans(duration, 0.0, stride)


def test_index_rows_are_the_model_on_each_window_and_the_clip_as_extract_sees_it(tiny_model, narrated, small_index,
                                                                                   tmp_path):
    from tvts.eval.extract import extract_features

    model, model_dir = tiny_model
    idx = read_index(small_index)
    names = sorted(narrated["events"])
    assert [r["video"] for r in idx.videos] == names
    assert idx.windows.shape == (sum(r["windows"] for r in idx.videos), model.config.embed_dim)
    assert torch.allclose(idx.windows.norm(dim=1), torch.ones(len(idx.windows)), atol=1e-5)

    # The whole-clip row is exactly what `tvts extract` (one clip, one crop) gives, normalised.
    paths = [str(narrated["dir"] / n) for n in names]
    proc = VideoProcessor.from_pretrained(model_dir)
    f = extract_features(model, paths, names, tmp_path / "f.safetensors", model_dir=model_dir, processor=proc,
                         progress=False)
    assert f.ids == names
    assert torch.allclose(idx.clips, f.pooled(), atol=1e-5)

    # A few window rows recomputed by hand: decode the window's TSN times, preprocess, encode, normalise.
    g = torch.Generator().manual_seed(0)
    for row in torch.randint(len(idx.windows), (5,), generator=g).tolist():
        vid = idx.videos[int(idx.window_video[row])]
        start, end = idx.window_span[row].tolist()
        assert end - start == pytest.approx(min(4.0, vid["duration"]))
        frames = decode_frames(narrated["dir"] / vid["video"], proc.times(start, end))
        with torch.no_grad():
            want = F.normalize(model.encode_video(proc(frames)).float(), dim=-1)[0]
        assert torch.allclose(idx.windows[row], want, atol=1e-5), row
    assert idx.videos[0]["duration"] == pytest.approx(probe(paths[0]).duration)
    # one thumbnail per window, a JPEG
    for v_i, rec in enumerate(idx.videos):
        thumbs = sorted((small_index / "thumbs" / rec["key"]).glob("*.jpg"))
        assert len(thumbs) == rec["windows"]
        assert thumbs[0].read_bytes()[:2] == b"\xff\xd8"
    assert (small_index / "windows.csv").read_text().count("\n") == len(idx.windows) + 1


def _same_index(a, b):
    ia, ib = read_index(a), read_index(b)
    assert [r["video"] for r in ia.videos] == [r["video"] for r in ib.videos]
    assert torch.equal(ia.window_video, ib.window_video) and torch.equal(ia.window_span, ib.window_span)
    assert torch.allclose(ia.windows, ib.windows, atol=1e-6) and torch.allclose(ia.clips, ib.clips, atol=1e-6)


def test_update_embeds_new_and_changed_files_drops_removed_ones_and_equals_a_fresh_build(narrated, build, copy_videos,
                                                                                          tmp_path):
    names = sorted(narrated["events"])
    videos = copy_videos(narrated["dir"], tmp_path / "videos", names[:3])
    out = tmp_path / "index"
    first = build(videos, out)
    assert (first["videos"], first["embedded"], first["reused"], first["removed"]) == (3, 3, 0, 0)
    old_keys = {r["video"]: r["key"] for r in read_index(out).videos}

    shutil.copy2(narrated["dir"] / names[3], videos / names[3])             # new
    shutil.copyfile(narrated["dir"] / names[4], videos / names[1])          # changed content under an old name
    os.utime(videos / names[1], ns=(10**18, 10**18))
    (videos / names[2]).unlink()                                             # removed
    seen = []
    res = build(videos, out, on_video=seen.append)
    assert sorted(seen) == sorted([names[1], names[3]])
    assert (res["videos"], res["embedded"], res["reused"], res["changed"], res["removed"]) == (3, 2, 1, 1, 1)
    idx = read_index(out)
    assert [r["video"] for r in idx.videos] == sorted([names[0], names[1], names[3]])
    keys = {r["video"]: r["key"] for r in idx.videos}
    assert keys[names[0]] == old_keys[names[0]] and keys[names[1]] != old_keys[names[1]]
    assert {d.name for d in (out / "thumbs").iterdir()} == set(keys.values())  # old thumbnails gone
    assert not (out / "parts").exists()

    fresh = tmp_path / "fresh"
    build(videos, fresh)
    _same_index(out, fresh)

    again = build(videos, out, on_video=seen.append)  # nothing changed: nothing embedded
    assert (again["embedded"], again["reused"]) == (0, 3) and len(seen) == 2


def test_a_crash_mid_update_leaves_the_old_index_and_the_rerun_resumes(narrated, build, copy_videos, tmp_path):
    names = sorted(narrated["events"])
    videos = copy_videos(narrated["dir"], tmp_path / "videos", names[:2])
    out = tmp_path / "index"
    build(videos, out)
    before = (out / INDEX_FILE).read_bytes()
    for n in names[2:5]:
        shutil.copy2(narrated["dir"] / n, videos / n)

    def crash(name):
        raise KeyboardInterrupt(f"killed after {name}")

    with pytest.raises(KeyboardInterrupt):
        build(videos, out, on_video=crash)
    assert (out / INDEX_FILE).read_bytes() == before  # the old index is untouched and loads
    assert len(read_index(out).videos) == 2
    assert len(list((out / "parts").glob("*.safetensors"))) == 1  # the finished video is kept
    seen = []
    res = build(videos, out, on_video=seen.append)
    assert len(seen) == 2 and (res["embedded"], res["reused"], res["videos"]) == (2, 3, 5)
    fresh = tmp_path / "fresh"
    build(videos, fresh)
    _same_index(out, fresh)


def test_decoding_workers_and_the_time_limit_give_the_same_index(narrated, build, copy_videos, tmp_path):
    videos = copy_videos(narrated["dir"], tmp_path / "videos", sorted(narrated["events"])[:2])
    build(videos, tmp_path / "plain")
    res = build(videos, tmp_path / "workers", workers=2, timeout=60.0, batch_size=3)  # chunks of 3 windows
    assert res["failed"] == [] and res["videos"] == 2
    _same_index(tmp_path / "plain", tmp_path / "workers")
    assert sorted(p.name for p in (tmp_path / "plain" / "thumbs").rglob("*.jpg")) == \
           sorted(p.name for p in (tmp_path / "workers" / "thumbs").rglob("*.jpg"))


def test_one_index_holds_one_model_and_one_preprocessing(narrated, build, copy_videos, tmp_path, tiny_model):
    import copy

    from tvts.search.index import build_index

    videos = copy_videos(narrated["dir"], tmp_path / "videos", sorted(narrated["events"])[:1])
    out = tmp_path / "index"
    build(videos, out)
    model, model_dir = tiny_model
    other = copy.deepcopy(model)  # same architecture and name, other weights
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    proc = VideoProcessor(num_frames=4, size=16)
    with pytest.raises(ConfigError, match="one index holds one model") as e:
        build_index(other, videos, out, model_dir=model_dir, processor=proc, workers=0, progress=False)
    assert "index.json" in str(e.value) and "model" in str(e.value)
    with pytest.raises(ConfigError, match="window"):
        build(videos, out, window=6.0)
    with pytest.raises(ConfigError, match="root"):
        build(copy_videos(narrated["dir"], tmp_path / "elsewhere", []), out)


def test_bad_files_are_skipped_counted_and_named(narrated, build, copy_videos, tmp_path):
    names = sorted(narrated["events"])
    videos = copy_videos(narrated["dir"], tmp_path / "videos", names[:2])
    (videos / "broken.mp4").write_bytes(b"not a video at all" * 100)
    outside = tmp_path / "outside.mp4"
    shutil.copy2(narrated["dir"] / names[2], outside)
    (videos / "link_out.mp4").symlink_to(outside)
    res = build(videos, tmp_path / "index")
    assert res["videos"] == 2
    reasons = {f["video"]: f["reason"] for f in res["failed"]}
    assert reasons == {"broken.mp4": "unreadable", "link_out.mp4": "outside_root"}
    line = failed_line(res["failed"])
    assert "\n" not in line and line.startswith("2 video") and "broken.mp4" in line and "link_out.mp4" in line
    assert [r["video"] for r in read_index(tmp_path / "index").videos] == names[:2]


def test_not_an_index_is_one_clear_error(tmp_path, small_index):
    with pytest.raises(ConfigError, match="no search index"):
        read_index(tmp_path)
    cut = tmp_path / "cut"
    cut.mkdir()
    data = (small_index / INDEX_FILE).read_bytes()
    (cut / INDEX_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="cannot read the index") as e:
        read_index(cut)
    assert str(cut / INDEX_FILE) in str(e.value) and "\n" not in str(e.value)
