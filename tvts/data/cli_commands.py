"""``tvts data manifest|check|shard|svo-probe`` and ``tvts transcribe``: argument parsing and printing only.

:func:`add_data_parsers` adds both commands to a ``subparsers`` object; each sets ``func`` to a function of
the parsed arguments that returns the exit code (0 ok, 1 bad samples found by ``data check``).
"""

from __future__ import annotations

import argparse
import json
import os

from tvts.data.segments import GAP, NUM_SEGMENTS, SEGMENT_SECONDS
from tvts.data.watchdog import DECODE_TIMEOUT


def cmd_manifest(args) -> int:
    from tvts.data.manifest import manifest_from_webvid, manifest_from_yt

    if args.source == "yt":
        report = manifest_from_yt(args.root, args.split_list, args.out, progress=args.progress)
    else:
        report = manifest_from_webvid(args.csv, args.video_root, args.out, progress=args.progress)
    print(f"wrote {report['written']} records to {args.out}")
    for reason, n in sorted(report.get("skipped", {}).items()):
        print(f"  skipped {n} ({reason})")
    for path in report.get("skipped_files", [])[:5]:
        print(f"    {path}")
    return 0


def format_check_report(report: dict) -> str:
    """The summary table of :func:`tvts.data.manifest.check_manifest`: counts by reason, then the first
    bad records of each reason (line, video, detail)."""
    lines = [f"{report['manifest']}: {report['total']} records, {report['ok']} ok, "
             f"{report['total'] - report['ok']} bad", "", f"{'reason':<22}{'count':>8}"]
    lines += [f"{reason:<22}{n:>8}" for reason, n in sorted(report["bad"].items(), key=lambda kv: -kv[1])]
    lines.append(f"{'ok':<22}{report['ok']:>8}")
    kinds = report.get("kinds", {})
    if len(kinds) > 1 and report.get("settings", {}).get("kind", "any") == "any":
        lines.append(f"\nnote: this manifest mixes {kinds.get('transcript', 0)} transcript and {kinds.get('caption', 0)} "
                     "caption records. Training reads one kind per corpus (data.manifest: the kind most of its records have; "
                     "data.caption_manifest: captions) and skips the others as wrong_kind; check with --kind auto.")
    for reason, examples in sorted(report["examples"].items()):
        lines.append(f"\n{reason}:")
        lines += [f"  line {e['line']}: {e['video'] or e['id']}  {e['detail']}" for e in examples]
    return "\n".join(lines)


def cmd_check(args) -> int:
    from tvts.data.manifest import check_manifest

    report = check_manifest(
        args.manifest, num_segments=args.segments, segment_seconds=args.segment_seconds, gap=args.gap,
        min_words=args.min_words, video_tolerance=args.video_tolerance, max_words=args.max_words,
        max_caption_chars=args.max_caption_chars, decode=not args.no_decode, timeout=args.timeout,
        progress=not args.no_progress, kind=args.kind,
    )
    print(format_check_report(report))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, ensure_ascii=False)
    return 1 if report["bad"] else 0


def cmd_shard(args) -> int:
    from tvts.data.shards import write_shards

    report = write_shards(
        args.manifest, args.out_dir, samples_per_shard=args.samples_per_shard, short_side=args.short_side,
        fps=args.fps, progress=not args.no_progress,
    )
    print(f"wrote {report['samples']} samples in {len(report['shards'])} shards to {args.out_dir}")
    for reason, n in sorted(report["skipped"].items()):
        print(f"  skipped {n} ({reason})")
    return 0


def cmd_transcribe(args) -> int:
    from tvts.data.transcribe import transcribe_dir

    report = transcribe_dir(
        args.video_dir, args.out_root, args.model, language=args.language, device=args.device,
        compute_type=args.compute_type, progress=not args.no_progress,
    )
    print(f"transcribed {report['transcribed']}, already done {report['existing']}, "
          f"failed {len(report['failed'])}; split list {report['split_list']}")
    for path, why in report["failed"][:10]:
        print(f"  {path}: {why}")
    return 1 if report["failed"] else 0


def cmd_svo_probe(args) -> int:
    from tvts.data.svo_probe import make_svo_probe

    s = make_svo_probe(args.data, args.out, seed=args.seed)
    print(f"wrote {s['csv']}: {sum(s['rows'].values())} rows ("
          + ", ".join(f"{c}_neg {n}" for c, n in s["rows"].items()) + f"), {s['images']} images from {s['clips']} "
          f"held-out clips (seed {s['seed']})")
    return 0


def add_data_parsers(subparsers) -> None:
    """Add ``data`` (with ``manifest yt|webvid``, ``check``, ``shard``, ``svo-probe``) and ``transcribe`` to ``subparsers``."""
    data = subparsers.add_parser("data", help="build, check and shard data manifests")
    dsub = data.add_subparsers(dest="data_command", required=True)

    man = dsub.add_parser("manifest", help="convert a dataset into a JSONL manifest")
    msub = man.add_subparsers(dest="source", required=True)
    sp = msub.add_parser("yt", help="a YT-Temporal-layout root + split list -> transcript manifest")
    sp.add_argument("root", help="folder holding videos/ (and meta_data/)")
    sp.add_argument("split_list", help="tab-separated split list with a Name column")
    sp.add_argument("out", help="output .jsonl")
    sp.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    sp.set_defaults(func=cmd_manifest)
    sp = msub.add_parser("webvid", help="a WebVid CSV (videoid,contentUrl,duration,page_dir,name) -> caption manifest")
    sp.add_argument("csv", help="the WebVid CSV")
    sp.add_argument("video_root", help="folder holding <page_dir>/<videoid>.mp4")
    sp.add_argument("out", help="output .jsonl")
    sp.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    sp.set_defaults(func=cmd_manifest)

    sp = dsub.add_parser("check", help="validate every record of a manifest; exit 1 if any is bad")
    sp.add_argument("manifest", help="a JSONL manifest (tvts.data.manifest)")
    sp.add_argument("--segments", type=int, default=NUM_SEGMENTS, help=f"K transcript segments (default {NUM_SEGMENTS})")
    sp.add_argument("--segment-seconds", type=float, default=SEGMENT_SECONDS,
                    help=f"segment length l in seconds (default {SEGMENT_SECONDS:g})")
    sp.add_argument("--gap", type=float, default=GAP, help=f"gap between segments in seconds (default {GAP:g})")
    sp.add_argument("--min-words", type=int, default=1, help="words every segment needs (default 1)")
    sp.add_argument("--video-tolerance", type=float, default=0.5,
                    help="seconds the video may end before the last segment (default 0.5)")
    sp.add_argument("--max-words", type=int, default=100_000, help="longest transcript accepted (default 100000)")
    sp.add_argument("--max-caption-chars", type=int, default=10_000, help="longest caption accepted (default 10000)")
    sp.add_argument("--no-decode", action="store_true", help="only probe headers; do not decode two frames a video")
    sp.add_argument("--timeout", type=float, default=DECODE_TIMEOUT,
                    help=f"seconds one probe or decode of a record may take before it is stopped and the record "
                         f"reported as 'timeout' (0: no limit; default {DECODE_TIMEOUT:g})")
    sp.add_argument("--kind", default="any",
                    help="the records the manifest is for: transcript, caption (data.caption_manifest), auto (the kind "
                         "most records have, as training reads data.manifest) or any; a record of the other kind is "
                         "reported as wrong_kind (default any)")
    sp.add_argument("--json", default="", help="also write the report to this JSON file")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_check)

    sp = dsub.add_parser("shard", help="pack a manifest into WebDataset tar shards (optionally re-encoded)")
    sp.add_argument("manifest", help="a JSONL manifest (tvts.data.manifest)")
    sp.add_argument("out_dir", help="output folder: shard-*.tar, records.jsonl, shards.json")
    sp.add_argument("--samples-per-shard", type=int, default=1000, help="samples per tar (default 1000)")
    sp.add_argument("--short-side", type=int, default=0, help="re-encode to this short side in pixels (0: keep)")
    sp.add_argument("--fps", type=float, default=0.0, help="re-encode to this frame rate (0: keep)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_shard)

    sp = dsub.add_parser("svo-probe", help="an SVO-Probes-layout probe from still frames of the held-out narrated-shapes "
                                           "clips (negatives differ in shape or colour only), for tvts eval svo-probes")
    sp.add_argument("--data", required=True, help="the held-out folder of tvts make-synthetic (e.g. data/narrated_shapes/heldout)")
    sp.add_argument("--out", required=True, help="output folder: svo_probes.csv and images/<id>.png")
    sp.add_argument("--seed", type=int, default=0, help="draws each row's negative among the qualifying clips (default 0)")
    sp.set_defaults(func=cmd_svo_probe)

    sp = subparsers.add_parser("transcribe", help="ASR with word timestamps (faster-whisper) -> YT-Temporal layout")
    sp.add_argument("video_dir", help="folder of videos (searched recursively)")
    sp.add_argument("out_root", help="output YT-Temporal root (video links, annotations, split list)")
    sp.add_argument("--model", required=True, help="a local faster-whisper (CTranslate2) model folder")
    sp.add_argument("--language", default=None, help="language code (default: detect; 'en' for .en models)")
    sp.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    sp.add_argument("--compute-type", default="default", help="CTranslate2 compute type, e.g. int8, float16")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_transcribe)


def build_parser() -> argparse.ArgumentParser:
    """A stand-alone parser with only these commands (tests; ``tvts.cli`` adds them to its own)."""
    p = argparse.ArgumentParser(prog="tvts")
    add_data_parsers(p.add_subparsers(dest="command", required=True))
    return p
