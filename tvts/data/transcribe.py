"""ASR with word timestamps (faster-whisper, a local CTranslate2 model folder) into the YT-Temporal layout.

:func:`transcribe_dir` writes, under ``out_root``::

    videos/asr/<relative path>          a symlink to each source video (relative path inside VIDEO_DIR)
    videos/asr/annotations/<stem>.json  {"subtitles": [{"word", "time"}], "info": {"duration", "language",
                                        "asr_model"}}: words with their start times in seconds
    meta_data/yttemporal_train.csv      tab-separated, header "Name", rows "asr/<relative path>"

so :class:`~tvts.data.datasets.TranscriptVideoDataset` and ``tvts data manifest yt`` read it as they read
YT-Temporal. Videos whose annotation exists are skipped (the command can be re-run after an interruption).
Needs the optional extra ``asr`` (``faster-whisper``).
"""

from __future__ import annotations

import json
import os

import av

from tvts.data.decode import probe
from tvts.deps import require
from tvts.errors import ConfigError, SampleError

__all__ = ["VIDEO_EXTENSIONS", "find_videos", "has_audio", "transcribe_dir"]

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".mpg", ".mpeg", ".ts")
PREFIX = "asr"


def find_videos(video_dir: str) -> list[str]:
    """Paths relative to ``video_dir`` of the files with a video extension under it, sorted."""
    found = []
    for folder, _, files in os.walk(video_dir):
        found += [os.path.relpath(os.path.join(folder, f), video_dir) for f in files
                  if f.lower().endswith(VIDEO_EXTENSIONS)]
    return sorted(found)


def has_audio(path: str) -> bool:
    """Whether the file has an audio stream (raises :class:`SampleError` "unreadable" if it cannot be opened)."""
    try:
        with av.open(path, metadata_errors="ignore") as c:
            return bool(c.streams.audio)
    except (av.error.FFmpegError, OSError) as e:
        raise SampleError("unreadable", path, f"cannot open: {e}") from e


def _write_json(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    os.replace(tmp, path)  # a crash never leaves a half-written annotation that would count as done


def transcribe_dir(
    video_dir: str | os.PathLike,
    out_root: str | os.PathLike,
    model: str | os.PathLike,
    *,
    language: str | None = None,
    device: str = "auto",
    compute_type: str = "default",
    beam_size: int = 5,
    progress: bool = True,
) -> dict:
    """Transcribe every video under ``video_dir`` with the faster-whisper model folder ``model`` (word
    timestamps) into the layout of the module docstring. A video without an audio track, or one that cannot be
    read, is reported in ``failed`` and left out of the split list. Returns ``{"transcribed": n, "existing":
    n, "failed": [(relative path, reason)], "split_list": path}``."""
    from tqdm import tqdm

    video_dir, out_root, model = os.fspath(video_dir), os.fspath(out_root), os.fspath(model)
    if not os.path.isdir(video_dir):
        raise ConfigError("video folder not found", source=video_dir)
    if not os.path.isfile(os.path.join(model, "model.bin")):
        raise ConfigError("not a faster-whisper model folder (no model.bin)", source=model)
    require("faster_whisper", "tvts transcribe")  # before anything is written
    base = os.path.join(out_root, "videos", PREFIX)
    annotations = os.path.join(base, "annotations")
    os.makedirs(annotations, exist_ok=True)
    whisper = None
    names, failed, stems = [], [], {}
    done = existing = 0
    for rel in tqdm(find_videos(video_dir), desc="transcribe", unit="video", disable=not progress):
        src = os.path.abspath(os.path.join(video_dir, rel))
        stem = os.path.splitext(os.path.basename(rel))[0]
        if stem in stems:  # the YT-Temporal layout keys annotations by file name
            failed.append((rel, f"same file name as {stems[stem]}: annotations/{stem}.json would be shared"))
            continue
        stems[stem] = rel
        annotation = os.path.join(annotations, stem + ".json")
        link = os.path.join(base, rel)
        if not os.path.lexists(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(src, link)
        if os.path.exists(annotation):
            existing += 1
            names.append(f"{PREFIX}/{rel}")
            continue
        try:
            if not has_audio(src):
                failed.append((rel, "no audio track: nothing to transcribe"))
                continue
            duration = probe(src).duration
        except SampleError as e:
            failed.append((rel, f"{e.reason}: {e.detail}"))
            continue
        if whisper is None:
            whisper = require("faster_whisper", "tvts transcribe").WhisperModel(model, device=device, compute_type=compute_type)
        segments, info = whisper.transcribe(src, language=language, word_timestamps=True, beam_size=beam_size)
        words = [{"word": w.word.strip(), "time": round(float(w.start), 3)}
                 for seg in segments for w in (seg.words or ()) if w.word.strip()]
        _write_json(annotation, {"subtitles": words,
                                 "info": {"duration": duration, "language": info.language, "asr_model": model}})
        done += 1
        names.append(f"{PREFIX}/{rel}")
    split = os.path.join(out_root, "meta_data", "yttemporal_train.csv")
    os.makedirs(os.path.dirname(split), exist_ok=True)
    with open(split, "w", encoding="utf-8") as f:
        f.write("Name\n" + "".join(n + "\n" for n in sorted(names)))
    return {"transcribed": done, "existing": existing, "failed": failed, "split_list": split}
