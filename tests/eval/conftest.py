"""Evaluation fixtures: a tiny saved model, and the 16 held-out clips of the embedded dataset laid out as
each standard evaluation dataset (MSR-VTT, MSVD, DiDeMo, LSMDC, UCF-101, HMDB-51, Kinetics-400, SSV2), plus
2 narrated videos in the YT-Temporal layout.

``eval_data`` (session): ``{"root": Path, "clips": [{"video_id", "action", "category", "captions", "path"}],
"<dataset>": Path of its folder, "yttemporal": Path}``. Clip ``i`` has class ``i % 8``; the UCF-style
train/test split of the embedded dataset (one train and one test clip per class) is used by every
labelled layout, except SSV2's validation.json, which lists all 16 clips (2 per class, for v2v retrieval).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from tvts.data.synthetic import ACTIONS, CAPTIONS, make_synthetic


def _link(src: str | Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _snake(action: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in action).lstrip("_")


def _msrvtt(root: Path, held: Path) -> None:
    shutil.copytree(held / "msrvtt", root)
    shutil.copytree(held / "videos", root / "videos", copy_function=os.link)


def _msvd(root: Path, clips: list[dict]) -> None:
    test = [c for c in clips if c["split"] == "test"]
    lines = ["# MSVD-style descriptions", *(f"{c['video_id']}_1_6 {cap}" for c in clips for cap in c["captions"])]
    (root / "AllVideoDescriptions.txt").parent.mkdir(parents=True)
    (root / "AllVideoDescriptions.txt").write_text("\n".join(lines) + "\n")
    (root / "test_list.txt").write_text("".join(f"{c['video_id']}_1_6\n" for c in test))
    for c in test:
        _link(c["path"], root / "videos" / "YouTubeClips" / f"{c['video_id']}_1_6.mp4")


def _didemo(root: Path, clips: list[dict]) -> None:
    test = [c for c in clips if c["split"] == "test"]
    rows = [{"video": f"{c['video_id']}.mov", "description": cap, "times": [[k, k]], "annotation_id": i * 2 + k}
            for i, c in enumerate(test) for k, cap in enumerate(c["captions"])]
    root.mkdir(parents=True)
    (root / "test_data.json").write_text(json.dumps(rows))
    for c in test:
        _link(c["path"], root / "videos" / f"{c['video_id']}.mp4")


def _lsmdc(root: Path, clips: list[dict]) -> None:
    test = [c for c in clips if c["split"] == "test"]
    root.mkdir(parents=True)
    with open(root / "LSMDC16_challenge_1000_publictect.csv", "w", newline="") as f:
        for c in test:
            name = f"0001_Shapes_{c['video_id']}_00.00.01.000-00.00.06.000"
            f.write(f"{name}\t00.00.01.000\t00.00.06.000\t00.00.01.000\t00.00.06.000\t{c['captions'][1]}\n")
            _link(c["path"], root / "videos" / "0001_Shapes" / f"{name}.mp4")


def _ucf(root: Path, held: Path) -> None:
    shutil.copytree(held / "ucf", root, copy_function=os.link)


def _hmdb(root: Path, clips: list[dict]) -> None:
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for k, action in enumerate(ACTIONS):
        own = [c for c in clips if c["category"] == k]
        lines = [f"{c['video_id']}_{_snake(action)}.avi {1 if c['split'] == 'train' else 2}" for c in own]
        lines.append(f"unused_{k}.avi 0")
        (splits / f"{_snake(action)}_test_split1.txt").write_text("\n".join(lines) + "\n")
        for c in own:
            _link(c["path"], root / "videos" / _snake(action) / f"{c['video_id']}_{_snake(action)}.mp4")


def _k400(root: Path, clips: list[dict]) -> None:
    root.mkdir(parents=True)
    for split, name in (("train", "train.csv"), ("test", "validate.csv")):
        with open(root / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for c in clips:
                if c["split"] == split:
                    label = " ".join(_snake(c["action"]).split("_"))
                    w.writerow([label, f"yt_{c['video_id']}", 1, 6, "train" if split == "train" else "val"])
                    _link(c["path"], root / "videos" / label / f"yt_{c['video_id']}_000001_000006.mp4")


def _ssv2(root: Path, clips: list[dict]) -> None:
    root.mkdir(parents=True)
    templates = [f"Something {CAPTIONS[a]}" for a in ACTIONS]
    (root / "labels.json").write_text(json.dumps({t: str(k) for k, t in enumerate(templates)}))
    for split, name in (("train", "train.json"), ("test", "validation.json")):
        rows = [{"id": str(1000 + int(c["video_id"][5:])), "label": c["captions"][0],
                 "template": f"[Something] {CAPTIONS[c['action']]}", "placeholders": ["shape"]}
                for c in clips if split == "test" or c["split"] == split]
        (root / name).write_text(json.dumps(rows))
        for r in rows:
            c = next(c for c in clips if int(c["video_id"][5:]) == int(r["id"]) - 1000)
            _link(c["path"], root / "videos" / f"{r['id']}.mp4")


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("evaldata")
    s = make_synthetic(base / "shapes", num_train=0, num_val=2, num_heldout=16, workers=1, progress=False)
    held = Path(s["heldout_root"])
    meta = json.loads((held / "msrvtt" / "MSRVTT_data.json").read_text())
    caps: dict[str, list[str]] = {}
    for sent in meta["sentences"]:
        caps.setdefault(sent["video_id"], []).append(sent["caption"])
    clips = [{"video_id": v["video_id"], "action": v["action"], "category": v["category"], "split": v["split"],
              "captions": caps[v["video_id"]], "path": str(held / "videos" / "all" / f"{v['video_id']}.mp4")}
             for v in meta["videos"]]
    out = {"root": base, "clips": clips, "heldout": held, "yttemporal": Path(s["yttemporal_root"])}
    builders = {"msrvtt": lambda r: _msrvtt(r, held), "msvd": lambda r: _msvd(r, clips),
                "didemo": lambda r: _didemo(r, clips), "lsmdc": lambda r: _lsmdc(r, clips),
                "ucf101": lambda r: _ucf(r, held), "hmdb51": lambda r: _hmdb(r, clips),
                "k400": lambda r: _k400(r, clips), "ssv2": lambda r: _ssv2(r, clips)}
    for name, build in builders.items():
        build(base / name)
        out[name] = base / name
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny TVTS model (random weights): 4 frames of 16x16, embedding size 16."""
    from tvts.models import build_model
    from tvts.testing import make_tiny_bert, tiny_model_config

    base = tmp_path_factory.mktemp("tinymodel")
    model = build_model(tiny_model_config(make_tiny_bert(base / "bert")))
    model.save_pretrained(base / "model")
    return base / "model"
