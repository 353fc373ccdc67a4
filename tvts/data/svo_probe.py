"""The embedded SVO-style probe: still frames of the held-out narrated-shapes clips, written in the SVO-Probes
release layout (``svo_probes.csv`` + ``images/<id>.png``) so that ``tvts eval svo-probes`` reads it with the
same reader as the release (:func:`tvts.eval.annotations.read_svo_probes`).

A row: the sentence is a clip's caption in the embedded captions' style, ``f"the {colour} {shape} {CAPTIONS[action]}"``
(its first MSR-VTT caption, e.g. "the red square moves left"); the positive image is that clip's middle frame;
the negative image is the middle frame of another held-out clip with the same action whose acting shape
differs in one attribute only:

- ``shape_neg``: same colour, another kind ("the red circle moves left" is what the negative clip's caption says);
- ``colour_neg``: same kind, another colour ("the blue square moves left").

Why these concepts and not the release's ``subj_neg`` / ``verb_neg`` / ``obj_neg``: a still frame cannot show a
verb (the action is the same on both sides, so the verb in the sentence is no clue either way), the captions
have no object, and shape and colour are both parts of the subject; calling them subject and object would be
wrong, so the CSV has the columns ``shape_neg`` and ``colour_neg`` and the reader reports those concepts.
Every scene has shapes of distinct kinds and distinct colours (:mod:`tvts.data.synthetic`), so the negative
frame never shows the named coloured shape (its one shape of that colour, or of that kind, is the other
actor), while the positive frame always does; the other shapes of either frame are whatever their scenes hold.

For each clip and each concept, one negative is drawn uniformly (``numpy.random.default_rng(seed)``, clips in
id order) among the clips that qualify; a clip with none gets no row for that concept. Image ids are the clip
numbers (``video12`` -> ``12``, integers as in the release); ``pos_url`` / ``neg_url`` name the source clip and
the time of the frame. Triplets are ``"<colour> <shape>,<verb phrase>,none"`` (subject, verb, object).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np

from tvts.errors import ConfigError

CONCEPTS = ("shape", "colour")


def _clips(heldout: Path) -> list[dict]:
    meta_path = heldout / "msrvtt" / "MSRVTT_data.json"
    if not meta_path.is_file():
        raise ConfigError("no held-out clips here: expected msrvtt/MSRVTT_data.json (tvts make-synthetic writes it under "
                          "heldout/)", source=str(heldout))
    videos = json.loads(meta_path.read_text(encoding="utf-8"))["videos"]
    need = {"video_id", "id", "action", "shape", "colour"}
    for v in videos:
        if not need <= set(v):
            raise ConfigError(f"a clip record lacks {sorted(need - set(v))} (not a narrated-shapes held-out set?)",
                              field=f"videos[{v.get('video_id', '?')}]", source=str(meta_path))
    return sorted(videos, key=lambda v: int(v["id"]))


def probe_rows(clips: list[dict], seed: int = 0) -> list[dict]:
    """The probe's rows from the held-out clip records (``id``, ``action``, ``shape``, ``colour``), as
    ``{"pos": clip, "neg": clip, "concept": "shape" | "colour"}``; see the module docstring."""
    rng = np.random.default_rng(seed)
    rows = []
    for v in clips:
        for concept in CONCEPTS:
            keep = "colour" if concept == "shape" else "shape"
            cands = [u for u in clips if u["action"] == v["action"] and u[keep] == v[keep] and u[concept] != v[concept]]
            if cands:
                rows.append({"pos": v, "neg": cands[int(rng.integers(len(cands)))], "concept": concept})
    return rows


def make_svo_probe(heldout: str | os.PathLike, out: str | os.PathLike, seed: int = 0) -> dict:
    """Write the probe for the held-out clips under ``heldout`` (``tvts make-synthetic``'s ``heldout/``: the
    clips' ground truth in ``msrvtt/MSRVTT_data.json``, the videos in ``videos/all/``) into ``out``:
    ``images/<id>.png`` (each clip's middle frame, RGB, the clip's size) and ``svo_probes.csv`` (written last,
    atomically). Returns a summary: ``rows`` per concept, ``images``, ``csv``."""
    from PIL import Image

    from tvts.data.decode import decode_frames, probe
    from tvts.data.synthetic import CAPTIONS

    heldout, out = Path(heldout), Path(out)
    clips = _clips(heldout)
    rows = probe_rows(clips, seed)
    if not rows:
        raise ConfigError(f"none of the {len(clips)} held-out clips has a partner with the same action and one "
                          "attribute changed; generate more held-out clips", source=str(heldout))
    (out / "images").mkdir(parents=True, exist_ok=True)
    times = {}
    for v in {r[k]["video_id"]: r[k] for r in rows for k in ("pos", "neg")}.values():
        path = heldout / "videos" / "all" / f"{v['video_id']}.mp4"
        t = probe(path).duration / 2
        frame = decode_frames(path, [t])[0]  # uint8 [H, W, 3]
        target = out / "images" / f"{int(v['id'])}.png"
        tmp = target.with_name(f".{target.name}.tmp")
        Image.fromarray(frame).save(tmp, format="PNG")
        os.replace(tmp, target)
        times[v["video_id"]] = t

    def triplet(v):
        return f"{v['colour']} {v['shape']},{CAPTIONS[v['action']]},none"

    def url(v):
        return f"videos/all/{v['video_id']}.mp4#t={times[v['video_id']]:.3f}"

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sentence", "pos_triplet", "neg_triplet", *(f"{c}_neg" for c in CONCEPTS), "pos_url", "neg_url",
                "pos_image_id", "neg_image_id"])
    for r in rows:
        p, n = r["pos"], r["neg"]
        w.writerow([f"the {p['colour']} {p['shape']} {CAPTIONS[p['action']]}", triplet(p), triplet(n),
                    *(str(c == r["concept"]) for c in CONCEPTS), url(p), url(n), int(p["id"]), int(n["id"])])
    target = out / "svo_probes.csv"
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, target)
    return {"csv": str(target), "images": len(times), "clips": len(clips), "seed": seed,
            "rows": {c: sum(r["concept"] == c for r in rows) for c in CONCEPTS}}
