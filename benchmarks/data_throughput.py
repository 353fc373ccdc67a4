"""Clips/s of the training data path in one process (= one DataLoader worker), PyAV and torchcodec backends.

The full path of :class:`tvts.data.datasets.TranscriptVideoDataset` at the paper's setting (K = 4 segments
of 4 s with 1 s gaps, M frames by TSN over the 19 s span, train transform to 224x224, 75 % random mask over
M/2 x 196 tokens): annotation -> Eq. 1 -> decode only the M frames (seek + forward decode) -> transform ->
mask. Baseline: the same samples decoded with decord (``VideoReader(num_threads=1).get_batch``), as the
released TVTS code and its peers load clips (a row when ``decord`` is installed: ``pip install decord``; it
is not a dependency of tvts). A second tvts row runs the same path with the default time limit
(``data.decode_timeout``: each probe and decode in a helper process, :mod:`tvts.data.watchdog`). A naive
reference decodes the whole video and picks the M frames. A last row
times the tvts path on the same videos re-encoded as ``tvts data shard --short-side 256 --fps 8`` does
(:func:`tvts.data.shards.reencode`: 256p, 8 fps, a keyframe every second).

Sources are generated at run time with PyAV into a temporary folder: H.264 at 224p and 360p, 25 fps, a
keyframe every 2 s (as is common for web video), 60 s each. The tvts path is timed with both decoding
backends (torchcodec when it is installed with FFmpeg's shared libraries; its row is skipped otherwise).

    python benchmarks/data_throughput.py [--frames 16] [--videos 4] [--clips 24] [--baseline-clips 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

import av
import numpy as np

from tvts.data.datasets import TranscriptVideoDataset, yt_paths
from tvts.data.samples import MaskSpec, make_mask, sample_rng
from tvts.data.decode import decode_all, probe
from tvts.data.sampling import tsn_timestamps
from tvts.data.shards import reencode
from tvts.data.transcripts import load_yt_annotation, sample_segments
from tvts.data.transforms import VideoTransform
from tvts.data.watchdog import DECODE_TIMEOUT

FPS, SECONDS, GOP_SECONDS = 25, 60, 2
K, L, GAP = 4, 4.0, 1.0


def torchcodec_available() -> bool:
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401  (loads FFmpeg's shared libraries)
    except Exception:  # ImportError, or the libraries' own load error
        return False
    return True


def make_video(path: str, width: int, height: int) -> None:
    """A moving colour gradient with a sliding bar, H.264 yuv420p, ``FPS`` fps, ``SECONDS`` s."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(path, "w") as c:
        s = c.add_stream("libx264", rate=FPS)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        g = str(FPS * GOP_SECONDS)
        s.options = {"preset": "veryfast", "crf": "23", "g": g, "keyint_min": g, "sc_threshold": "0"}
        for i in range(FPS * SECONDS):
            img = np.stack([(x + 3 * i) % 256, (y + 2 * i) % 256, (x + y + i) % 256], axis=-1)
            img[:, (7 * i) % width : (7 * i) % width + 16] = 255
            c.mux(s.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")))
        c.mux(s.encode())


def make_dataset_root(root: str, n: int) -> list[str]:
    """YT-Temporal layout: ``n`` videos (alternating 224p / 360p) with a word every 0.4 s."""
    names = []
    for i in range(n):
        name = f"bench/data/v{i}.mp4"
        video, annotation = yt_paths(root, name)
        os.makedirs(os.path.dirname(video), exist_ok=True)
        os.makedirs(os.path.dirname(annotation), exist_ok=True)
        make_video(video, *((400, 224) if i % 2 == 0 else (640, 360)))
        subs = [{"word": f"w{j}", "time": 0.4 * j} for j in range(int(SECONDS / 0.4))]
        with open(annotation, "w") as f:
            json.dump({"subtitles": subs, "info": {"duration": float(SECONDS)}}, f)
        names.append(name)
    return names


def baseline_clip(root, name, index, num_frames, transform, mask, seed=0):
    """The same sample as the dataset's attempt 0, but decoding every frame and picking M of them."""
    rng = sample_rng(seed, 0, index, 0)
    video, annotation = yt_paths(root, name)
    segs = sample_segments(load_yt_annotation(annotation), K, L, GAP, rng)
    times = tsn_timestamps(float(segs.bounds[0, 0]), float(segs.bounds[-1, 1]), num_frames, rng)
    all_frames = decode_all(video, threads=1)
    picks = np.clip(np.floor(times * probe(video).fps + 1e-6).astype(int), 0, len(all_frames) - 1)
    return transform(all_frames[picks], rng), make_mask(mask, rng)


def decord_available() -> bool:
    try:
        import decord  # noqa: F401  (the peers' decoder; a baseline here, not a dependency of tvts)
    except ImportError:
        return False
    return True


def decord_clip(root, name, index, num_frames, transform, mask, seed=0):
    """The same sample as the dataset's attempt 0, decoded the way the released TVTS code and its peers
    (InternVideo, UMT, VideoMAE) do: ``decord.VideoReader`` with one thread, frame indices from the sampled
    times, ``get_batch`` (decord seeks to the keyframe before each index and decodes forward)."""
    import decord

    rng = sample_rng(seed, 0, index, 0)
    video, annotation = yt_paths(root, name)
    segs = sample_segments(load_yt_annotation(annotation), K, L, GAP, rng)
    times = tsn_timestamps(float(segs.bounds[0, 0]), float(segs.bounds[-1, 1]), num_frames, rng)
    vr = decord.VideoReader(video, num_threads=1)
    picks = np.clip(np.floor(times * vr.get_avg_fps() + 1e-6).astype(int), 0, len(vr) - 1)
    return transform(vr.get_batch(picks.tolist()).asnumpy(), rng), make_mask(mask, rng)


def clips_per_second(ds: TranscriptVideoDataset, clips: int) -> float:
    ds[0]  # warm-up (imports, first open)
    t0 = time.perf_counter()
    for i in range(clips):
        ds[i % len(ds)]
    return clips / (time.perf_counter() - t0)


def reencoded_root(root: str, out: str, names: list[str], short_side: int, fps: float) -> None:
    """The same YT-Temporal layout under ``out`` with every video re-encoded (annotations copied)."""
    for name in names:
        video, annotation = yt_paths(root, name)
        video2, annotation2 = yt_paths(out, name)
        os.makedirs(os.path.dirname(video2), exist_ok=True)
        os.makedirs(os.path.dirname(annotation2), exist_ok=True)
        with open(video2, "wb") as f:
            f.write(reencode(video, short_side, fps))
        shutil.copy(annotation, annotation2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=16, help="frames per clip M (paper: 16; TVTSv2: 12)")
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--clips", type=int, default=24, help="clips timed on the sampled-decode path")
    p.add_argument("--baseline-clips", type=int, default=4, help="clips timed on the decode-everything path")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        names = make_dataset_root(root, args.videos)
        print(f"generated {args.videos} videos (224p/360p, {FPS} fps, {SECONDS} s, GOP {GOP_SECONDS} s) "
              f"in {time.perf_counter() - t0:.1f} s")
        transform = VideoTransform(224, train=True)
        mask = MaskSpec("random", num_slots=args.frames // 2, num_patches=196, ratio=0.75)
        ds = TranscriptVideoDataset(root, names, K, L, GAP, args.frames, transform, mask, seed=0, decode_threads=1)
        sampled = clips_per_second(ds, args.clips)
        ds = TranscriptVideoDataset(root, names, K, L, GAP, args.frames, transform, mask, seed=0, decode_threads=1,
                                    timeout=DECODE_TIMEOUT)
        guarded = clips_per_second(ds, args.clips)
        ds.watchdog.close()
        torchcodec = None
        if torchcodec_available():
            ds = TranscriptVideoDataset(root, names, K, L, GAP, args.frames, transform, mask, seed=0, decode_threads=1,
                                        decode_backend="torchcodec")
            torchcodec = clips_per_second(ds, args.clips)
        dec = None
        if decord_available():
            decord_clip(root, names[0], 0, args.frames, transform, mask)  # warm-up
            t0 = time.perf_counter()
            for i in range(args.clips):
                decord_clip(root, names[i % len(names)], i % len(names), args.frames, transform, mask)
            dec = args.clips / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(args.baseline_clips):
            baseline_clip(root, names[i % len(names)], i % len(names), args.frames, transform, mask)
        full = args.baseline_clips / (time.perf_counter() - t0)
        small = os.path.join(root, "reencoded")
        t0 = time.perf_counter()
        reencoded_root(root, small, names, 256, 8.0)
        print(f"re-encoded them to 256p, 8 fps in {time.perf_counter() - t0:.1f} s")
        ds = TranscriptVideoDataset(small, names, K, L, GAP, args.frames, transform, mask, seed=0, decode_threads=1)
        reencoded = clips_per_second(ds, args.clips)
    print(f"\n1 process, decoder threads 1, M = {args.frames}")
    print(f"{'path':<52}{'clips/s':>10}")
    print(f"{'seek + decode the M sampled frames (tvts, PyAV)':<52}{sampled:>10.2f}")
    print(f"{'  the same, with the default time limit (helper)':<52}{guarded:>10.2f}")
    if torchcodec is not None:
        print(f"{'seek + decode the M sampled frames (tvts, torchcodec)':<52}{torchcodec:>10.2f}")
    else:
        print(f"{'tvts, torchcodec':<52}{'not installed':>10}")
    if dec is not None:
        print(f"{'decord VideoReader.get_batch (the peers baseline)':<52}{dec:>10.2f}")
    else:
        print(f"{'decord (the peers baseline)':<52}{'not installed':>10}")
    print(f"{'decode the whole video with PyAV, pick M':<52}{full:>10.2f}")
    print(f"{'tvts path (PyAV) on 256p / 8 fps re-encoded copies':<52}{reencoded:>10.2f}")
    if dec is not None:
        print(f"ratio tvts / decord: PyAV {sampled / dec:.2f}x"
              + (f", torchcodec {torchcodec / dec:.2f}x" if torchcodec is not None else "")
              + f"; re-encoded (PyAV) / decord on the sources: {reencoded / dec:.2f}x")
    print(f"ratio tvts / decode-everything: PyAV {sampled / full:.1f}x"
          + (f", torchcodec {torchcodec / full:.1f}x" if torchcodec is not None else ""))


if __name__ == "__main__":
    main()
