"""WebDataset tar shards: pack a manifest (optionally re-encoded smaller), and stream them for training.

Layout written by :func:`write_shards` into ``OUT_DIR``::

    shard-000000.tar ...   WebDataset tars; sample key "000000012" = the record's index in records.jsonl,
                           members <key>.mp4 (the video bytes) and <key>.json (the record without "video":
                           id, duration, words [[word, time], ...] or caption)
    records.jsonl          the same records as a manifest (video = "<shard>/<key>.mp4", informative only)
    shards.json            {"shards": [{"path", "samples"}], "samples", "short_side", "fps", "source"}

:class:`ShardDataset` streams the tars; its samples are those of
:class:`~tvts.data.manifest.ManifestDataset` over ``records.jsonl`` with the video read from the tar
(identical tensors: same record index, same ``sample_rng(seed, epoch, index, 0)``). Only the needed frames
are decoded, from an in-memory file (``memfd``) holding the mp4 bytes.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import tarfile
import tempfile
from fractions import Fraction

import av
import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from tvts.data.samples import Skips, sample_rng
from tvts.deps import require
from tvts.data.decode import upright, decode_frames, probe
from tvts.data.manifest import INVALID, TRANSCRIPT, ManifestDataset, load_manifest
from tvts.errors import ConfigError, SampleError

__all__ = ["reencode", "write_shards", "ShardDataset"]


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def reencode(path: str, short_side: int = 0, fps: float = 0.0, *, crf: int = 23, gop_seconds: float = 1.0) -> bytes:
    """Re-encode the first video stream of ``path`` to H.264 MP4 bytes (no audio): short side ``short_side``
    pixels (aspect kept, even sizes, never upscaled; 0 keeps the size) at ``fps`` frames/s (0 keeps the source
    rate), a keyframe every ``gop_seconds`` (short GOPs make seeking to sampled times cheap). Output frame k
    shows the source frame on screen at k / fps. Raises :class:`SampleError` as :mod:`tvts.data.decode` does."""
    info = probe(path)
    rate = Fraction(fps).limit_denominator(1001) if fps else Fraction(info.fps).limit_denominator(1001)
    turns = _rotation_turns(path)  # a display rotation is applied to the pixels (the copy carries no matrix)
    w0, h0 = (info.height, info.width) if turns % 2 else (info.width, info.height)
    if short_side:
        scale = min(1.0, short_side / min(w0, h0))  # never upscaled
        width, height = _even(w0 * scale), _even(h0 * scale)
    else:
        width, height = _even(w0), _even(h0)
    buf = io.BytesIO()
    count = int(np.ceil(info.duration * float(rate) - 1e-6))
    with av.open(path, metadata_errors="ignore") as src, av.open(buf, "w", format="mp4") as dst:
        stream = src.streams.video[0]
        start = stream.start_time or 0
        out = dst.add_stream("libx264", rate=rate)
        out.width, out.height, out.pix_fmt = width, height, "yuv420p"
        gop = str(max(1, int(round(gop_seconds * float(rate)))))
        out.options = {"crf": str(crf), "preset": "veryfast", "g": gop, "keyint_min": gop, "sc_threshold": "0"}
        k, prev = 0, None

        def emit(frame):
            nonlocal k
            if turns:
                frame = av.VideoFrame.from_ndarray(upright(frame.to_ndarray(format="rgb24"), frame), format="rgb24")
            for packet in out.encode(frame.reformat(width=width, height=height, format="yuv420p")):
                dst.mux(packet)
            k += 1

        try:
            for frame in src.decode(stream):
                t = float((frame.pts - start) * stream.time_base) if frame.pts is not None else k / float(rate)
                while prev is not None and k < count and k / float(rate) < t - 1e-6:
                    emit(prev)
                prev = frame
            while prev is not None and k < count:
                emit(prev)
        except (av.error.FFmpegError, OSError, EOFError) as e:
            raise SampleError("decode", path, f"re-encoding: {e}") from e
        if prev is None:
            raise SampleError("unreadable", path, "no frame could be decoded")
        for packet in out.encode():
            dst.mux(packet)
    return buf.getvalue()


def _rotation_turns(path: str) -> int:
    """Quarter turns of the first frame's display rotation (0 when there is none)."""
    try:
        with av.open(path, metadata_errors="ignore") as c:
            frame = next(c.decode(video=0), None)
    except (av.error.FFmpegError, OSError, EOFError):
        return 0
    return int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4 if frame is not None else 0


def write_shards(
    manifest: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    samples_per_shard: int = 1000,
    short_side: int = 0,
    fps: float = 0.0,
    progress: bool = True,
) -> dict:
    """Pack the records of ``manifest`` into WebDataset shards of ``samples_per_shard`` samples (layout in
    the module docstring), re-encoding when ``short_side`` or ``fps`` is set, else copying the file bytes.
    Invalid records and videos that cannot be read (probe + two frames decoded) are left out and counted.
    Returns ``{"samples": n, "shards": [paths], "skipped": {reason: count}}``."""
    from tqdm import tqdm

    wds = require("webdataset", "tvts data shard")

    if not isinstance(samples_per_shard, int) or samples_per_shard < 1:
        raise ConfigError(f"samples_per_shard must be an int >= 1, got {samples_per_shard!r}",
                          field="samples_per_shard")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    records = load_manifest(manifest)
    skipped: dict[str, int] = {}
    written: list[dict] = []
    pattern = os.path.join(out_dir, "shard-%06d.tar")
    with wds.ShardWriter(pattern, maxcount=samples_per_shard, verbose=0) as sink:
        for i in tqdm(range(len(records)), desc="shard", unit="sample", disable=not progress):
            try:
                if int(records.kind[i]) == INVALID:
                    reason, detail = records.invalid_reason(i)
                    raise SampleError(reason, records.ids[i], detail)
                video = records.video_path(i)
                if short_side or fps:
                    data = reencode(video, short_side, fps)
                else:
                    with open(video, "rb") as f:
                        data = f.read()
                with _memory_file(data) as path:  # the packed bytes must decode, not just the source
                    info = probe(path)
                    decode_frames(path, [0.0, info.duration], threads=1)
            except FileNotFoundError:
                skipped["missing"] = skipped.get("missing", 0) + 1
                continue
            except SampleError as e:
                skipped[e.reason] = skipped.get(e.reason, 0) + 1
                continue
            key = f"{len(written):09d}"
            d = float(records.duration[i])
            record = {"id": records.ids[i], "duration": info.duration if np.isnan(d) else d}
            if int(records.kind[i]) == TRANSCRIPT:
                t = records.transcript(i, record["duration"])
                record["words"] = [[w, s] for w, s in zip(t.words, t.times.tolist())]
            else:
                record["caption"] = records.texts[i]
            sink.write({"__key__": key, "mp4": data, "json": record})
            written.append({**record, "video": f"{os.path.basename(sink.fname)}/{key}.mp4"})
    counts: dict[str, int] = {}
    for r in written:
        shard = r["video"].split("/")[0]
        counts[shard] = counts.get(shard, 0) + 1
    with open(os.path.join(out_dir, "records.jsonl"), "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in written)
    index = {"shards": [{"path": s, "samples": n} for s, n in counts.items()], "samples": len(written),
             "short_side": short_side, "fps": fps, "source": os.path.abspath(os.fspath(manifest))}
    with open(os.path.join(out_dir, "shards.json"), "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1)
    return {"samples": len(written), "shards": [os.path.join(out_dir, s) for s in counts], "skipped": skipped}


@contextlib.contextmanager
def _memory_file(data: bytes):
    """A filesystem path whose content is ``data``: an anonymous in-memory file (Linux ``memfd``) or, where
    that does not exist, a temporary file. FFmpeg opens it like any file, so :func:`decode_frames` seeks and
    decodes only the needed frames."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("tvts-sample")
        try:
            os.write(fd, data)
            # this process's pid, not "self": the decode may run in a helper process (tvts.data.watchdog)
            yield f"/proc/{os.getpid()}/fd/{fd}"
        finally:
            os.close(fd)
    else:
        with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
            f.write(data)
            f.flush()
            yield f.name


def _tar_samples(path: str):
    """``(record index, mp4 bytes)`` for each sample of one shard, in file order."""
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".mp4"):
                yield int(os.path.basename(member.name).split(".")[0]), tar.extractfile(member).read()


class ShardDataset(IterableDataset):
    """Stream the shards of :func:`write_shards`, split across ranks and DataLoader workers.

    ``shard_dir``: the output folder (``shards.json`` + ``records.jsonl`` + tars). The remaining positional
    and keyword arguments are those of :class:`~tvts.data.manifest.ManifestDataset` (``num_segments``,
    ``segment_seconds``, ``gap``, ``num_frames``, ``transform``, ``mask``, ``train``, ``seed``...); items are
    its items (same dict, same tensors for the same record and epoch) plus ``position`` (the sample's
    place in this rank's stream).

    Order, for epoch e: the shards are permuted by (seed, e) and rank r of ``world_size`` takes every
    ``world_size``-th one; its samples pass a shuffle buffer of ``shuffle_buffer`` samples (random from
    (seed, e, r); 0 = no shuffling) - this is the rank's stream, the same in every worker. Worker w of W takes
    the blocks of ``block_size`` consecutive stream positions numbered w, w + W, ...; with ``block_size`` =
    the DataLoader batch size the loader delivers exactly the stream order. :meth:`set_position` (epoch,
    samples already consumed by this rank) restarts the stream after that many samples (exact resume).
    Each worker reads all of its rank's shards but decodes only its own samples. Every rank streams
    ``len(self)`` samples (the smallest rank's share), so DDP ranks stay in step.

    A sample that fails (:class:`SampleError`) is skipped; it is counted in the ``skipped``/``bad_paths`` of
    the next sample the worker yields (and then shifts that worker's later batches by one, so resume is exact
    only for streams without such failures; ``write_shards`` packs only videos that decode).
    """

    def __init__(self, shard_dir: str | os.PathLike, *args, rank: int = 0, world_size: int = 1,
                 shuffle_buffer: int = 1000, block_size: int = 1, **kwargs):
        shard_dir = os.fspath(shard_dir)
        with open(os.path.join(shard_dir, "shards.json"), encoding="utf-8") as f:
            index = json.load(f)
        if not 0 <= rank < world_size:
            raise ConfigError(f"rank must be in [0, {world_size}), got {rank}", field="rank")
        if block_size < 1 or shuffle_buffer < 0:
            raise ConfigError("block_size must be >= 1 and shuffle_buffer >= 0", field="block_size")
        self.shards = [os.path.join(shard_dir, s["path"]) for s in index["shards"]]
        self.shard_samples = [int(s["samples"]) for s in index["shards"]]
        # the records as a map-style corpus: the samples are its samples, with the video read from the tar
        self.corpus = ManifestDataset(os.path.join(shard_dir, "records.jsonl"), *args, **kwargs)
        self.rank, self.world_size = rank, world_size
        self.shuffle_buffer, self.block_size = shuffle_buffer, block_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Epoch to stream and samples of this rank's stream to skip (call before creating the iterator)."""
        self.epoch, self.start = int(epoch), int(start)
        self.corpus.set_epoch(epoch)

    def _shard_order(self) -> np.ndarray:
        return sample_rng(self.corpus.seed, self.epoch, 0, 0).permutation(len(self.shards))

    def rank_shards(self) -> list[str]:
        """This rank's shards for the current epoch, in reading order."""
        return [self.shards[j] for j in self._shard_order()[self.rank :: self.world_size]]

    frame_store_ok = False  # a stream of shards has no per-video files to index

    def __len__(self) -> int:
        """Samples in this rank's stream for the current epoch: the smallest rank's share, so that every rank
        runs the same number of steps under DDP (the others drop their last samples, different ones each
        epoch as the shard order changes)."""
        perm = self._shard_order()
        return min(sum(self.shard_samples[j] for j in perm[r :: self.world_size]) for r in range(self.world_size))

    def stream(self):
        """This rank's stream: ``len(self)`` items ``(record index, mp4 bytes)`` in shuffled order (no
        decoding)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.corpus.seed, self.epoch, self.rank, 1]))
        yield from itertools.islice(self._shuffled(rng), len(self))

    def _shuffled(self, rng: np.random.Generator):
        buf = []
        for shard in self.rank_shards():
            for item in _tar_samples(shard):
                if len(buf) < self.shuffle_buffer:
                    buf.append(item)
                    continue
                if not buf:
                    yield item
                    continue
                j = int(rng.integers(len(buf)))
                yield buf[j]
                buf[j] = item
        for j in rng.permutation(len(buf)):
            yield buf[j]

    def __iter__(self):
        worker = get_worker_info()
        wid, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        epoch = self.epoch if self.corpus.train else 0
        skips = Skips()
        for position, (index, data) in enumerate(self.stream()):
            if position < self.start or ((position - self.start) // self.block_size) % workers != wid:
                continue
            try:
                with _memory_file(data) as path:
                    sample = self.corpus.load(index, sample_rng(self.corpus.seed, epoch, index, 0), video=path)
            except SampleError as e:
                skips.add(e, self.corpus.records.videos[index])
                continue
            sample["position"] = position
            yield skips.stamp(sample)
