"""The main job's evaluation: transcript sort accuracy on the held-out narrated videos, and on the held-out
single-event clips (each clip encoded once, the features shared by every protocol): zero-shot retrieval
(MSR-VTT layout), zero-shot recognition, linear probe and kNN (UCF-101 layout: trained on trainlist01,
tested on testlist01) and video-to-video retrieval by class (all held-out clips)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tvts.eval.annotations import LabelledSet, read_msrvtt_1ka, read_ucf101

HELDOUT_TEMPLATE = "a shape {}"
"""Zero-shot prompt on the held-out clips, filled with each class's caption phrase
(:data:`tvts.data.synthetic.CAPTIONS`, e.g. ``MoveLeft`` → "a shape moves left")."""


def _labelled_rows(feats, ds: LabelledSet, ucf_to_id: dict[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    x, keep = feats.rows([ucf_to_id[v] for v in ds.video_ids])
    return x, torch.tensor([ds.labels[j] for j in keep])


def heldout_root(cfg) -> Path | None:
    """The held-out clips' folder of a recipe: ``eval.heldout_root``, else the generated dataset's ``heldout``."""
    if cfg.eval.heldout_root:
        return Path(cfg.eval.heldout_root)
    return Path(cfg.data.synthetic.out) / "heldout" if cfg.data.synthetic else None


def heldout_protocols(enc, heldout: Path, figures_dir: Path | None = None) -> dict:
    """Every held-out-clip protocol from one encoding of the clips; returns the ``retrieval``,
    ``recognition``, ``linear_probe``, ``knn``, ``multiple_choice``, ``direction`` and ``v2v`` parts of
    ``results.json``."""
    from tvts.data.synthetic import CAPTIONS, OPPOSITE
    from tvts.eval.figures import confusion_matrix_png
    from tvts.eval.metrics import v2v_retrieval_metrics
    from tvts.eval.protocols import (caption_vs_foil, class_embeddings, classification_result, frozen_feature_protocols,
                                     multiple_choice, retrieval_from_features)

    meta = json.loads((heldout / "msrvtt" / "MSRVTT_data.json").read_text())["videos"]
    ids = [v["video_id"] for v in meta]
    feats = enc.videos("heldout", [str(heldout / "videos" / "all" / f"{v}.mp4") for v in ids], ids)
    ret = read_msrvtt_1ka(heldout / "msrvtt", videos=heldout / "videos" / "all")
    video, keep = feats.rows(ret.video_ids)
    pos = {j: i for i, j in enumerate(keep)}
    caps = [(c, pos[v]) for c, v in zip(ret.captions, ret.text_to_video) if v in pos]
    results = {"retrieval": {**retrieval_from_features(enc.texts([c for c, _ in caps]), video,
                                                       torch.tensor([v for _, v in caps]))["zs-retrieval"],
                             "dataset": str(heldout / "msrvtt" / "MSRVTT_JSFUSION_test.csv"),
                             "num_failed": len(feats.failed)}}
    ucf_to_id = {v["ucf_path"]: v["video_id"] for v in meta}
    train = read_ucf101(heldout / "ucf", "train")
    test = read_ucf101(heldout / "ucf", "test")
    xtr, ytr = _labelled_rows(feats, train, ucf_to_id)
    xte, yte = _labelled_rows(feats, test, ucf_to_id)
    c = len(test.class_names)
    data = {"dataset": f"{test.name} (held-out clips: train {len(ytr)}, test {len(yte)})", "classes": test.class_names}
    prompts = class_embeddings(enc, [CAPTIONS[n] for n in test.class_names], (HELDOUT_TEMPLATE,))
    results["recognition"] = {**classification_result(xte @ prompts.T, yte, c), "template": HELDOUT_TEMPLATE, **data}
    frozen = frozen_feature_protocols((xtr, ytr), (xte, yte), c, protocols=("linear-probe", "knn"))
    for key, name in (("linear_probe", "linear-probe"), ("knn", "knn")):
        results[key] = {**frozen[name].metrics, **data}
    # SSV2-MC on the held-out test clips: each clip's first caption against one caption of a random clip of
    # every other class (the same construction as SSV2-MC, with 7 negatives instead of 173).
    first_caption = {}
    for sentence in json.loads((heldout / "msrvtt" / "MSRVTT_data.json").read_text())["sentences"]:
        first_caption.setdefault(sentence["video_id"], sentence["caption"])
    mc_set = LabelledSet(test.name, test.video_ids, test.paths, test.labels, test.class_names,
                         descriptions=[first_caption[ucf_to_id[v]] for v in test.video_ids])
    mc_video, mc_keep = feats.rows([ucf_to_id[v] for v in test.video_ids])
    results["multiple_choice"] = {**multiple_choice(enc, mc_set, mc_video, mc_keep, seed=0),
                                  "dataset": f"{test.name} (held-out test clips, captions)"}
    # The direction test: each test clip's caption against the same caption with the action reversed (left/right,
    # up/down, grows/shrinks, clockwise/counterclockwise): same words but one, same appearance, so only the
    # direction of the motion can tell them apart.
    by_id = {v["video_id"]: v for v in meta}
    test_ids = [ucf_to_id[v] for v in test.video_ids]
    dir_video, dir_keep = feats.rows(test_ids)
    clips = [by_id[test_ids[j]] for j in dir_keep]

    def caption(clip: dict, action: str) -> str:  # the form of every clip's first caption
        return f"the {clip['colour']} {clip['shape']} {CAPTIONS[action]}"

    results["direction"] = {**caption_vs_foil(dir_video, enc.texts([caption(c, c["action"]) for c in clips]),
                                              enc.texts([caption(c, OPPOSITE[c["action"]]) for c in clips])),
                            "dataset": f"{test.name} (held-out test clips, caption vs reversed caption)"}
    # video-to-video retrieval trains nothing: every held-out clip (both halves) queries all the others
    results["v2v"] = {**v2v_retrieval_metrics(torch.cat([xtr, xte]), torch.cat([ytr, yte])),
                      "num_videos": len(ytr) + len(yte), "dataset": f"{test.name} (all held-out clips)"}
    if figures_dir is not None:
        png = confusion_matrix_png(frozen["linear-probe"].metrics["confusion"], test.class_names,
                                   figures_dir / "confusion_linear_probe.png", "linear probe, held-out clips")
        results["linear_probe"]["figure"] = str(png)
    return results


def evaluate_run(cfg, model_dir: Path, progress: bool = True) -> dict:
    """Evaluate a saved model as the main job does; returns the ``sort``, ``retrieval``, ``recognition``,
    ``linear_probe``, ``knn``, ``multiple_choice``, ``direction`` and ``v2v`` parts of ``results.json`` (all
    but ``sort`` only when there is a held-out folder), with the model folder's video processor. Video features are cached in ``<run>/eval_features/`` and the linear probe's confusion matrix is
    drawn to ``<run>/confusion_linear_probe.png`` (``<run>`` = the model folder's parent)."""
    from tvts.data.processor import VideoProcessor
    from tvts.eval.protocols import Encoder, sort_accuracy
    from tvts.models import load_model
    from tvts.device import pick_device
    from tvts.recipe_data import data_paths, transcript_dataset

    device = pick_device(cfg.train.device)
    model_dir = Path(model_dir)
    model = load_model(model_dir).to(device).eval()
    root, _, val_list = data_paths(cfg)
    heldout = heldout_root(cfg)
    results = {}
    if model.pred_model is not None:
        results["sort"] = sort_accuracy(model, transcript_dataset(cfg, root, val_list, train=False), cfg.eval.batch_size,
                                        cfg.data.workers, device, progress)
        results["sort"]["dataset"] = str(val_list)
    if heldout is not None:
        enc = Encoder(model, str(model_dir), VideoProcessor.from_pretrained(model_dir), batch_size=cfg.eval.batch_size, workers=cfg.data.workers, device=device,
                      cache_dir=model_dir.parent / "eval_features", progress=progress)
        results.update(heldout_protocols(enc, heldout, model_dir.parent))
    return results
