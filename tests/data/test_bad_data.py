"""Every kind of bad sample: ``tvts data check`` names it with the right reason, and a dataset holding some
of them yields only real samples with exact ``skipped`` counts."""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import numpy as np
import pytest

from tvts.data.cli_commands import build_parser
from tvts.data.samples import sample_rng
from tvts.data.manifest import ManifestDataset, check_manifest, load_manifest, manifest_from_yt
from tvts.data.transforms import VideoTransform

FPS = 4
K, L, GAP = 2, 2.0, 1.0  # span 5 s
GOOD_WORDS = [[f"w{j}", 0.25 + 0.5 * j] for j in range(24)]  # 12 s of speech


@pytest.fixture(scope="module")
def bad_manifest(tmp_path_factory, make_video, make_audio_only):
    """A manifest of 3 good records and one of each bad kind; returns (path, {line: expected reason})."""
    d = tmp_path_factory.mktemp("bad")
    frames = np.random.default_rng(0).integers(0, 255, (48, 32, 48, 3), dtype=np.uint8)  # 12 s
    for i in range(3):
        make_video(d / f"good{i}.mp4", frames, FPS)
    make_video(d / "full.mp4", frames, FPS)
    data = (d / "full.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "text.mp4").write_text("this is not a video\n")
    make_audio_only(d / "audio.mp4")
    make_video(d / "one_frame.mp4", frames[:1], FPS)
    make_video(d / "short.mp4", frames[:8], FPS)  # 2 s, under a 12 s transcript

    def rec(video, words=GOOD_WORDS, duration=12.0):
        return json.dumps({"video": video, "words": words, "duration": duration}).encode()

    early_words = GOOD_WORDS[:6]  # speech ends at 2.75 s of 12: the second segment (from >= 3 s) is always empty
    lines = [
        (rec("good0.mp4"), None),
        (rec("truncated.mp4"), "unreadable"),
        (rec("text.mp4"), "unreadable"),
        (rec("good1.mp4"), None),
        (rec("audio.mp4"), "no_video_stream"),
        (rec("one_frame.mp4"), "too_short"),
        (rec("good0.mp4", duration=0), "zero_duration"),
        (rec("short.mp4"), "too_short"),
        (rec("good2.mp4", words=GOOD_WORDS[:4], duration=3.0), "too_short"),  # transcript shorter than the span
        (rec("good2.mp4", words=early_words), "empty_segment"),
        (b'{"video": "good2.mp4", "caption": "caf\xe9"}', "bad_annotation"),  # Latin-1, not UTF-8
        (rec("good2.mp4", words=[["w", 0.1 * j] for j in range(120)]), "transcript_too_long"),
        (rec("missing.mp4"), "missing"),
        (rec("good2.mp4"), None),
    ]
    path = d / "m.jsonl"
    path.write_bytes(b"\n".join(line for line, _ in lines) + b"\n")
    return path, {n: reason for n, (_, reason) in enumerate(lines, 1)}


def test_check_names_every_bad_kind(bad_manifest):
    path, expected = bad_manifest
    report = check_manifest(path, num_segments=K, segment_seconds=L, gap=GAP, max_words=100, progress=False)
    found = {e["line"]: reason for reason, ex in report["examples"].items() for e in ex}
    assert found == {n: r for n, r in expected.items() if r}
    assert report["bad"] == dict(Counter(r for r in expected.values() if r))
    assert report["total"] == 14 and report["ok"] == 3


def test_check_command_exit_code_and_json(bad_manifest, tmp_path, capsys):
    path, expected = bad_manifest
    out = tmp_path / "r" / "report.json"
    args = build_parser().parse_args(
        ["data", "check", str(path), "--segments", str(K), "--segment-seconds", str(L), "--max-words", "100",
         "--json", str(out), "--no-progress"])
    assert args.func(args) == 1
    printed = capsys.readouterr().out
    assert "unreadable" in printed and "truncated.mp4" in printed and "line 2:" in printed
    assert json.loads(out.read_text())["bad"]["unreadable"] == 2
    good = tmp_path / "good.jsonl"
    good.write_text("".join(
        json.dumps({"video": str(path.parent / f"good{i}.mp4"), "words": GOOD_WORDS, "duration": 12.0}) + "\n"
        for i in range(3)))
    args = build_parser().parse_args(["data", "check", str(good), "--segments", "2", "--segment-seconds", "2",
                                      "--no-progress"])
    assert args.func(args) == 0


def test_dataset_yields_only_real_samples_with_exact_skip_counts(bad_manifest):
    path, expected = bad_manifest
    # Reasons as the dataset meets them: a missing file fails to open ("unreadable"), the over-long transcript
    # is cut at load time by the default limit only, so it is loaded with the test's limit here.
    reasons = {**expected, 13: "unreadable"}
    records = load_manifest(path, max_words=100)
    ds = ManifestDataset(records, K, L, GAP, num_frames=4, transform=VideoTransform(16, train=True), seed=7,
                         max_retries=30)
    good = {i for i, r in enumerate(reasons.values()) if r is None}
    for index in range(len(ds)):
        s = ds[index]
        assert s["index"] in good and s["frames"].shape == (4, 3, 16, 16)
        tried, current = [], index  # replay the dataset's draws: the records it tried before the good one
        for attempt in range(30):
            if attempt:
                current = int(sample_rng(7, 0, index, attempt).integers(len(ds)))
            if current in good:
                break
            tried.append(reasons[current + 1])
        assert current == s["index"]
        assert s["skipped"] == dict(Counter(tried)) and len(s["bad_paths"]) == len(tried)


def test_yt_converter_skips_a_non_utf8_annotation(tmp_path, make_video, make_yt_annotation):
    root = tmp_path / "yt"
    frames = np.zeros((8, 16, 16, 3), np.uint8)
    for i in range(2):
        make_video(root / "videos" / "a" / "data" / f"v{i}.mp4", frames, FPS)
    make_yt_annotation(root / "videos" / "a" / "annotations" / "v0.json", ["hi"], [0.5], 2.0)
    bad = root / "videos" / "a" / "annotations" / "v1.json"
    bad.write_bytes(b'{"subtitles": [{"word": "caf\xe9", "time": 0.5}], "info": {"duration": 2.0}}')
    split = tmp_path / "split.csv"
    split.write_text("Name\na/data/v0.mp4\na/data/v1.mp4\n")
    report = manifest_from_yt(root, split, tmp_path / "m.jsonl")
    assert report == {"written": 1, "skipped": {"bad_annotation": 1}, "skipped_files": [str(bad)]}


def test_a_decode_that_hangs_is_a_timeout(tmp_path, make_video):
    fifo = tmp_path / "hang.mp4"
    os.mkfifo(fifo)  # opening it for reading blocks until a writer appears: never
    make_video(tmp_path / "good.mp4", np.zeros((48, 16, 16, 3), np.uint8), FPS)
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"video": v, "words": GOOD_WORDS, "duration": 12.0}) + "\n"
                            for v in ("hang.mp4", "good.mp4")))
    t0 = time.perf_counter()
    # 2 s: long enough for the good file's helper process on a loaded machine (0.3 s once timed it out too)
    report = check_manifest(path, num_segments=K, segment_seconds=L, gap=GAP, timeout=2.0, progress=False)
    assert report["bad"] == {"timeout": 1} and report["examples"]["timeout"][0]["line"] == 1
    ds = ManifestDataset(path, K, L, GAP, num_frames=2, transform=VideoTransform(16), train=False, timeout=2.0)
    s = ds[0]
    assert s["index"] == 1 and s["skipped"]["timeout"] >= 1 and set(s["skipped"]) == {"timeout"}
    assert time.perf_counter() - t0 < 30  # a few time limits, not a hang


def test_a_record_of_the_wrong_kind_is_skipped_and_counted(tmp_path, make_video):
    """A caption record in a transcript corpus is a bad sample (reason wrong_kind, naming file and line),
    not an error that stops training; `data check --kind` reports it, and without --kind the mix is shown."""
    from tvts.data.cli_commands import format_check_report

    frames = np.random.default_rng(0).integers(0, 255, (48, 32, 48, 3), dtype=np.uint8)
    for i in range(3):
        make_video(tmp_path / f"good{i}.mp4", frames, FPS)
    lines = [json.dumps({"video": "good0.mp4", "words": GOOD_WORDS, "duration": 12.0}),
             json.dumps({"video": "good1.mp4", "caption": "a red square moves left"}),
             json.dumps({"video": "good1.mp4", "words": GOOD_WORDS, "duration": 12.0}),
             json.dumps({"video": "good2.mp4", "words": GOOD_WORDS, "duration": 12.0})]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")

    ds = ManifestDataset(path, K, L, GAP, num_frames=4, transform=VideoTransform(16, train=True), seed=0,
                         max_retries=30, kind="transcript")
    s = ds[1]
    assert s["index"] != 1 and "order" in s and s["skipped"].get("wrong_kind", 0) >= 1
    assert any(p.startswith(f"{path}:2") for p in s["bad_paths"]), s["bad_paths"]
    assert all(ds[i]["skipped"] == {} for i in (0, 2, 3))
    captions = ManifestDataset(path, K, L, GAP, num_frames=4, transform=VideoTransform(16, train=True), seed=0,
                               max_retries=30, kind="caption")
    assert captions[0]["index"] == 1 and captions[0]["skipped"] == {"wrong_kind": 1}

    report = check_manifest(path, num_segments=K, segment_seconds=L, gap=GAP, progress=False, kind="transcript")
    assert report["bad"] == {"wrong_kind": 1} and [e["line"] for e in report["examples"]["wrong_kind"]] == [2]
    report = check_manifest(path, num_segments=K, segment_seconds=L, gap=GAP, progress=False)
    assert report["bad"] == {} and report["kinds"] == {"transcript": 3, "caption": 1}
    assert "mixes 3 transcript and 1 caption records" in format_check_report(report)


@pytest.fixture
def stalled_video(tmp_path, make_video):
    """``stalled.mp4``: a FIFO whose writer sends the first half of a real video, then stops without closing
    (a network read that stalls mid-file). Yields its path; the writer is killed afterwards."""
    import subprocess
    import sys

    make_video(tmp_path / "whole.mp4", np.random.default_rng(1).integers(0, 255, (48, 32, 48, 3), dtype=np.uint8), FPS)
    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    half = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "half.bin").write_bytes(half[: len(half) // 2])
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time\nf = open(sys.argv[1], 'wb')\n"
                               "f.write(open(sys.argv[2], 'rb').read()); f.flush(); time.sleep(600)",
                               str(fifo), str(tmp_path / "half.bin")])
    yield fifo
    writer.kill()
    writer.wait()


def test_a_stalled_read_is_stopped_in_training_check_and_extract(tmp_path, make_video, stalled_video):
    """The time limit stops a decode blocked inside FFmpeg (the call runs in a helper process that is
    killed): the record is a timeout in the dataset, in `data check` and in `extract`, and nothing hangs."""
    from tvts.data.processor import VideoProcessor
    from tvts.eval.extract import ViewsDataset

    make_video(tmp_path / "good.mp4", np.zeros((48, 16, 16, 3), np.uint8), FPS)
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps({"video": v, "words": GOOD_WORDS, "duration": 12.0}) + "\n"
                            for v in ("stalled.mp4", "good.mp4")))
    t0 = time.perf_counter()
    ds = ManifestDataset(path, K, L, GAP, num_frames=2, transform=VideoTransform(16), train=False, timeout=1.0)
    s = ds[0]
    assert s["index"] == 1 and set(s["skipped"]) == {"timeout"}, s["skipped"]  # (the replacement may retry it)
    assert ds[1]["skipped"] == {}  # the next call starts a fresh helper and works
    report = check_manifest(path, num_segments=K, segment_seconds=L, gap=GAP, timeout=1.0, progress=False)
    assert report["bad"] == {"timeout": 1} and report["examples"]["timeout"][0]["line"] == 1
    views = ViewsDataset([str(stalled_video), str(tmp_path / "good.mp4")], ["stalled", "good"],
                         VideoProcessor(num_frames=2, size=16), timeout=1.0)
    assert views[0]["frames"] is None and views[0]["error"]["reason"] == "timeout"
    assert views[1]["frames"].shape == (1, 2, 3, 16, 16)
    assert time.perf_counter() - t0 < 30


def test_watchdog_answers_like_a_direct_call_and_survives_a_dead_helper(tmp_path, make_video, gray_code, stalled_video):
    import threading

    from tvts.data.decode import decode_frames, probe
    from tvts.data.watchdog import Watchdog
    from tvts.errors import SampleError

    video = make_video(tmp_path / "v.mp4", gray_code.frames(20, 48, 64), FPS)
    w = Watchdog(10)
    times = np.array([0.3, 2.1, 4.9])
    np.testing.assert_array_equal(w.call("decode_frames", video, times, threads=1), decode_frames(video, times, threads=1))
    assert w.call("probe", video) == probe(video)
    with pytest.raises(SampleError) as e:  # errors come back typed, with their reason
        w.call("probe", str(tmp_path / "missing.mp4"))
    assert e.value.reason == "unreadable"
    # the helper dies during a call (e.g. a crash inside FFmpeg): that sample fails as "decode", the next call works
    helper = w._proc
    threading.Timer(0.5, helper.kill).start()
    with pytest.raises(SampleError) as e:
        w.call("probe", str(stalled_video))
    assert e.value.reason == "decode" and "died" in e.value.detail
    assert w.call("probe", video) == probe(video) and w._proc is not helper
    w._proc.kill()  # a helper found dead between calls is replaced before the call
    w._proc.wait()
    assert w.call("probe", video) == probe(video)
    w.close()


def test_a_huge_word_is_refused_before_anything_tokenises_it(tmp_path, make_yt_annotation):
    from tvts.data.manifest import parse_record
    from tvts.data.transcripts import MAX_WORD_CHARS, load_yt_annotation
    from tvts.errors import SampleError

    huge = "x" * 10_000_000  # 10 MB "word"
    t0 = time.perf_counter()
    with pytest.raises(SampleError) as e:
        parse_record(json.dumps({"video": "a.mp4", "words": [["hello", 0.1], [huge, 0.5]]}), "m.jsonl:3")
    assert e.value.reason == "word_too_long" and e.value.path == "m.jsonl:3" and "words[1]" in e.value.detail
    ann = make_yt_annotation(tmp_path / "a.json", ["hello", huge], [0.1, 0.5], 10.0)
    with pytest.raises(SampleError) as e:
        load_yt_annotation(ann)
    assert e.value.reason == "word_too_long" and "subtitles[1].word" in e.value.detail
    assert time.perf_counter() - t0 < 5
    ok = parse_record(json.dumps({"video": "a.mp4", "words": [["y" * MAX_WORD_CHARS, 0.1]]}), "m.jsonl:4")
    assert ok["words"] == ["y" * MAX_WORD_CHARS]  # the limit itself is accepted
    report_path = tmp_path / "m.jsonl"
    report_path.write_text(json.dumps({"video": "a.mp4", "words": [[huge, 0.5]]}) + "\n")
    report = check_manifest(report_path, progress=False)
    assert report["bad"] == {"word_too_long": 1} and report["examples"]["word_too_long"][0]["line"] == 1
