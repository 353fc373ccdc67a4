"""``tvts index``, ``tvts search`` and ``tvts serve``: argument parsing (imports nothing heavy, so that
``tvts --help`` stays fast) and the glue to :mod:`tvts.search`."""

from __future__ import annotations

import json
import sys

from tvts.data.watchdog import DECODE_TIMEOUT
from tvts.eval.cli_commands import add_processor_options

DEFAULT_K = 10


def cmd_index(args) -> int:
    from tvts.device import pick_device
    from tvts.eval.cli_commands import video_processor
    from tvts.models import load_model
    from tvts.search.index import build_index, failed_line

    device = pick_device(args.device)
    model = load_model(args.model).to(device).eval()
    processor = video_processor(vars(args))  # the model folder's, as extract uses it
    res = build_index(model, args.videos, args.out, model_dir=args.model, processor=processor, window=args.window,
                      stride=args.stride, batch_size=args.batch_size, workers=args.workers, device=device,
                      progress=args.progress, timeout=args.timeout, thumb_size=args.thumb_size)
    print(f"[tvts] index {args.out}: {res['videos']} videos, {res['windows']} windows; {res['embedded']} embedded now "
          f"({res['changed']} changed), {res['reused']} reused, {res['removed']} removed")
    if res["failed"]:
        print(f"[tvts] {failed_line(res['failed'])}")
    return 0


def cmd_search(args) -> int:
    from tvts.errors import ConfigError
    from tvts.search.query import SearchIndex, like_query, load_query_model, parse_like, text_query

    if (args.query is None) == (args.like is None):
        raise ConfigError("give a text query or --like VIDEO[@SECONDS] (one of them)", field="query")
    index = SearchIndex(args.index)
    if args.like:
        q, exclude = like_query(index, *parse_like(args.like), model_loader=lambda: load_query_model(index, args.model))
    else:
        q, exclude = text_query(load_query_model(index, args.model), args.query), {}
    moments = index.search(q, args.k, backend=args.backend, **exclude)
    if args.json:
        json.dump({"query": args.query, "like": args.like, "moments": [m.to_dict() for m in moments]}, sys.stdout, indent=2)
        print()
        return 0
    for rank, m in enumerate(moments, 1):
        print(f"{rank:3d}  {m.score:7.4f}  {m.start:8.2f}-{m.end:<8.2f}  {m.video}")
    if not moments:
        print("(the index is empty)")
    return 0


def cmd_serve(args) -> int:
    from tvts.search.serve import serve

    serve(args.index, host=args.host, port=args.port, model_dir=args.model, backend=args.backend)
    return 0


def add_search_parsers(subparsers) -> None:
    sp = subparsers.add_parser("index", help="embed a folder of videos as overlapping windows into a search index "
                                             "(resumable, incremental)")
    sp.add_argument("videos", help="a folder of videos (searched recursively)")
    sp.add_argument("--model", required=True, help="a model folder (model.safetensors + config.json)")
    sp.add_argument("--out", required=True, help="the index folder (created, or updated when it exists)")
    sp.add_argument("--window", type=float, default=4.0, help="window length in seconds (default 4)")
    sp.add_argument("--stride", type=float, default=None, help="seconds between window starts (default: window / 2)")
    sp.add_argument("--thumb-size", type=int, default=160, help="longest side of the thumbnails in pixels")
    sp.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    sp.add_argument("--workers", type=int, default=2, help="DataLoader processes decoding videos")
    sp.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_processor_options(sp, "frames per window")
    sp.add_argument("--timeout", type=float, default=DECODE_TIMEOUT,
                    help=f"seconds one video's probe or decode may take before it is skipped (0: no limit; "
                         f"default {DECODE_TIMEOUT:g})")
    sp.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    sp.set_defaults(func=cmd_index)

    sp = subparsers.add_parser("search", help="rank the moments of an index for a text or a video")
    sp.add_argument("index", help="an index folder (tvts index)")
    sp.add_argument("query", nargs="?", default=None, help='a text, e.g. "a person opens a door"')
    sp.add_argument("--like", default=None, metavar="VIDEO[@SECONDS]",
                    help="video-to-video: moments like this video (indexed, or any file) or its window at SECONDS")
    sp.add_argument("-k", type=int, default=DEFAULT_K, help=f"how many moments (default {DEFAULT_K})")
    sp.add_argument("--json", action="store_true", help="print JSON")
    sp.add_argument("--backend", default="exact", choices=("exact", "faiss"),
                    help="exact: one matrix product; faiss: a FAISS inner-product index (pip install 'tvts[faiss]')")
    sp.add_argument("--model", default=None, help="the model folder, when it moved since indexing (same weights)")
    sp.set_defaults(func=cmd_search)

    sp = subparsers.add_parser("serve", help="a local web page to search an index (127.0.0.1 by default)")
    sp.add_argument("index", help="an index folder (tvts index)")
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    sp.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    sp.add_argument("--model", default=None, help="the model folder, when it moved since indexing (same weights)")
    sp.add_argument("--backend", default="exact", choices=("exact", "faiss"))
    sp.set_defaults(func=cmd_serve)
