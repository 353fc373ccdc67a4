import numpy as np
import pytest

from tvts.data.decode import VideoInfo, decode_all, decode_frames, probe
from tvts.errors import SampleError

FPS = 10
N = 30  # frames 0..29, frame i shown during [i / 10, (i + 1) / 10)


@pytest.fixture(scope="module")
def indexed_video(tmp_path_factory, make_video, gray_code):
    path = tmp_path_factory.mktemp("decode") / "indexed.mp4"
    # keyframe every 5 frames, so that requests after the start exercise the backward seek
    return make_video(path, gray_code.frames(N, 48, 64), FPS, gop=5)


def _expected(times):
    return np.clip(np.floor(np.asarray(times) * FPS + 1e-9), 0, N - 1).astype(int)


def test_probe(indexed_video):
    info = probe(indexed_video)
    assert isinstance(info, VideoInfo)
    assert info.duration == pytest.approx(3.0)
    assert info.fps == pytest.approx(10.0)
    assert info.num_frames == N
    assert (info.width, info.height) == (64, 48)


def test_decode_frames_picks_last_frame_at_or_before_t(indexed_video, gray_code):
    times = [0.0, 0.05, 0.0999, 0.1, 1.25, 1.3, 2.0, 2.95]
    frames = decode_frames(indexed_video, times)
    assert frames.dtype == np.uint8 and frames.shape == (len(times), 48, 64, 3)
    np.testing.assert_array_equal(gray_code.index(frames), _expected(times))
    np.testing.assert_array_equal(_expected(times), [0, 0, 0, 1, 12, 13, 20, 29])


def test_decode_frames_unsorted_repeated_and_out_of_range(indexed_video, gray_code):
    times = [2.95, 100.0, 0.73, -1.0, 1.3, 0.73, 3.0, 1.0]
    frames = decode_frames(indexed_video, times)
    np.testing.assert_array_equal(gray_code.index(frames), [29, 29, 7, 0, 13, 7, 29, 10])


def test_decode_frames_late_window_uses_seek_and_matches_full_decode(indexed_video, gray_code):
    everything = decode_all(indexed_video)
    assert everything.shape == (N, 48, 64, 3)
    np.testing.assert_array_equal(gray_code.index(everything), np.arange(N))
    times = np.array([1.71, 2.26, 1.99, 2.5])  # all after the 1st keyframe: decoding starts at frame 15
    frames = decode_frames(indexed_video, times)
    np.testing.assert_array_equal(frames, everything[_expected(times)])


def test_decode_frames_only_times_past_the_end(indexed_video, gray_code):
    np.testing.assert_array_equal(gray_code.index(decode_frames(indexed_video, [100.0, 3.5])), [N - 1, N - 1])


def test_decode_frames_empty_request(indexed_video):
    assert decode_frames(indexed_video, []).shape == (0, 48, 64, 3)


def test_text_file_is_unreadable(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 20)
    for fn in (probe, lambda q: decode_frames(q, [0.0]), decode_all):
        with pytest.raises(SampleError) as ei:
            fn(str(p))
        assert ei.value.reason == "unreadable" and ei.value.path == str(p)


def test_missing_file_is_unreadable(tmp_path):
    with pytest.raises(SampleError) as ei:
        decode_frames(str(tmp_path / "nope.mp4"), [0.0])
    assert ei.value.reason == "unreadable"


def test_truncated_file_is_unreadable(tmp_path, indexed_video):
    data = open(indexed_video, "rb").read()
    p = tmp_path / "truncated.mp4"
    p.write_bytes(data[: len(data) // 2])  # the moov index sits at the end of a non-faststart MP4: now lost
    with pytest.raises(SampleError) as ei:
        decode_frames(str(p), [0.5, 1.0])
    assert ei.value.reason == "unreadable"
    with pytest.raises(SampleError) as ei:
        probe(str(p))
    assert ei.value.reason == "unreadable"


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    p = str(tmp_path / "speech.m4a")
    with av.open(p, "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            frame.pts = i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    for fn in (probe, lambda q: decode_frames(q, [0.0]), decode_all):
        with pytest.raises(SampleError) as ei:
            fn(p)
        assert ei.value.reason == "no_video_stream" and ei.value.path == p


def test_decode_frames_decodes_only_the_needed_range(indexed_video, monkeypatch):
    import tvts.data.decode as decode

    seen = []
    original = decode.plan_skips

    def spy(times, keyframe, sorted_ts):
        seen.append(times.copy())
        return original(times, keyframe, sorted_ts)

    monkeypatch.setattr(decode, "plan_skips", spy)
    np.testing.assert_array_equal(decode_frames(indexed_video, [2.26, 1.71]).shape[0], 2)
    # packets from the keyframe at or before 1.71 (frame 15, t = 1.5) up to the keyframe after 2.26 (t = 2.5)
    # (kept for pictures shown before it in an open GOP), nothing after it
    assert seen[0].min() == pytest.approx(1.5) and seen[0].max() == pytest.approx(2.5)


def _gop_stream(rng, n: int, gop: int, max_b: int):
    """Packets of a simulated closed-GOP H.264-like stream in decode order: (presentation index, keyframe
    flag). Each GOP: its keyframe, then mini-GOPs of a reference picture followed by the up to ``max_b``
    B pictures shown before it."""
    order, key = [], []
    i = 0
    while i < n:
        g_end = min(n, i + gop)
        order.append(i)
        key.append(True)
        j = i + 1
        while j < g_end:
            b = int(rng.integers(0, max_b + 1))
            ref = min(j + b, g_end - 1)
            order.append(ref)
            key.append(False)
            order.extend(range(j, ref))
            key.extend([False] * (ref - j))
            j = ref + 1
        i = g_end
    return np.array(order), np.array(key)


@pytest.mark.parametrize("seed", range(6))
def test_plan_skips_shows_the_right_picture_and_keeps_its_references(seed):
    from tvts.data.decode import plan_skips

    rng = np.random.default_rng(seed)
    fps = 25.0
    present, key = _gop_stream(rng, 120, int(rng.integers(5, 40)), int(rng.integers(0, 4)))
    times = present / fps
    targets = np.sort(rng.uniform(0, 120 / fps, int(rng.integers(1, 20))))
    levels, shown = plan_skips(times, key, targets)
    # the picture shown at t: the last one with presentation time <= t
    np.testing.assert_array_equal(present[shown], np.clip(np.floor(targets * fps + 1e-9), 0, 119).astype(int))
    gop = np.cumsum(key) - 1
    for s in shown:
        assert levels[s] == "DEFAULT"
        # every picture decoded before it in its GOP keeps its references (nothing there is NONKEY)
        assert all(levels[i] != "NONKEY" for i in range(s) if gop[i] == gop[s])
    # nothing is decoded in full that is not shown, and a GOP's tail after its last shown picture is skipped
    assert {i for i, lv in enumerate(levels) if lv == "DEFAULT"} == set(shown.tolist())
    for i, lv in enumerate(levels):
        later_shown = [s for s in shown if gop[s] == gop[i] and s > i]
        shows = any(gop[s] == gop[i] for s in shown)
        assert (lv in ("NONKEY", "ALL")) == (not later_shown and i not in shown)
        assert (lv == "ALL") == (not shows)  # a GOP that shows nothing is not decoded


def test_plan_skips_keeps_references_of_a_shown_leading_picture():
    from tvts.data.decode import plan_skips

    # decode order: GOP 0 = I0 P3 B1 B2 P6 B4 B5; GOP 1 = I9 B7 B8 (open GOP: B7, B8 shown before I9) P12 B10 B11
    present = np.array([0, 3, 1, 2, 6, 4, 5, 9, 7, 8, 12, 10, 11])
    key = np.array([1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=bool)
    levels, shown = plan_skips(present / 10.0, key, np.array([0.05, 0.75]))  # pictures 0 and 7 (leading)
    assert present[shown].tolist() == [0, 7]
    assert all(lv != "NONKEY" for lv in levels[:7])  # B7 may reference P6: GOP 0's tail is decoded
    levels, shown = plan_skips(present / 10.0, key, np.array([0.05, 0.95]))  # pictures 0 and 9 (the keyframe)
    assert levels[1:7] == ["NONKEY"] * 6
    assert plan_skips(present / 10.0, np.zeros(13, dtype=bool), np.array([0.5])) is None  # not from a keyframe


@pytest.fixture(scope="module")
def bframe_video(tmp_path_factory, make_video, gray_code):
    path = tmp_path_factory.mktemp("decode_b") / "bframes.mp4"
    return make_video(path, gray_code.frames(60, 48, 64), FPS, gop=12, crf=10)  # crf 10: x264 uses B pictures


def test_bframe_video_has_b_frames(bframe_video):
    import av

    with av.open(bframe_video) as c:
        kinds = {int(f.pict_type) for f in c.decode(video=0)}
    assert kinds == {1, 2, 3}, kinds  # I, P and B pictures


@pytest.mark.parametrize("seed", range(4))
def test_planned_decode_equals_the_plain_scan_and_the_full_decode(bframe_video, gray_code, monkeypatch, seed):
    import tvts.data.decode as decode

    rng = np.random.default_rng(seed)
    times = rng.uniform(-0.5, 6.5, int(rng.integers(1, 24)))
    planned = decode_frames(bframe_video, times)
    expected = np.clip(np.floor(times * FPS + 1e-9), 0, 59).astype(int)
    np.testing.assert_array_equal(gray_code.index(planned), expected)
    monkeypatch.setattr(decode, "PLANNED_CODECS", ())
    np.testing.assert_array_equal(decode_frames(bframe_video, times), planned)


def test_a_plan_that_does_not_hold_falls_back_to_the_plain_scan(bframe_video, gray_code, monkeypatch):
    import tvts.data.decode as decode

    original = decode.plan_skips

    def wrong(times, keyframe, sorted_ts):  # skips the very pictures it should show
        levels, shown = original(times, keyframe, sorted_ts)
        return ["NONKEY"] * len(levels), shown

    monkeypatch.setattr(decode, "plan_skips", wrong)
    times = np.array([1.23, 4.56, 5.89])
    np.testing.assert_array_equal(gray_code.index(decode_frames(bframe_video, times)), [12, 45, 58])


def _torchcodec_available() -> bool:
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads FFmpeg's shared libraries)
    except Exception:  # ImportError, or the libraries' own load error
        return False
    return True


torchcodec_only = pytest.mark.skipif(not _torchcodec_available(),
                                     reason="torchcodec or FFmpeg's shared libraries are not installed")


@torchcodec_only
def test_torchcodec_backend_returns_the_same_frames(indexed_video, gray_code):
    times = [2.95, 100.0, 0.73, -1.0, 1.3, 0.73, 3.0, 1.0, 0.0, 0.0999, 0.1]
    a = decode_frames(indexed_video, times, backend="pyav")
    b = decode_frames(indexed_video, times, backend="torchcodec", threads=1)
    assert b.dtype == np.uint8 and b.shape == a.shape
    np.testing.assert_array_equal(gray_code.index(b), _expected(times))
    np.testing.assert_array_equal(b, a)


@torchcodec_only
def test_torchcodec_backend_names_bad_files_like_pyav(tmp_path, indexed_video):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    truncated = tmp_path / "cut.mp4"
    data = open(indexed_video, "rb").read()
    truncated.write_bytes(data[: len(data) // 3])
    for bad in (text, truncated):
        with pytest.raises(SampleError) as pyav_error:
            decode_frames(bad, [0.5, 2.5], backend="pyav")
        with pytest.raises(SampleError) as tc_error:
            decode_frames(bad, [0.5, 2.5], backend="torchcodec")
        assert tc_error.value.reason == pyav_error.value.reason and tc_error.value.path == str(bad)


def test_unknown_backend_is_a_config_error(indexed_video):
    from tvts.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown decoding backend"):
        decode_frames(indexed_video, [0.0], backend="opencv")


@pytest.fixture(scope="module")
def truncated_videos(tmp_path_factory, gray_code):
    """MKV (H.264) and AVI (MPEG-4 Part 2) files of 40 frames at 10 fps, cut to half their bytes: the
    headers still say 4 s, the frames end earlier. Returns {ext: (path, time of the last decodable frame)}."""
    import av

    d = tmp_path_factory.mktemp("truncated")
    out = {}
    for ext, fmt, codec in ((".mkv", "matroska", "libx264"), (".avi", "avi", "mpeg4")):
        whole = d / f"whole{ext}"
        with av.open(str(whole), "w", format=fmt) as c:
            s = c.add_stream(codec, rate=FPS)
            s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
            for f in np.random.default_rng(0).integers(0, 255, (40, 48, 64, 3), dtype=np.uint8):  # noise: ~equal-size frames
                for pk in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(pk)
            for pk in s.encode():
                c.mux(pk)
        cut = d / f"cut{ext}"
        data = whole.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        _, times = decode_all(cut, return_times=True)
        assert 0.5 < times[-1] < 3.0  # really cut short, with frames left
        out[ext] = (str(cut), float(times[-1]))
    return out


@pytest.mark.parametrize("ext", [".mkv", ".avi"])
@pytest.mark.parametrize("backend", ["pyav", pytest.param("torchcodec", marks=torchcodec_only)])
def test_a_truncated_file_is_an_error_not_a_repeated_frame(truncated_videos, ext, backend):
    path, last = truncated_videos[ext]
    ok = decode_frames(path, [0.0, last], backend=backend, threads=1)  # the decodable part decodes
    assert ok.shape[0] == 2
    with pytest.raises(SampleError) as e:
        decode_frames(path, [0.0, 3.5], backend=backend, threads=1)  # 3.5 s exists by the headers, not in the file
    assert e.value.reason == "truncated" and path in str(e.value)


def test_times_past_the_end_of_a_whole_file_still_give_its_last_frame(indexed_video, gray_code):
    np.testing.assert_array_equal(gray_code.index(decode_frames(indexed_video, [2.95, 3.0, 50.0])), [N - 1] * 3)


@pytest.fixture(scope="module")
def rotated_video(tmp_path_factory, make_video):
    """A 64x48 video (white band on its left) whose display matrix says: turn 90 degrees counterclockwise
    (written by the ffmpeg command line, as phones write it). Players show it 48 wide, 64 high, band at the bottom."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("the ffmpeg command line is not installed")
    d = tmp_path_factory.mktemp("rotated")
    img = np.zeros((20, 48, 64, 3), np.uint8)
    img[:, :, :16] = 255
    src = make_video(d / "src.mp4", img, FPS, crf=10)
    out = d / "rot90.mp4"
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", src, "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out)],
                   check=True)
    return str(out)


@pytest.mark.parametrize("backend", ["pyav", pytest.param("torchcodec", marks=torchcodec_only)])
def test_rotation_metadata_is_applied(rotated_video, backend):
    frames = decode_frames(rotated_video, [0.5, 1.2], backend=backend, threads=1)
    assert frames.shape == (2, 64, 48, 3)  # as players show it
    rows = frames[..., 0].astype(float).mean(axis=(0, 2))
    assert rows[:40].max() < 40 and rows[52:].min() > 215  # the band that was on the left is at the bottom


def test_rotation_is_applied_by_decode_all_and_baked_into_reencoded_shards(rotated_video):
    from tvts.data.shards import reencode

    frames = decode_all(rotated_video)
    assert frames.shape[1:] == (64, 48, 3)
    np.testing.assert_array_equal(frames[5], decode_frames(rotated_video, [0.5])[0])
    copy = rotated_video.replace(".mp4", "_reencoded.mp4")
    with open(copy, "wb") as f:
        f.write(reencode(rotated_video))
    again = decode_frames(copy, [0.5])
    assert again.shape == (1, 64, 48, 3)
    assert np.abs(again.astype(int) - frames[5].astype(int)).mean() < 8  # same picture, upright, no matrix needed
