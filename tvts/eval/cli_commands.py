"""``tvts extract`` and ``tvts eval <protocol>``: argument parsing and the glue from options to protocols.

Every protocol is one entry of :data:`PROTOCOLS`; :func:`run_protocol` runs one from a dict of options (the
same names as the command-line options, with ``_``), so ``tvts eval all --config eval.yaml`` runs a list of
them with exactly the behaviour of the single commands.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tvts.data.choices import INTERPOLATIONS, PRESETS
from tvts.data.watchdog import DECODE_TIMEOUT
from tvts.eval.options import (DATASET_CHOICES, ENCODER_OPTIONS, FOLDS, PROTOCOL_OPTIONS, SPLITS, VOTES, defaults,
                               resolve_options)

COMMON_DEFAULTS = defaults()  # what every protocol shares (tvts.eval.options, where each default is stated)
PROTOCOL_DEFAULTS = {name: defaults(name) for name in PROTOCOL_OPTIONS}
PROTOCOL_HELP = {
    "retrieval": "zero-shot text-to-video and video-to-text retrieval (MSR-VTT 1k-A, MSVD, DiDeMo, LSMDC)",
    "zero-shot": "zero-shot action recognition with class-name prompts (UCF-101, HMDB-51, Kinetics-400)",
    "ssv2-mc": "SSV2 multiple choice: the true description against one per other class",
    "linear-probe": "a linear classifier on frozen, cached video features (train split -> test split)",
    "knn": "cosine kNN classification on frozen video features (CPD: k = 25)",
    "v2v": "zero-shot video-to-video retrieval by class (TVTS Table 4)",
    "sort": "transcript sort accuracy (TVTS appendix) on a YT-Temporal-layout list",
    "finetune": "fine-tune the video encoder + a linear head (AdamW), test with clips x crops views",
    "svo-probes": "SVO-Probes (TVTS appendix C.2): sentence vs positive/negative image, precision at thresholds "
                  "and pairwise accuracy per concept",
}
NUM_EXAMPLES = 4


# ---------------------------------------------------------------------------------------- encoder
def _encoder(opts: dict):
    from tvts.eval.protocols import Encoder
    from tvts.models import load_model
    from tvts.device import pick_device

    device = pick_device(opts["device"])
    model = load_model(opts["model"]).to(device).eval()
    cache = Path(opts["cache"]) if opts["cache"] else Path(opts["out"]).parent / "features"
    return Encoder(model, str(opts["model"]), video_processor(opts), opts["clips"], opts["crops"], opts["batch_size"],
                   opts["workers"], device, cache, opts["progress"])


def video_processor(opts: dict):
    """The model folder's video processor (``preprocessor.json``), or ``preset`` at the model's frames and size,
    with the options that are set (``num_frames`` > 0, ``resize_ratio``, ``interpolation``) changed."""
    from tvts.data.processor import VideoProcessor

    saved = VideoProcessor.from_pretrained(opts["model"])
    base = VideoProcessor.from_preset(opts["preset"], saved.num_frames, saved.size) if opts["preset"] else saved
    return base.replace(num_frames=opts["num_frames"] or None, resize_ratio=opts["resize_ratio"],
                        interpolation=opts["interpolation"])


def _templates(opts: dict) -> tuple[str, ...]:
    from tvts.eval.protocols import DEFAULT_TEMPLATES

    templates = list(opts["template"] or [])
    if opts["templates_file"]:
        templates += [t.strip() for t in Path(opts["templates_file"]).read_text(encoding="utf-8").splitlines() if t.strip()]
    bad = [t for t in templates if "{}" not in t]
    if bad:
        from tvts.errors import ConfigError

        raise ConfigError(f"a template needs '{{}}' where the class name goes: {bad}", field="template")
    return tuple(templates) or DEFAULT_TEMPLATES


# ---------------------------------------------------------------------------------------- protocols
def _retrieval(enc, o, figs):
    from tvts.eval.annotations import RETRIEVAL_READERS
    from tvts.eval.figures import retrieval_examples_png
    from tvts.eval.protocols import zero_shot_retrieval

    ds = RETRIEVAL_READERS[o["dataset"]](o["data"], o["videos"])
    res = zero_shot_retrieval(enc, ds, o["dsl_temperature"] if o["dsl"] else None, NUM_EXAMPLES if figs else 0)
    if res.examples:
        png = retrieval_examples_png(res.examples, figs / f"{ds.name}_retrieval_examples.png")
        res.metrics[f"{ds.name}/zs-retrieval"]["figure"] = str(png)
    return res.metrics


def _classification_figures(result, name: str, ds, figs: Path | None, with_top5: bool) -> dict:
    """The metrics of a :class:`~tvts.eval.protocols.Classified`, with its confusion matrix (and top-5 bars)
    drawn and named in them."""
    from tvts.eval.figures import confusion_matrix_png, top5_png

    res, logits, keep = result.metrics, result.logits, result.keep
    if figs is not None:
        stem = name.replace("/", "_")
        res["figures"] = [str(confusion_matrix_png(res["confusion"], ds.class_names, figs / f"{stem}_confusion.png", name))]
        if with_top5:
            pick = list(range(0, len(keep), max(1, len(keep) // NUM_EXAMPLES)))[:NUM_EXAMPLES]
            res["figures"].append(str(top5_png(logits[pick], [ds.labels[keep[i]] for i in pick], ds.class_names,
                                               [ds.paths[keep[i]] for i in pick], figs / f"{stem}_top5.png",
                                               scale=100.0 if name.endswith("zs-recognition") else 1.0)))
    return res


def _zero_shot(enc, o, figs):
    from tvts.eval.annotations import read_labelled
    from tvts.eval.protocols import zero_shot_recognition

    ds = read_labelled(o["dataset"], o["data"], o["split"], o["videos"], o["fold"])
    name = f"{ds.name}/zs-recognition"
    return {name: _classification_figures(zero_shot_recognition(enc, ds, _templates(o)), name, ds, figs, True)}


def _ssv2_mc(enc, o, figs):
    from tvts.eval.annotations import read_labelled
    from tvts.eval.protocols import ssv2_mc

    ds = read_labelled(o["dataset"], o["data"], o["split"], o["videos"])
    return {f"{ds.name}/mc-seed{o['seed']}": ssv2_mc(enc, ds, o["seed"])}


def _frozen(enc, o, figs, protocol: str):
    from tvts.eval.annotations import read_labelled
    from tvts.eval.protocols import frozen_feature_protocols

    train = read_labelled(o["dataset"], o["data"], "train", o["videos"], o["fold"])
    test = read_labelled(o["dataset"], o["data"], "test", o["videos"], o["fold"])
    xtr, ytr, _, failed_tr = enc.labelled(train)
    xte, yte, keep, failed_te = enc.labelled(test)
    if protocol == "linear-probe":
        kw = {"epochs": o["epochs"], "lr": o["lr"], "batch_size": o["probe_batch_size"], "seed": o["seed"]}
    else:
        kw = {"k": o["k"], "vote": o["vote"]}
    res = frozen_feature_protocols((xtr, ytr), (xte, yte), len(test.class_names), protocols=(protocol,), **kw)[protocol]
    res.keep = keep
    res.metrics.update({"num_failed": len(failed_tr) + len(failed_te), "failed": (failed_tr + failed_te)[:20]})
    name = f"{test.name}/linear-probe" if protocol == "linear-probe" else f"{test.name}/knn-k{o['k']}-{o['vote']}"
    return {name: _classification_figures(res, name, test, figs, protocol == "linear-probe")}


def _v2v(enc, o, figs):
    from tvts.eval.annotations import read_labelled
    from tvts.eval.metrics import v2v_retrieval_metrics

    ds = read_labelled(o["dataset"], o["data"], o["split"], o["videos"], o["fold"])
    x, y, _, failed = enc.labelled(ds)
    return {f"{ds.name}/v2v": {**v2v_retrieval_metrics(x, y), "num_videos": len(y), "num_failed": len(failed),
                               "failed": failed[:20]}}


def _sort(enc, o, figs):
    from tvts.data.datasets import TranscriptVideoDataset
    from tvts.eval.protocols import sort_accuracy

    root = Path(o["data"])
    split = Path(o["list"]) if o["list"] else root / "meta_data" / "yttemporal_val.csv"
    cfg = enc.model.config
    ds = TranscriptVideoDataset(root, split, num_segments=cfg.num_segments, segment_seconds=o["segment_seconds"],
                                gap=o["gap"], num_frames=enc.num_frames, transform=enc.transform, train=False)
    res = sort_accuracy(enc.model, ds, enc.batch_size, enc.workers, enc.device, enc.progress)
    return {f"yttemporal-{split.stem}/sort-K{res['K']}": {**res, "dataset": str(split)}}


def _finetune(enc, o, figs):
    import copy

    from tvts.eval.annotations import read_labelled
    from tvts.eval.finetune import finetune

    train = read_labelled(o["dataset"], o["data"], "train", o["videos"], o["fold"])
    test = read_labelled(o["dataset"], o["data"], "test", o["videos"], o["fold"])
    name = f"{test.name}/finetune"
    out_dir = Path(o["out"]).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    res = finetune(copy.deepcopy(enc.model), train, test, processor=enc.processor,
                   epochs=o["epochs"], lr=o["lr"], weight_decay=o["weight_decay"], batch_size=enc.batch_size,
                   clips=o["clips"], crops=o["crops"], workers=enc.workers, device=enc.device, seed=o["seed"],
                   save_to=out_dir / f"{name.replace('/', '_')}.safetensors", progress=enc.progress)
    return {name: _classification_figures(res, name, test, figs, True)}


def _svo_probes(enc, o, figs):
    from tvts.eval.annotations import read_svo_probes
    from tvts.eval.protocols import svo_problem_lines, svo_probes

    ds = read_svo_probes(o["data"], o["images"])
    res = svo_probes(enc, ds, o["thresholds"])
    lines = svo_problem_lines(res, Path(ds.csv_path).name)
    for line in lines[:10]:
        print(f"[tvts] {ds.name}: {line}")
    if res["num_malformed"] + res["num_missing"] + res["num_failed"] > min(10, len(lines)):
        print(f"[tvts] {ds.name}: {res['num_malformed']} malformed rows, {res['num_missing']} missing and "
              f"{res['num_failed']} unreadable images in all (the first 20 of each are in the report)")
    return {f"{ds.name}/zs-svo": res}


PROTOCOLS = {
    "retrieval": _retrieval, "zero-shot": _zero_shot, "ssv2-mc": _ssv2_mc,
    "linear-probe": lambda e, o, f: _frozen(e, o, f, "linear-probe"), "knn": lambda e, o, f: _frozen(e, o, f, "knn"),
    "v2v": _v2v, "sort": _sort, "finetune": _finetune, "svo-probes": _svo_probes,
}


def run_protocol(protocol: str, opts: dict, enc=None, figures_dir: Path | None = None, source: str = "") -> dict[str, dict]:
    """Run one protocol; ``opts`` holds ``model``, ``data`` and any option of ``tvts.eval.options`` (checked and
    filled with the protocol's defaults by :func:`~tvts.eval.options.resolve_options`). Returns
    ``{result name: metrics}``."""
    o = resolve_options(protocol, opts, source)
    enc = enc or _encoder(o)
    if figures_dir is not None:
        figures_dir.mkdir(parents=True, exist_ok=True)
    return PROTOCOLS[protocol](enc, o, figures_dir)


def _add(results: dict, new: dict) -> None:
    """Merge, renaming a repeated result name ``name`` to ``name#2``, ``name#3``, ..."""
    for name, r in new.items():
        key, n = name, 1
        while key in results:
            n += 1
            key = f"{name}#{n}"
        results[key] = r


# ---------------------------------------------------------------------------------------- commands
def _opts(args) -> dict:
    skip = {"func", "command", "eval_protocol", "config"}
    return {k: v for k, v in vars(args).items() if k not in skip}


def _finish(results: dict, opts: dict, out: str, started: float) -> int:
    from tvts.eval.report import markdown_report, merge_report, write_report

    settings = {k: v for k, v in opts.items() if k not in ("protocols",)}
    report = {"model": str(opts.get("model", "")), "results": results, "seconds": round(time.time() - started, 1),
              "settings": {name: settings for name in results}}
    js, md = write_report(out, merge_report(out, report))
    print(markdown_report(results))
    print(f"[tvts] report: {js} and {md}")
    return 0


def cmd_eval(args) -> int:
    opts = _opts(args)
    t0 = time.time()
    out = Path(opts["out"])
    results = run_protocol(args.eval_protocol, opts, figures_dir=out.parent / "figures" if opts["figures"] else None)
    return _finish(results, opts, str(out), t0)


def cmd_eval_all(args) -> int:
    """Run the ``protocols`` list of a YAML config; top-level keys are defaults for every entry."""
    import yaml

    from tvts.errors import ConfigError

    cfg = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
    if not isinstance(cfg.get("protocols"), list) or not cfg["protocols"]:
        raise ConfigError("the config needs a non-empty 'protocols' list", field="protocols", source=args.config)
    shared = {k: v for k, v in cfg.items() if k != "protocols"}
    if args.model:
        shared["model"] = args.model
    out = Path(args.out or shared.get("out", COMMON_DEFAULTS["out"]))
    figs = out.parent / "figures" if shared.get("figures", True) else None
    t0, results, encoders, runs = time.time(), {}, {}, []
    for n, entry in enumerate(cfg["protocols"], 1):  # every entry checked before any protocol runs
        entry = dict(entry)
        protocol = entry.pop("protocol", None)
        source = f"{args.config}, protocols[{n}] ({protocol})"
        runs.append((protocol, resolve_options(protocol, {**shared, **entry, "out": str(out)}, source), source))
    for protocol, opts, source in runs:
        key = tuple(str(opts[k]) for k in ENCODER_OPTIONS)
        if key not in encoders:  # protocols with the same model and preprocessing share one loaded model
            encoders = {key: _encoder(opts)}
        _add(results, run_protocol(protocol, opts, encoders[key], figs, source))
    return _finish(results, {**shared, "config": args.config}, str(out), t0)


def cmd_extract(args) -> int:
    from tvts.eval.annotations import VideoIndex
    from tvts.eval.extract import extract_features, side_paths

    opts = {**_opts(args), "cache": None}
    enc = _encoder(opts)
    if args.videos:
        index = VideoIndex(args.videos)
        ids = [str(Path(rel).with_suffix("")) for rel in sorted(index.by_rel)]
        paths = [index.by_rel[rel] for rel in sorted(index.by_rel)]
    else:
        base = Path(args.list).parent
        ids = [ln.strip() for ln in Path(args.list).read_text(encoding="utf-8").splitlines() if ln.strip()]
        paths = [str(p if Path(p).is_absolute() else base / p) for p in ids]
    f = extract_features(enc.model, paths, ids, args.out, model_dir=args.model, processor=enc.processor,
                         clips=args.clips, crops=args.crops, reduce=args.reduce,
                         batch_size=args.batch_size, workers=args.workers, device=enc.device, progress=args.progress,
                         timeout=args.timeout)
    files = side_paths(args.out)
    print(f"[tvts] {len(f.ids)} videos -> {files['features']} {tuple(f.features.shape)}; index {files['index']}; "
          f"preprocessing {files['preprocessing']}; {len(f.failed)} failed ({files['failed']})")
    for fail in f.failed[:10]:
        print(f"  failed: {fail['video_id']}: {fail['reason']} {fail['detail']}")
    return 0


# ---------------------------------------------------------------------------------------- parsers
def _common(sp, data_help: str = "the dataset folder (annotation files in it or in a direct sub-folder)") -> None:
    sp.add_argument("--model", required=True, help="a model folder (model.safetensors + config.json), trained or converted")
    sp.add_argument("--data", required=True, help=data_help)
    sp.add_argument("--videos", default=None, help="the video folder, searched recursively (default: DATA/videos)")
    sp.add_argument("--out", default=COMMON_DEFAULTS["out"], help="report JSON (a .md is written beside it; figures in ./figures)")
    sp.add_argument("--cache", default=None, help="video-feature cache folder (default: features/ beside --out)")
    _encoding(sp)
    sp.add_argument("--no-figures", dest="figures", action="store_false", help="do not draw the PNG figures")


def _encoding(sp) -> None:
    d = COMMON_DEFAULTS
    sp.add_argument("--clips", type=int, default=d["clips"], help="temporal clips per video (views are averaged)")
    sp.add_argument("--crops", type=int, default=d["crops"], choices=(1, 3), help="spatial crops per clip")
    sp.add_argument("--batch-size", type=int, default=d["batch_size"], help="videos per forward pass")
    sp.add_argument("--workers", type=int, default=d["workers"], help="DataLoader processes decoding videos")
    sp.add_argument("--device", default=d["device"], help="auto, cpu or cuda")
    add_processor_options(sp)
    sp.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def add_processor_options(sp, frames_help: str = "frames per clip") -> None:
    """The options that change the model folder's video processor for one run (:func:`video_processor`)."""
    sp.add_argument("--preset", default=None, choices=tuple(PRESETS),
                    help="preprocessing preset instead of the model folder's preprocessor.json (tvtsv2-extract: the "
                         "released TVTSv2 feature-extraction script; tvtsv2-eval / tvts-eval: the released evaluation code)")
    sp.add_argument("--num-frames", type=int, default=0, help=f"{frames_help} (default: the model folder's)")
    sp.add_argument("--resize-ratio", type=float, default=None,
                    help="short side = img_size x ratio before the centre crop (default: the model folder's)")
    sp.add_argument("--interpolation", default=None, choices=INTERPOLATIONS, help="default: the model folder's")


def _protocol_options(name: str, sp) -> None:
    d = PROTOCOL_DEFAULTS[name]
    if name == "retrieval":
        sp.add_argument("--dataset", default=d["dataset"], choices=DATASET_CHOICES[name])
        sp.add_argument("--dsl", action="store_true", help="also report dual-softmax re-ranked retrieval (as <name>-dsl)")
        sp.add_argument("--dsl-temperature", type=float, default=d["dsl_temperature"])
        return
    if name == "svo-probes":
        sp.add_argument("--images", default=None, help="the image folder, searched recursively; an image is found by "
                                                       "its id as file name (default: DATA/images)")
        sp.add_argument("--thresholds", type=float, nargs="+", default=d["thresholds"],
                        help="cosine-similarity thresholds rho for the precision (default: 0.2 0.25 0.3, TVTS Table 4)")
        return
    if name == "sort":
        sp.add_argument("--list", default=None, help="split list (default: DATA/meta_data/yttemporal_val.csv)")
        sp.add_argument("--segment-seconds", type=float, default=d["segment_seconds"])
        sp.add_argument("--gap", type=float, default=d["gap"])
        return
    sp.add_argument("--dataset", default=d["dataset"], choices=DATASET_CHOICES[name])
    if "split" in d:
        sp.add_argument("--split", default=d["split"], choices=SPLITS,
                        help="test and val both mean the evaluation split")
    if "fold" in d:
        sp.add_argument("--fold", type=int, default=d["fold"], choices=FOLDS, help="UCF-101 / HMDB-51 split number")
    if name == "zero-shot":
        sp.add_argument("--template", action="append", default=None,
                        help='prompt with {} for the class name (repeat for an ensemble; default "a person {}")')
        sp.add_argument("--templates-file", default=None, help="a text file of templates, one per line (an ensemble)")
    if name in ("ssv2-mc", "linear-probe", "finetune"):
        sp.add_argument("--seed", type=int, default=d["seed"])
    if name == "finetune":
        sp.add_argument("--epochs", type=int, default=d["epochs"], help="TVTS: 100 (50 on SSV2)")
        sp.add_argument("--lr", type=float, default=d["lr"])
        sp.add_argument("--weight-decay", type=float, default=d["weight_decay"])
        sp.set_defaults(clips=d["clips"], crops=d["crops"])  # test views, TVTS: 2 x 3 (5 x 3 on Kinetics-400)
    if name == "linear-probe":
        sp.add_argument("--epochs", type=int, default=d["epochs"])
        sp.add_argument("--lr", type=float, default=d["lr"])
        sp.add_argument("--probe-batch-size", type=int, default=d["probe_batch_size"])
    if name == "knn":
        sp.add_argument("--k", type=int, default=d["k"])
        sp.add_argument("--vote", default=d["vote"], choices=VOTES)


def add_eval_parsers(subparsers) -> None:
    """``tvts eval <protocol> ...`` and ``tvts eval all --config eval.yaml``."""
    p = subparsers.add_parser("eval", help="evaluate a model with one protocol, or a list of them (eval all)")
    sub = p.add_subparsers(dest="eval_protocol", required=True)
    assert set(PROTOCOL_HELP) == set(PROTOCOL_OPTIONS) == set(PROTOCOLS)
    for name, help_text in PROTOCOL_HELP.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        _common(sp, {"sort": "the YT-Temporal-layout root",
                     "svo-probes": "the SVO-Probes folder (svo_probes.csv in it or in a direct sub-folder)"}.get(
                         name, "the dataset folder (annotation files in it or in a direct sub-folder)"))
        _protocol_options(name, sp)
        sp.set_defaults(func=cmd_eval)
    sp = sub.add_parser("all", help="run the protocols listed in a YAML config and write one report")
    sp.add_argument("--config", required=True, help="YAML: shared options at the top level and a 'protocols' list")
    sp.add_argument("--model", default=None, help="overrides the config's model")
    sp.add_argument("--out", default=None, help="overrides the config's out")
    sp.set_defaults(func=cmd_eval_all)


def add_extract_parser(subparsers) -> None:
    """``tvts extract``: features of a folder or list of videos."""
    sp = subparsers.add_parser("extract", help="extract video features (resumable) to safetensors + JSON index")
    sp.add_argument("--model", required=True, help="a model folder (model.safetensors + config.json)")
    src = sp.add_mutually_exclusive_group(required=True)
    src.add_argument("--videos", help="a folder of videos (searched recursively; ids = relative paths without extension)")
    src.add_argument("--list", help="a text file of video paths, one per line (relative to the file's folder); ids = the lines")
    sp.add_argument("--out", required=True, help="features file (.safetensors); index, preprocessing and failures beside it")
    sp.add_argument("--reduce", default="mean", choices=("mean", "none"), help="average the views or keep them [N, V, D]")
    sp.add_argument("--timeout", type=float, default=DECODE_TIMEOUT,
                    help=f"seconds one video's probe or decode may take before it is stopped and listed as failed "
                         f"('timeout'; 0: no limit; default {DECODE_TIMEOUT:g})")
    _encoding(sp)
    sp.set_defaults(func=cmd_extract)


def build_parser() -> argparse.ArgumentParser:
    """A parser with just these commands (``tvts.cli`` adds them to its own)."""
    p = argparse.ArgumentParser(prog="tvts")
    sub = p.add_subparsers(dest="command", required=True)
    add_eval_parsers(sub)
    add_extract_parser(sub)
    return p
