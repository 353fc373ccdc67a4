"""One corpus with every kind of bad record mixed into good ones: `data check` names each bad line with its
reason, the dataset uses every good record and counts every bad one, a short pretraining on it finishes and
reports them, `extract` lists the undecodable videos, nothing hangs (a stalled read with a short time limit)
and nothing is silently wrong (a truncated file is an error, a rotated one comes out upright)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import av
import numpy as np
import pytest

from tvts.data.decode import decode_all, decode_frames
from tvts.data.manifest import ManifestDataset, check_manifest
from tvts.data.transforms import VideoTransform
from tvts.data.processor import VideoProcessor
from tvts.eval.extract import ViewsDataset
from tvts.testing import make_tiny_bert, tiny_recipe

FPS = 4
K, L, GAP = 2, 2.0, 1.0  # span 5 s
WORDS = [[f"w{j}", 0.25 + 0.5 * j] for j in range(24)]  # 12 s of speech
TIMEOUT = 1.0


def _noise(n, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (n, 32, 48, 3), dtype=np.uint8)


def _cut_mkv(path, frames):
    whole = path.with_name("whole.mkv")
    with av.open(str(whole), "w", format="matroska") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) // 4])
    _, times = decode_all(path, return_times=True)
    assert times[-1] < 4.5  # every 5 s span needs a time past the cut: always `truncated`


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, make_video, make_audio_only):
    """(manifest path, {1-based line: expected `data check` reason or None}, folder, writer process)."""
    import shutil

    d = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        make_video(d / f"good{i}.mp4", _noise(48, i), FPS)
    make_video(d / "short.mp4", _noise(8), FPS)
    (d / "text.mp4").write_text("this is not a video\n")
    make_audio_only(d / "audio.mp4")
    _cut_mkv(d / "cut.mkv", _noise(48, 9))
    rotated = None
    if shutil.which("ffmpeg"):
        band = np.zeros((48, 32, 48, 3), np.uint8)
        band[:, :, :12] = 255
        make_video(d / "band.mp4", band, FPS, crf=10)
        subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(d / "band.mp4"), "-c", "copy",
                        "-metadata:s:v:0", "rotate=90", str(d / "rotated.mp4")], check=True)
        rotated = "rotated.mp4"
    # a read that stalls mid-file: a FIFO whose writer sends half a video, then waits
    os.mkfifo(d / "stalled.mp4")
    half = (d / "good0.mp4").read_bytes()
    writer = subprocess.Popen([sys.executable, "-c", "import sys, time\nf = open(sys.argv[1], 'wb')\n"
                               "f.write(open(sys.argv[2], 'rb').read()[:int(sys.argv[3])]); f.flush(); time.sleep(600)",
                               str(d / "stalled.mp4"), str(d / "good0.mp4"), str(len(half) // 2)])

    def rec(video, **kw):
        return json.dumps({"video": video, "words": kw.pop("words", WORDS), "duration": kw.pop("duration", 12.0), **kw})

    lines = [(rec(f"good{i % 6}.mp4", id=f"good_{i}"), None) for i in range(96)]
    bad = [
        (json.dumps({"video": "good1.mp4", "caption": "a caption in a transcript corpus"}), "wrong_kind"),
        (rec("stalled.mp4"), "timeout"),
        (rec("cut.mkv"), "truncated"),
        (rec("text.mp4"), "unreadable"),
        (rec("audio.mp4"), "no_video_stream"),
        (rec("missing.mp4"), "missing"),
        (rec("good2.mp4", words=WORDS[:3] + [["x" * 100_000, 2.0]] + WORDS[4:]), "word_too_long"),
        (rec("good3.mp4", duration=0), "zero_duration"),
        (rec("short.mp4"), "too_short"),
        (rec("good4.mp4", words=WORDS[:6]), "empty_segment"),  # speech ends at 2.75 s: the second segment is empty
    ]
    out = []
    for j, item in enumerate(lines):  # about one bad record in ten, spread through the file
        out.append(item)
        if j % 9 == 4 and bad:
            out.append(bad.pop(0))
    out += [(b, r) for b, r in bad]
    if rotated:
        out.append((rec(rotated, id="rotated"), None))
    path = d / "corpus.jsonl"
    raw = "\n".join(line for line, _ in out).encode() + b"\n" + b'{"video": "good5.mp4", "caption": "caf\xe9"}\n'
    path.write_bytes(raw)  # the last line is Latin-1, not UTF-8
    expected = {n: r for n, (_, r) in enumerate(out, 1)}
    expected[len(out) + 1] = "bad_annotation"
    yield path, expected, d, rotated
    writer.kill()
    writer.wait()


def test_data_check_names_every_bad_line(corpus):
    path, expected, _, _ = corpus
    t0 = time.perf_counter()
    report = check_manifest(path, num_segments=K, segment_seconds=L, gap=GAP, timeout=TIMEOUT, progress=False,
                            kind="auto")
    found = {e["line"]: reason for reason, ex in report["examples"].items() for e in ex}
    assert found == {n: r for n, r in expected.items() if r}
    assert report["ok"] == sum(r is None for r in expected.values())
    assert time.perf_counter() - t0 < 60


def test_dataset_uses_every_good_record_and_counts_every_bad_one(corpus):
    path, expected, d, rotated = corpus
    # as the dataset meets them: a missing file fails to open
    reasons = {n - 1: ("unreadable" if r == "missing" else r) for n, r in expected.items()}
    ds = ManifestDataset(path, K, L, GAP, num_frames=4, transform=VideoTransform(16, train=False), train=False,
                         seed=3, max_retries=40, timeout=TIMEOUT, kind="auto")
    skipped: Counter = Counter()
    used = set()
    for i in range(len(ds)):
        s = ds[i]
        assert reasons[s["index"]] is None  # only real samples come out
        used.add(s["index"])
        skipped.update(s["skipped"])
        if reasons[i] is None:
            assert s["index"] == i and s["skipped"] == {}  # every good record is used as itself
    assert used == {i for i, r in reasons.items() if r is None}
    for reason, n in Counter(r for r in reasons.values() if r).items():
        assert skipped[reason] >= n, (reason, skipped)
    if rotated:  # the rotated record's frames are the source turned upright, not sideways
        i = next(i for i, r in enumerate(ds.records.ids) if r == "rotated")
        s = ds[i]
        src = decode_frames(d / "band.mp4", s["frame_times"].numpy())
        upright = np.ascontiguousarray(np.rot90(src, 1, axes=(1, 2)))
        np.testing.assert_allclose(s["frames"].numpy(), VideoTransform(16, train=False)(upright).numpy(), atol=1e-5)


def test_a_short_pretraining_on_it_finishes_and_reports_the_bad_records(corpus, tmp_path):
    from tvts.train.trainer import pretrain

    path, expected, _, _ = corpus
    bert = make_tiny_bert(tmp_path / "bert")
    steps = 26  # one epoch of the 107 records at batch 4: every record is drawn once (3 fall off drop_last)
    cfg = tiny_recipe(bert, tmp_path / "shapes", tmp_path / "run", steps=steps, ckpt_every=13)
    cfg.data.manifest = str(path)
    cfg.data.decode_timeout = TIMEOUT
    cfg.data.segment_seconds, cfg.data.gap = L, GAP
    cfg.model.num_segments = K
    cfg.data.max_retries = 40
    t0 = time.perf_counter()
    run = pretrain(cfg)
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["steps"] == steps and summary["seen"] == 4 * steps
    kinds = {("unreadable" if r == "missing" else r) for r in expected.values() if r}
    assert set(summary["bad"]) <= kinds and len(summary["bad"]) >= len(kinds) - 2, summary["bad"]
    assert summary["bad_files"]
    assert time.perf_counter() - t0 < 120


def test_extract_lists_the_videos_it_cannot_decode(corpus):
    _, _, d, rotated = corpus
    names = ["good0.mp4", "stalled.mp4", "cut.mkv", "text.mp4", "audio.mp4"] + ([rotated] if rotated else [])
    ds = ViewsDataset([str(d / n) for n in names], names, VideoProcessor(num_frames=4, size=16), timeout=TIMEOUT)
    got = {n: (ds[i]["error"]["reason"] if ds[i]["frames"] is None else "ok") for i, n in enumerate(names)}
    assert got == {"good0.mp4": "ok", "stalled.mp4": "timeout", "cut.mkv": "truncated", "text.mp4": "unreadable",
                   "audio.mp4": "no_video_stream", **({rotated: "ok"} if rotated else {})}
