"""Tests of the "narrated shapes" generator (tvts.data.synthetic), on a tiny dataset."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tvts.data import synthetic as S

SMALL = dict(num_train=6, num_val=2, num_heldout=16, size=64, fps=4.0, workers=2, progress=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ds"
    summary = S.make_synthetic(out, seed=0, **SMALL)
    return out, summary


def _names(csv_path) -> list[str]:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [r["Name"] for r in rows]


def _annotation_path(yt_root: Path, name: str) -> Path:
    first, base = name.split("/")[0], os.path.basename(name)
    return yt_root / "videos" / first / "annotations" / (os.path.splitext(base)[0] + ".json")


def _narrated(out: Path):
    """(video path, annotation dict) of every train and val video."""
    yt = out / "yttemporal"
    names = _names(yt / "meta_data" / "yttemporal_train.csv") + _names(yt / "meta_data" / "yttemporal_val.csv")
    return [(yt / "videos" / n, json.loads(_annotation_path(yt, n).read_text())) for n in names]


def _decode(path) -> tuple[list[np.ndarray], float, int]:
    """Frames (uint8 [H, W, 3]), the stream's frame rate and the number of keyframes."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames, keys = [], 0
        for frame in c.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            keys += frame.key_frame
        return frames, float(stream.average_rate), keys


def _mask(frame: np.ndarray, colour: str) -> np.ndarray:
    rgb = np.asarray(S.COLOURS[colour], dtype=np.float64)
    return np.linalg.norm(frame.astype(np.float64) - rgb, axis=-1) < 60


def _eye_angle(frame: np.ndarray, colour: str, state: dict) -> float:
    """Screen angle (radians, clockwise from "up") of the dark pixels near a shape's centre: its eye.

    Within 0.6 radius of the centre every kind is painted, so darkness there is the eye (weighted
    softly, as H.264 blurs a dot of a few pixels)."""
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    dx, dy = xx - state["x"], yy - state["y"]
    near = np.hypot(dx, dy) < 0.6 * state["radius"]
    brightness = frame.astype(np.float64).sum(-1) / sum(S.COLOURS[colour])
    dark = np.clip(1.0 - brightness, 0.0, 1.0) * near
    return math.atan2((dark * dx).sum(), -(dark * dy).sum())


def test_summary_and_counts(dataset):
    out, summary = dataset
    assert summary["cached"] is False
    assert summary["classes"] == list(S.ACTIONS)
    assert (summary["num_train"], summary["num_val"], summary["num_heldout"]) == (6, 2, 16)
    assert summary["video_bytes"] > 0
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["version"] == S.VERSION and meta["seed"] == 0
    assert meta["params"]["num_train"] == 6 and meta["params"]["fps"] == 4.0
    for key in ("train_csv", "val_csv", "msrvtt_json", "msrvtt_test_csv", "ucf_class_ind", "ucf_trainlist",
                "ucf_testlist"):
        assert Path(summary[key]).is_file(), key


def test_narrated_videos_decode(dataset):
    out, _ = dataset
    videos = _narrated(out)
    assert len(videos) == 8
    for path, ann in videos:
        info = ann["info"]
        assert (info["width"], info["height"], info["fps"]) == (64, 64, 4.0)
        frames, rate, keys = _decode(path)
        assert frames[0].shape == (64, 64, 3)
        assert rate == pytest.approx(4.0)
        assert len(frames) == round(info["duration"] * info["fps"])
        assert keys >= info["duration"] / 2.0  # a keyframe at least every 2 s
        # the background is dark: most pixels are far from every shape colour
        assert np.mean(frames[0].max(axis=-1) < 90) > 0.3


def test_annotation_structure(dataset):
    out, _ = dataset
    for _, ann in _narrated(out):
        events, shapes = ann["events"], ann["shapes"]
        assert S.NUM_EVENTS[0] <= len(events) <= S.NUM_EVENTS[1]
        assert ann["info"]["duration"] == len(events) * S.EVENT_SECONDS
        assert len(ann["denoised"]) == len(events)
        assert 2 <= len(shapes) <= 3
        assert len({s["shape"] for s in shapes}) == len(shapes)
        assert len({s["colour"] for s in shapes}) == len(shapes)
        state = {(s["shape"], s["colour"]): s for s in shapes}
        for e, ev in enumerate(events):
            assert (ev["start"], ev["end"]) == (e * S.EVENT_SECONDS, (e + 1) * S.EVENT_SECONDS)
            assert ev["action"] in S.ACTIONS
            assert ev["caption"] == f"the {ev['colour']} {ev['shape']} {S.CAPTIONS[ev['action']]}"
            key = (ev["shape"], ev["colour"])
            before, after = ev["before"], ev["after"]
            assert before == {k: state[key][k] for k in before}  # events chain from the initial scene
            if ev["action"].startswith("Rotate"):
                assert ev["shape"] != "circle"
                turn = (after["angle"] - before["angle"]) % 360
                assert turn == pytest.approx(90 if ev["action"] == "RotateClockwise" else 270, abs=0.02)
            if ev["action"] in ("Grow", "Shrink"):
                ratio = after["radius"] / before["radius"]
                assert ratio == pytest.approx(S.GROWTH if ev["action"] == "Grow" else 1 / S.GROWTH, rel=0.01)
            moves = {"MoveLeft": ("x", -1), "MoveRight": ("x", 1), "MoveUp": ("y", -1), "MoveDown": ("y", 1)}
            if ev["action"] in moves:
                axis, sign = moves[ev["action"]]
                other = "y" if axis == "x" else "x"
                assert (after[axis] - before[axis]) % 64 == pytest.approx((sign * S.MOVE_FRACTION * 64) % 64, abs=0.02)
                assert after[other] == before[other]
            radii = [round(level * 64, 2) for level in S.SIZE_LEVELS]
            assert after["radius"] in radii
            state[key] = {**state[key], **after}


def test_subtitles_follow_events(dataset):
    out, _ = dataset
    for _, ann in _narrated(out):
        subs = ann["subtitles"]
        times = [w["time"] for w in subs]
        assert times == sorted(times)
        assert times[0] >= 0 and times[-1] <= ann["info"]["duration"] + 1.0
        assert all(isinstance(w["word"], str) and w["word"] for w in subs)
        for ev, clean in zip(ann["events"], ann["denoised"]):
            spoken = [w["word"] for w in subs if ev["start"] <= w["time"] < ev["end"]]
            assert len(spoken) >= 2  # at least 4 words, at most 1 dropped ("the") and 2 spilled
            assert ev["colour"] in clean["cleanasr"] and ev["shape"] in clean["cleanasr"]
            assert ev["colour"] in spoken or ev["shape"] in spoken


def _others_apart(ann: dict, e: int, own: float = 1.4) -> bool:
    """Whether, from the start to the end of event ``e``, no other shape comes within ``own`` radii of the acting
    one's centre (every shape is drawn in colour, in a fixed order, so a neighbour can cover part of the actor)."""
    state = {(s["shape"], s["colour"]): s for s in ann["shapes"]}
    for ev in ann["events"][:e]:
        state[(ev["shape"], ev["colour"])] = {**state[(ev["shape"], ev["colour"])], **ev["after"]}
    ev = ann["events"][e]
    b, a = ev["before"], ev["after"]
    path = [b, a] + [{"x": b["x"] + u * ((a["x"] - b["x"] + 32) % 64 - 32), "y": b["y"] + u * ((a["y"] - b["y"] + 32) % 64 - 32),
                      "radius": a["radius"]} for u in (0.25, 0.5, 0.75)]
    for key, other in state.items():
        if key == (ev["shape"], ev["colour"]):
            continue
        for mine in path:
            dx, dy = abs(mine["x"] - other["x"]) % 64, abs(mine["y"] - other["y"]) % 64
            if np.hypot(min(dx, 64 - dx), min(dy, 64 - dy)) < own * mine["radius"] + 1.4 * other["radius"]:
                return False
    return True


def test_motion_visible_in_decoded_frames(tmp_path):
    """Moves shift the acting shape's colour mask the right way, Grow/Shrink change its area and
    rotations turn its eye (the black orientation dot) the right way (on 16 videos, the events whose actor
    no other shape comes near)."""
    out = tmp_path / "more"
    S.make_synthetic(out, seed=0, num_train=16, num_val=0, num_heldout=0, progress=False)
    checked = {"move": 0, "size": 0, "rotate": 0}
    directions = {"MoveLeft": (-1, 0), "MoveRight": (1, 0), "MoveUp": (0, -1), "MoveDown": (0, 1)}
    step = S.MOVE_FRACTION * 64
    for path, ann in _narrated(out):
        frames, _, _ = _decode(path)
        for e, ev in enumerate(ann["events"]):
            # a rotation is read off the eye, within 0.6 radii of the centre
            if not _others_apart(ann, e, 0.7 if ev["action"].startswith("Rotate") else 1.4):
                continue
            first, last = frames[round(ev["start"] * 4)], frames[round(ev["end"] * 4) - 1]
            m0, m1 = _mask(first, ev["colour"]), _mask(last, ev["colour"])
            if ev["action"] in directions:
                dx, dy = directions[ev["action"]]
                b = ev["before"]
                target = (b["x"] + dx * step, b["y"] + dy * step)
                ext = 1.4 * b["radius"]
                if not all(ext <= v <= 64 - ext for v in (b["x"], b["y"], *target)):
                    continue  # the move wraps around an edge
                ys0, xs0 = np.nonzero(m0)
                ys1, xs1 = np.nonzero(m1)
                shift = np.array([xs1.mean() - xs0.mean(), ys1.mean() - ys0.mean()])
                along = shift @ np.array([dx, dy])
                across = abs(shift @ np.array([dy, dx]))
                assert along > 0.7 * step, (path, ev, shift)
                assert across < 0.25 * step, (path, ev, shift)
                checked["move"] += 1
            elif ev["action"] in ("Grow", "Shrink"):
                # the area grows by GROWTH^2 = 2.56 (a small shape's blurred edge and eye take some of it)
                ratio = m1.sum() / max(m0.sum(), 1)
                if ev["action"] == "Grow":
                    assert ratio > 1.5, (path, ev, ratio)
                else:
                    assert ratio < 1 / 1.5, (path, ev, ratio)
                checked["size"] += 1
            elif ev["action"].startswith("Rotate"):
                b = ev["before"]
                if b["radius"] < 7 or not all(b["radius"] <= v <= 64 - b["radius"] for v in (b["x"], b["y"])):
                    continue  # too small to see the eye, or wrapping around an edge
                turn = math.degrees(_eye_angle(last, ev["colour"], b) - _eye_angle(first, ev["colour"], b))
                turn = (turn + 180) % 360 - 180
                expected = 90 if ev["action"] == "RotateClockwise" else -90
                assert abs(turn - expected) < 20, (path, ev, turn)
                checked["rotate"] += 1
    assert checked["move"] >= 3 and checked["size"] >= 2 and checked["rotate"] >= 2, checked


def test_determinism(dataset, tmp_path):
    out, _ = dataset
    again = tmp_path / "again"
    S.make_synthetic(again, seed=0, **{**SMALL, "workers": 1})  # worker count must not matter
    ann_dir = Path("yttemporal/videos/synth/annotations")
    files = sorted(p.name for p in (out / ann_dir).iterdir())
    assert files == sorted(p.name for p in (again / ann_dir).iterdir())
    for name in files:
        assert (out / ann_dir / name).read_bytes() == (again / ann_dir / name).read_bytes()
    for rel in ("heldout/msrvtt/MSRVTT_data.json", "heldout/ucf/trainlist01.txt",
                "yttemporal/meta_data/yttemporal_train.csv"):
        assert (out / rel).read_bytes() == (again / rel).read_bytes()
    # Every video, decoded, is pixel for pixel the same whether a pool's worker or this process encoded it.
    videos = sorted(p.relative_to(out) for p in out.rglob("*.mp4"))
    assert len(videos) == SMALL["num_train"] + SMALL["num_val"] + 2 * SMALL["num_heldout"]  # + the UCF links
    for rel in videos:
        a, _, _ = _decode(out / rel)
        b, _, _ = _decode(again / rel)
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), rel

    other = tmp_path / "other"
    S.make_synthetic(other, seed=1, **{**SMALL, "num_heldout": 0})
    differ = [(out / ann_dir / n).read_bytes() != (other / ann_dir / n).read_bytes() for n in files]
    assert all(differ)


def test_coding_is_lossless(tmp_path):
    """The decoded planes are exactly the yuv420p of the drawn pictures (so no encoder decision can change a
    pixel), and a flat colour comes back as that colour up to the rounding of the colour conversion."""
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(9)]
    colours = list(S.COLOURS.values())
    pictures += [Image.new("RGB", (64, 64), tuple(c)) for c in colours]
    S._write_mp4(tmp_path / "v.mp4", iter(pictures), 64, 4.0)
    with av.open(str(tmp_path / "v.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == len(pictures)
    for frame, picture in zip(frames, pictures):
        assert np.array_equal(frame.to_ndarray(format="yuv420p"), S.yuv420p(np.asarray(picture)))
    for frame, colour in zip(frames[9:], colours):
        rgb = frame.to_ndarray(format="rgb24").reshape(-1, 3).astype(int)
        assert np.abs(rgb - np.asarray(colour)).max() <= 3, colour


def test_layout_files(dataset):
    out, _ = dataset
    yt = out / "yttemporal"
    with open(yt / "meta_data" / "yttemporal_train.csv") as f:
        assert f.readline() == "Name\n"
    train = _names(yt / "meta_data" / "yttemporal_train.csv")
    val = _names(yt / "meta_data" / "yttemporal_val.csv")
    assert train == [f"synth/data/vid_{i:05d}.mp4" for i in range(6)]
    assert val == ["synth/data/vid_00006.mp4", "synth/data/vid_00007.mp4"]
    for name in train + val:
        assert (yt / "videos" / name).is_file() and _annotation_path(yt, name).is_file()

    held = out / "heldout"
    data = json.loads((held / "msrvtt" / "MSRVTT_data.json").read_text())
    videos = {v["video_id"]: v for v in data["videos"]}
    assert sorted(videos) == sorted(f"video{i}" for i in range(16))
    assert len(data["sentences"]) == 32
    assert [s["sen_id"] for s in data["sentences"]] == list(range(32))
    for s in data["sentences"]:
        v = videos[s["video_id"]]
        assert v["colour"] in s["caption"] and v["shape"] in s["caption"]
    for vid, v in videos.items():
        assert v["action"] == S.ACTIONS[v["category"]] == S.ACTIONS[int(vid[5:]) % 8]
        assert (held / "videos" / "all" / f"{vid}.mp4").is_file()
        captions = [s["caption"] for s in data["sentences"] if s["video_id"] == vid]
        assert captions[0] == f"the {v['colour']} {v['shape']} {S.CAPTIONS[v['action']]}"
        assert len(set(captions)) == 2
    for action in S.ACTIONS:  # class-balanced halves
        splits = [v["split"] for v in videos.values() if v["action"] == action]
        assert sorted(splits) == ["test", "train"]

    with open(held / "msrvtt" / "MSRVTT_JSFUSION_test.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["key", "vid_key", "video_id", "sentence"]
    tests = [v for v in data["videos"] if v["split"] == "test"]
    assert [r["video_id"] for r in rows] == [v["video_id"] for v in tests]
    first = {}
    for s in data["sentences"]:
        first.setdefault(s["video_id"], s["caption"])
    assert all(r["sentence"] == first[r["video_id"]] for r in rows)

    ucf = held / "ucf"
    class_ind = (ucf / "classInd.txt").read_text().splitlines()
    assert class_ind == [f"{k + 1} {a}" for k, a in enumerate(S.ACTIONS)]
    trainlist = (ucf / "trainlist01.txt").read_text().splitlines()
    testlist = (ucf / "testlist01.txt").read_text().splitlines()
    assert len(trainlist) == len(testlist) == 8
    assert len(set(trainlist + testlist)) == 16
    for lines in (trainlist, testlist):  # sorted by class, like UCF-101's lists
        order = [S.ACTIONS.index(line.split("/")[0]) for line in lines]
        assert order == sorted(order)
    for line in trainlist:
        rel, label = line.split(" ")
        cls = rel.split("/")[0]
        assert S.ACTIONS[int(label) - 1] == cls
        assert os.path.basename(rel).startswith(f"v_{cls}_g")
        assert (ucf / "videos" / rel).is_file()
    for rel in testlist:
        assert " " not in rel and (ucf / "videos" / rel).is_file()
    for vid, v in videos.items():  # the UCF files are the same clips (hard links or copies)
        a, b = ucf / "videos" / v["ucf_path"], held / "videos" / "all" / f"{vid}.mp4"
        assert os.path.samefile(a, b) or a.read_bytes() == b.read_bytes()


def test_heldout_clips_decode(dataset):
    out, _ = dataset
    data = json.loads((out / "heldout" / "msrvtt" / "MSRVTT_data.json").read_text())
    for v in data["videos"]:
        frames, rate, _ = _decode(out / "heldout" / "videos" / "all" / f"{v['video_id']}.mp4")
        assert frames[0].shape == (64, 64, 3) and rate == pytest.approx(4.0)
        assert len(frames) == round(v["duration"] * 4)
        assert v["event_end"] - v["event_start"] == S.EVENT_SECONDS
        assert 0 <= v["event_start"] <= 0.5 and v["duration"] - v["event_end"] <= 0.5
        # no spotlight: the named shape shows its colour before, during and after its event
        middle = frames[int((v["event_start"] + v["event_end"]) / 2 * 4)]
        assert _mask(middle, v["colour"]).sum() > 10
        assert _mask(frames[0], v["colour"]).sum() > 10 and _mask(frames[-1], v["colour"]).sum() > 10


def _level(radius: float) -> int:
    return [round(level * 64, 2) for level in S.SIZE_LEVELS].index(radius)


def test_pairs_replay_the_opposite_directions(dataset):
    """Narrated videos 2j and 2j + 1 share one scene and the actors and times of their events; each action of
    the second is the opposite of the first's (sizes mirrored so that every Grow/Shrink stays feasible), and
    each video's narration is drawn on its own."""
    out, _ = dataset
    videos = _narrated(out)  # 6 train then 2 val videos: 4 pairs
    top = len(S.SIZE_LEVELS) - 1
    for (_, a), (_, b) in zip(videos[0::2], videos[1::2]):
        for sa, sb in zip(a["shapes"], b["shapes"], strict=True):
            assert [sa[k] for k in ("shape", "colour", "x", "y", "angle")] == [sb[k] for k in ("shape", "colour", "x", "y", "angle")]
            assert _level(sa["radius"]) + _level(sb["radius"]) == top
        assert [(e["shape"], e["colour"], e["start"], e["end"]) for e in a["events"]] == \
               [(e["shape"], e["colour"], e["start"], e["end"]) for e in b["events"]]
        assert [S.OPPOSITE[e["action"]] for e in a["events"]] == [e["action"] for e in b["events"]]
        assert [w["word"] for w in a["subtitles"]] != [w["word"] for w in b["subtitles"]]
    assert all(S.OPPOSITE[S.OPPOSITE[a]] == a != S.OPPOSITE[a] for a in S.ACTIONS)


def test_scene_groups_share_the_scene_and_not_the_events(tmp_path):
    """scene_group=4: the two direction pairs of a group start from one scene and draw their own events."""
    out = tmp_path / "groups"
    S.make_synthetic(out, seed=0, num_train=8, num_val=0, num_heldout=0, scene_group=4, progress=False)
    videos = [ann for _, ann in _narrated(out)]
    for g in (0, 4):
        a, b = videos[g], videos[g + 2]
        assert a["shapes"] == b["shapes"]
        assert [(e["colour"], e["action"]) for e in a["events"]] != [(e["colour"], e["action"]) for e in b["events"]]
        for first, second in ((a, videos[g + 1]), (b, videos[g + 3])):
            assert [S.OPPOSITE[e["action"]] for e in first["events"]] == [e["action"] for e in second["events"]]
    assert videos[0]["shapes"] != videos[4]["shapes"]  # another group, another scene
    with pytest.raises(ValueError):
        S.make_synthetic(tmp_path / "odd", num_train=3, num_val=0, num_heldout=0, scene_group=3, progress=False)


def _colour_visible(frames: list[np.ndarray], colour: str) -> np.ndarray:
    """bool [T]: whether at least 6 pixels show ``colour`` in each frame."""
    return np.array([_mask(f, colour).sum() > 5 for f in frames])


def test_no_colour_cue_without_the_spotlight(dataset, tmp_path):
    """The shortcut control: without the spotlight the colours on screen do not change with time, so no
    single frame tells which shape acts (every shape of the scene shows its colour in almost every frame:
    another shape may cover it for a moment). With the spotlight (version 2's look) a shape shows its colour
    only while it acts, i.e. a still frame names the actor."""
    out, _ = dataset
    for path, ann in _narrated(out):
        frames, _, _ = _decode(path)
        for shape in ann["shapes"]:
            assert _colour_visible(frames, shape["colour"]).mean() > 0.9, (path, shape)
    lit = tmp_path / "lit"
    S.make_synthetic(lit, seed=0, num_train=2, num_val=0, num_heldout=0, spotlight=True, progress=False)
    for path, ann in _narrated(lit):
        frames, _, _ = _decode(path)
        for shape in ann["shapes"]:
            acting = np.zeros(len(frames), dtype=bool)
            for ev in ann["events"]:
                if (ev["shape"], ev["colour"]) == (shape["shape"], shape["colour"]):
                    acting[round(ev["start"] * 4):round(ev["end"] * 4)] = True
            visible = _colour_visible(frames, shape["colour"])
            # one frame of slack at each edge of an event (H.264 blurs a colour change across it)
            near = acting | np.roll(acting, 1) | np.roll(acting, -1)
            assert not np.any(visible & ~near), (path, shape)
            assert visible[acting].mean() > 0.9


def test_cache(dataset):
    out, _ = dataset
    marker = out / "dataset.json"
    before = marker.stat().st_mtime_ns, (out / "yttemporal/videos/synth/data/vid_00000.mp4").stat().st_mtime_ns
    t0 = time.perf_counter()
    summary = S.make_synthetic(out, seed=0, **SMALL)
    assert time.perf_counter() - t0 < 1.0
    assert summary["cached"] is True and summary["num_train"] == 6
    after = marker.stat().st_mtime_ns, (out / "yttemporal/videos/synth/data/vid_00000.mp4").stat().st_mtime_ns
    assert before == after


def test_cache_invalidated_by_new_parameters(tmp_path):
    out = tmp_path / "ds"
    S.make_synthetic(out, seed=0, num_train=2, num_val=1, num_heldout=8, progress=False)
    summary = S.make_synthetic(out, seed=0, num_train=3, num_val=1, num_heldout=0, progress=False)
    assert summary["cached"] is False
    assert len(_names(out / "yttemporal/meta_data/yttemporal_train.csv")) == 3
    assert not list((out / "heldout" / "videos" / "all").iterdir())  # stale clips are gone
    assert json.loads((out / "dataset.json").read_text())["params"]["num_train"] == 3


def test_narration_noise_statistics():
    """Noise is present but keeps the shape and action words: checked on many generated events."""
    rng = np.random.default_rng(0)
    events = []
    for e in range(2000):
        events.append({"start": 5.0 * e, "end": 5.0 * e + 5.0, "action": S.ACTIONS[e % 8],
                       "shape": S.SHAPES[e % 5], "colour": list(S.COLOURS)[e % 8]})
    subtitles, denoised = S._narration(rng, events)
    assert len(denoised) == len(events)
    times = np.array([w["time"] for w in subtitles])
    assert np.all(np.diff(times) >= 0)
    intact = 0
    for ev in events:
        lo, hi = np.searchsorted(times, [ev["start"], ev["end"]])
        inside = [w["word"] for w in subtitles[lo:hi]]
        intact += ev["colour"] in inside and ev["shape"] in inside
    assert intact / len(events) > 0.95
    clean_words = sum(len(d["cleanasr"].split()) for d in denoised)
    fillers = sum(w["word"] in S._FILLERS for w in subtitles)
    assert 0.15 < fillers / len(events) < 0.5
    assert len(subtitles) != clean_words  # drops and fillers change the word count


def test_word_times_spill_rarely():
    rng = np.random.default_rng(0)
    runs = [S._word_times(rng, 8, 10.0, 15.0, earliest=0.0) for _ in range(2000)]
    assert all(r == sorted(r) and r[0] >= 10.0 for r in runs)
    spilled = [r for r in runs if r[-1] >= 15.0]
    assert 0.05 < len(spilled) / len(runs) < 0.15
    assert all(r[-3] < 15.0 and r[-1] < 15.8 for r in spilled)  # at most 2 words, shortly after the end
    assert all(r[-1] < 15.0 for r in runs if r not in spilled)


def test_training_samples_carry_captions_with_noun_phrases(dataset):
    """The caption-level objectives (CPD, S-ViLM) read each clip's event captions: colour + shape nouns."""
    from tvts.data.datasets import TranscriptVideoDataset
    from tvts.data.transforms import VideoTransform

    out, _ = dataset
    yt = out / "yttemporal"
    ds = TranscriptVideoDataset(yt, yt / "meta_data" / "yttemporal_train.csv", num_segments=2, segment_seconds=4.0,
                                num_frames=4, transform=VideoTransform(32, train=False), train=False)
    for i in range(len(ds)):
        sample = ds[i]
        start, end = float(sample["bounds"][0, 0]), float(sample["bounds"][-1, 1])
        events = json.loads(_annotation_path(yt, ds.names[i]).read_text())["events"]
        # Direct computation: the events lying mostly inside the clip's span, in time order.
        inside = [e["caption"] for e in events if min(e["end"], end) - max(e["start"], start) > 0.5 * (e["end"] - e["start"])]
        assert inside, "a 9 s clip always holds most of some 5 s event"
        assert sample["caption"] == ", then ".join(inside)
        for part in inside:
            words = part.split()
            assert words[0] == "the" and words[1] in S.COLOURS and words[2] in S.SHAPES
