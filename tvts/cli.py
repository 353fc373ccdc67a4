"""``tvts`` command line: thin sub-commands that parse a config and call the library.

Config fields are set with ``key=value`` arguments after the options (``train.steps=100
model.video.depth=2``); ``tvts config NAME`` prints every field of a recipe with its value.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

OVERRIDES_HELP = "config overrides as dotted key=value pairs, e.g. train.steps=100 model.video.depth=2"


def _load(args) -> "RecipeConfig":  # noqa: F821
    from tvts.config import load_recipe

    return load_recipe(args.config, args.overrides)


def cmd_config(args) -> int:
    import yaml

    from tvts.config import to_dict

    print(yaml.safe_dump(to_dict(_load(args)), sort_keys=False), end="")
    return 0


def cmd_make_synthetic(args) -> int:
    from tvts.data.synthetic import make_synthetic

    kw = {k: v for k, v in (("num_train", args.num_train), ("num_val", args.num_val), ("num_heldout", args.num_heldout)) if v is not None}
    summary = make_synthetic(args.out, seed=args.seed, workers=args.workers, spotlight=args.spotlight,
                             scene_group=args.scene_group, **kw)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_pretrain(args) -> int:
    from tvts.train.trainer import pretrain

    run = pretrain(_load(args), resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") == "0":
        print(f"[tvts] model saved to {run / 'model'}")
    return 0


def cmd_main(args) -> int:
    """Build the data (cached), pretrain, evaluate, report."""
    import torch

    from tvts.eval.main_job import evaluate_run
    from tvts.eval.report import results_table, write_results
    from tvts.recipe_data import data_paths
    from tvts.train.trainer import pretrain

    cfg = _load(args)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    t0 = time.time()
    data_paths(cfg)
    t1 = time.time()
    run = pretrain(cfg, resume=args.resume, overwrite=True)  # the main job starts over unless --resume
    t2 = time.time()
    results = evaluate_run(cfg, run / "model", progress=cfg.train.progress)
    t3 = time.time()
    summary = json.loads((run / "train_summary.json").read_text())
    results = {"config": args.config, "overrides": list(args.overrides), "model_dir": str(run / "model"),
               "objective": cfg.objective.name, "sort_head": cfg.model.sort_head.kind, "train": summary, **results,
               "timing": {"data_s": t1 - t0, "pretrain_s": t2 - t1, "eval_s": t3 - t2, "total_s": t3 - t0}}
    write_results(run, results)
    print(results_table(results))
    print(f"[tvts] results: {run / 'results.json'}; curves: {run / 'training_curves.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tvts", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp, default="demo"):
        sp.add_argument("--config", default=default, help=f"recipe name (tvts/configs/) or a YAML path (default: {default})")
        sp.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDES_HELP)

    sp = sub.add_parser("main", help="the main job: build the embedded dataset, pretrain, evaluate, report")
    with_config(sp)
    sp.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in train.out_dir")
    sp.set_defaults(func=cmd_main)

    sp = sub.add_parser("pretrain", help="pretrain a model from a recipe (one process, or under torchrun for DDP)")
    with_config(sp)
    sp.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in train.out_dir")
    sp.add_argument("--overwrite", action="store_true",
                    help="train.out_dir holds a run: start again in its place (without this or --resume: refused)")
    sp.set_defaults(func=cmd_pretrain)

    sp = sub.add_parser("make-synthetic", help="write the narrated-shapes dataset (mp4 + YT-Temporal annotations)")
    sp.add_argument("--out", required=True, help="output folder")
    sp.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    sp.add_argument("--num-train", type=int, default=None, help="narrated training videos (default: the generator's)")
    sp.add_argument("--num-val", type=int, default=None, help="held-out narrated videos, for sort accuracy")
    sp.add_argument("--num-heldout", type=int, default=None, help="held-out single-event clips with captions and labels")
    sp.add_argument("--workers", type=int, default=2, help="processes that render and encode videos")
    sp.add_argument("--spotlight", action="store_true", help="only the acting shape in colour (version 2's shortcut)")
    sp.add_argument("--scene-group", type=int, default=2,
                    help="narrated videos per scene, in direction pairs (1: every video on its own)")
    sp.set_defaults(func=cmd_make_synthetic)

    sp = sub.add_parser("config", help="print a recipe with every field resolved (after overrides)")
    sp.add_argument("config", help="recipe name (tvts/configs/) or a YAML path")
    sp.add_argument("overrides", nargs="*", metavar="key=value", help=OVERRIDES_HELP)
    sp.set_defaults(func=cmd_config)

    from tvts.convert_cli import add_convert_parser
    from tvts.data.cli_commands import add_data_parsers
    from tvts.eval.cli_commands import add_eval_parsers, add_extract_parser
    from tvts.search.cli_commands import add_search_parsers

    add_eval_parsers(sub)
    add_extract_parser(sub)
    add_data_parsers(sub)
    add_convert_parser(sub)
    add_search_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from tvts.errors import TVTSError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TVTSError as e:
        print(f"tvts: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
