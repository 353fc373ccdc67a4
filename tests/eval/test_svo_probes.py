"""SVO-Probes: the reader on a generated fixture in the release's layout (with a missing image, an unreadable
image and malformed rows, each reported), the metrics against a direct computation on hand-made scores, the
protocol's scores against the model's own cosines, the command line, and the embedded probe end to end."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from tvts.errors import ConfigError, SampleError
from tvts.eval.annotations import read_svo_probes
from tvts.eval.cli_commands import build_parser
from tvts.eval.metrics import svo_probe_metrics
from tvts.data.processor import VideoProcessor
from tvts.eval.protocols import Encoder, decode_image, svo_probes

RELEASE_HEADER = ["", "sentence", "pos_triplet", "neg_triplet", "subj_neg", "verb_neg", "obj_neg", "pos_url", "neg_url",
                  "pos_image_id", "neg_image_id"]
# (sentence, pos id, neg id, subj_neg, verb_neg, obj_neg); the data rows are numbered from 1
ROWS = [
    ("A man rides a horse", 101, 102, "True", "False", "False"),    # 1 subj
    ("A dog  catches a ball", 103, 104, "False", "True", "False"),  # 2 verb (two spaces: normalised)
    ("A girl eats an apple", 105, 106, "False", "False", "True"),   # 3 obj
    ("A man rides a horse", 101, 107, "True", "False", "False"),    # 4 subj, the positive image again
    ("A boy kicks a ball", 108, 999, "False", "False", "True"),     # 5 obj, negative image missing
    ("A cat sleeps on a sofa", 101, 102, "False", "maybe", "False"),  # 6 malformed: not a boolean
    ("A cat sleeps on a sofa", 101, 102, "True", "True", "False"),    # 7 malformed: two concepts
    ("A woman reads a book", 110, 101, "False", "True", "False"),   # 8 verb, positive image unreadable
    ("", 101, 102, "True", "False", "False"),                       # 9 malformed: empty sentence
]


def _write_release(root: Path, seed: int = 0) -> Path:
    """svo_probes.csv as pandas writes the release (an unnamed index column, True/False) and images/<id>.<ext>."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    for k, image_id in enumerate((101, 102, 103, 104, 105, 106, 107, 108)):
        pixels = rng.integers(0, 256, (10 + k, 14, 3), dtype=np.uint8)  # small, not square
        Image.fromarray(pixels).save(root / "images" / f"{image_id}.{'png' if k % 2 else 'jpg'}")
    (root / "images" / "110.jpg").write_bytes(b"this is not a JPEG")
    with open(root / "svo_probes.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(RELEASE_HEADER)
        for n, (sentence, p, q, s, v, o) in enumerate(ROWS):
            w.writerow([n, sentence, "man,ride,horse", "woman,ride,horse", s, v, o, f"http://x/{p}.jpg",
                        f"http://x/{q}.jpg", p, q])
        w.writerow([len(ROWS), "A short row", "a,b,c"])  # 10 malformed: fields missing
    return root


@pytest.fixture
def release(tmp_path) -> Path:
    return _write_release(tmp_path / "svo")


def _encoder(model_dir, device="cpu") -> Encoder:
    from tvts.models import load_model

    model = load_model(model_dir).eval()
    return Encoder(model, str(model_dir), VideoProcessor.from_pretrained(model_dir), batch_size=3, workers=0,
                   progress=False)


# ---------------------------------------------------------------------------------------- reader
def test_reader_lists_malformed_rows_and_missing_images(release):
    ds = read_svo_probes(release)
    assert ds.name == "svo-probes" and ds.concepts == ["subj", "verb", "obj"] and ds.num_rows == 10
    assert ds.rows == [1, 2, 3, 4, 5, 8]
    assert ds.sentences[1] == "A dog catches a ball" and ds.pos_ids[0] == "101" and ds.neg_ids[3] == "107"
    assert [ds.concepts[c] for c in ds.concept] == ["subj", "verb", "obj", "subj", "obj", "verb"]
    assert {(m["row"], m["field"]) for m in ds.malformed} == {(6, "verb_neg"), (7, "subj_neg,verb_neg,obj_neg"),
                                                              (9, "sentence"), (10, "subj_neg")}
    assert "'maybe' is not a boolean" in next(m["detail"] for m in ds.malformed if m["row"] == 6)
    assert ds.missing == [{"image_id": "999", "row": 5, "field": "neg_image_id", "num_rows": 1}]
    assert set(ds.images) == {"101", "102", "103", "104", "105", "106", "107", "108", "110"}
    assert ds.images["102"].endswith("102.png") and ds.first_use("101") == (1, "pos_image_id")


def test_reader_refuses_a_file_without_the_columns_or_rows(tmp_path):
    root = tmp_path / "svo"
    (root / "images").mkdir(parents=True)
    (root / "svo_probes.csv").write_text("sentence,pos_image_id,subj_neg\na b,1,True\n")
    with pytest.raises(ConfigError, match=r"missing column.*neg_image_id.*svo_probes.csv"):
        read_svo_probes(root)
    (root / "svo_probes.csv").write_text("sentence,pos_image_id,neg_image_id,subj_neg,verb_neg\na b,1,2,True,True\n")
    with pytest.raises(ConfigError, match=r"no usable row.*row 1.*exactly one must be True"):
        read_svo_probes(root)


def test_reader_finds_the_csv_in_a_sub_folder_and_images_elsewhere(release, tmp_path):
    moved = tmp_path / "elsewhere"
    (release / "images").rename(moved)
    nested = tmp_path / "outer"
    nested.mkdir()
    release.rename(nested / "release")
    ds = read_svo_probes(nested, images=moved)
    assert len(ds.rows) == 6 and ds.images["101"].startswith(str(moved))


# ---------------------------------------------------------------------------------------- metrics
def test_metrics_match_a_direct_computation():
    rng = random.Random(0)
    n, concepts, thresholds = 200, ["subj", "verb", "obj"], (0.2, 0.25, 0.3)
    pos = [round(rng.uniform(0.0, 0.5), 2) for _ in range(n)]  # 2 decimals: ties between pos and neg happen
    neg = [round(rng.uniform(0.0, 0.45), 2) for _ in range(n)]
    concept = [rng.randrange(3) for _ in range(n)]
    m = svo_probe_metrics(torch.tensor(pos), torch.tensor(neg), torch.tensor(concept), concepts, thresholds)  # float32
    assert list(m) == ["all", *concepts]
    assert any(p == q for p, q in zip(pos, neg))  # the tie rule is exercised
    for name, rows in [("all", range(n)), *((c, [i for i in range(n) if concept[i] == k]) for k, c in enumerate(concepts))]:
        rows = list(rows)
        right = sum(pos[i] > neg[i] for i in rows)
        assert m[name]["num_pairs"] == len(rows) and m[name]["num_correct"] == right
        assert m[name]["pairwise_acc"] == pytest.approx(100 * right / len(rows))
        for rho in thresholds:
            tp, fp = sum(pos[i] > rho for i in rows), sum(neg[i] > rho for i in rows)
            assert (m[name][f"pos_above@{rho:g}"], m[name][f"neg_above@{rho:g}"]) == (tp, fp)
            assert m[name][f"P@{rho:g}"] == pytest.approx(100 * tp / (tp + fp))


def test_metrics_edge_cases():
    pos, neg = torch.tensor([0.5, 0.1, 0.3]), torch.tensor([0.5, 0.2, 0.1])
    m = svo_probe_metrics(pos, neg, torch.tensor([0, 0, 0]), ["subj", "verb"], (0.9, 0.0))
    assert m["all"]["num_correct"] == 1  # a tie (row 0) is wrong
    assert m["all"]["P@0.9"] is None and m["all"]["pos_above@0.9"] == m["all"]["neg_above@0.9"] == 0
    assert m["all"]["P@0"] == pytest.approx(50.0)  # every image called positive: one positive per negative
    assert m["verb"]["num_pairs"] == 0 and m["verb"]["pairwise_acc"] is None
    with pytest.raises(ConfigError, match="one value per row"):
        svo_probe_metrics(pos, neg[:2], torch.tensor([0, 0, 0]), ["subj"])


# ---------------------------------------------------------------------------------------- images
def test_an_image_is_the_video_preprocessing_of_one_frame():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)
    proc = VideoProcessor(num_frames=3, size=16)
    x = proc(image)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    video = proc(np.stack([image, 255 - image, image]))[0]  # the image as the first and last frame of a video
    torch.testing.assert_close(x[0], video[0])
    torch.testing.assert_close(x[0], video[2])


def test_decode_image(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_image(str(tmp_path / "a.png")), rgb)  # lossless round trip
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(tmp_path / "rgba.png")
    for name in ("grey.png", "rgba.png"):
        out = decode_image(str(tmp_path / name))
        assert out.shape == (7, 9, 3) and out.dtype == np.uint8 and out.flags.writeable
    np.testing.assert_array_equal(decode_image(str(tmp_path / "rgba.png")), rgb)  # alpha dropped
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not really")
    with pytest.raises(SampleError) as e:
        decode_image(str(tmp_path / "bad.jpg"))
    assert e.value.reason == "decode" and e.value.path.endswith("bad.jpg")


# ---------------------------------------------------------------------------------------- protocol
def test_protocol_scores_are_the_models_cosines(release, tiny_model_dir):
    torch.manual_seed(0)
    enc = _encoder(tiny_model_dir)
    ds = read_svo_probes(release)
    res = svo_probes(enc, ds, (0.0, 0.1))
    assert res["num_rows"] == 10 and res["num_malformed"] == 4 and res["num_missing"] == 1
    assert res["num_failed"] == 1 and res["failed"][0]["image_id"] == "110"
    assert (res["failed"][0]["row"], res["failed"][0]["field"], res["failed"][0]["reason"]) == (8, "pos_image_id", "decode")
    assert res["num_rows_skipped"] == 2 and res["num_pairs"] == 4 and res["num_images"] == 8

    # directly: each image alone through the model, each sentence alone through the text tower
    def img(i):
        x = enc.processor(decode_image(ds.images[i]))  # [1, 3, S, S]
        with torch.no_grad():
            return F.normalize(enc.model.encode_video(x).float(), dim=-1)[0]

    use = [k for k, r in enumerate(ds.rows) if r in (1, 2, 3, 4)]
    txt = [enc.texts([ds.sentences[k]])[0] for k in use]
    pos = torch.stack([t @ img(ds.pos_ids[k]) for t, k in zip(txt, use)])
    neg = torch.stack([t @ img(ds.neg_ids[k]) for t, k in zip(txt, use)])
    ref = svo_probe_metrics(pos, neg, torch.tensor([ds.concept[k] for k in use]), ds.concepts, (0.0, 0.1))
    assert res["concepts"]["subj"]["num_pairs"] == 2 and res["concepts"]["verb"]["num_pairs"] == 1
    for name, m in [("all", res), *res["concepts"].items()]:
        for key, want in ref[name].items():
            if want is None or isinstance(want, int):
                assert m[key] == want, (name, key)
            else:  # percentages of the same counts
                assert m[key] == pytest.approx(want, rel=1e-9), (name, key)


def _run(argv):
    args = build_parser().parse_args(argv)
    assert args.func(args) == 0


def test_command_line_reports_problems_and_thresholds(release, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "eval" / "report.json"
    _run(["eval", "svo-probes", "--model", str(tiny_model_dir), "--data", str(release), "--out", str(out),
          "--workers", "0", "--no-progress", "--thresholds", "0.1", "0.5"])
    printed = capsys.readouterr().out
    assert "svo_probes.csv row 5, field neg_image_id: image '999' not found" in printed
    assert "110.jpg (svo_probes.csv row 8, field pos_image_id): decode:" in printed
    assert "svo_probes.csv row 6, field verb_neg: malformed ('maybe' is not a boolean" in printed
    r = json.loads(out.read_text())["results"]["svo-probes/zs-svo"]
    assert r["thresholds"] == [0.1, 0.5] and {"P@0.1", "P@0.5"} <= set(r) and "P@0.2" not in r
    md = out.with_suffix(".md").read_text()
    assert "### SVO-Probes" in md and "| svo-probes/zs-svo | verb |" in md and "P@0.5" in md
    assert not list(out.parent.glob(".*.tmp"))  # written beside and renamed into place


def test_eval_all_runs_svo_probes(release, tiny_model_dir, tmp_path):
    cfg = {"model": str(tiny_model_dir), "workers": 0, "progress": False, "figures": False,
           "protocols": [{"protocol": "svo-probes", "data": str(release)},
                         {"protocol": "svo-probes", "data": str(release), "thresholds": [0.0]}]}
    (tmp_path / "eval.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "all.json"
    _run(["eval", "all", "--config", str(tmp_path / "eval.yaml"), "--out", str(out)])
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"svo-probes/zs-svo", "svo-probes/zs-svo#2"}
    assert res["svo-probes/zs-svo"]["thresholds"] == [0.2, 0.25, 0.3] and res["svo-probes/zs-svo#2"]["thresholds"] == [0.0]
    assert res["svo-probes/zs-svo"]["pairwise_acc"] == res["svo-probes/zs-svo#2"]["pairwise_acc"]


# ---------------------------------------------------------------------------------------- the embedded probe
@pytest.fixture(scope="module")
def heldout48(tmp_path_factory) -> Path:
    from tvts.data.synthetic import make_synthetic

    s = make_synthetic(tmp_path_factory.mktemp("svo_shapes"), num_train=0, num_val=0, num_heldout=48, workers=1,
                       progress=False)
    return Path(s["heldout_root"])


def test_embedded_probe_end_to_end(heldout48, tiny_model_dir, tmp_path, capsys):
    from tvts.data.cli_commands import build_parser as data_parser
    from tvts.data.synthetic import CAPTIONS

    probe = tmp_path / "probe"
    args = data_parser().parse_args(["data", "svo-probe", "--data", str(heldout48), "--out", str(probe)])
    assert args.func(args) == 0
    assert "rows (shape_neg" in capsys.readouterr().out
    clips = {str(v["id"]): v for v in json.loads((heldout48 / "msrvtt" / "MSRVTT_data.json").read_text())["videos"]}
    with open(probe / "svo_probes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 10
    for r in rows:
        p, n = clips[r["pos_image_id"]], clips[r["neg_image_id"]]
        assert r["sentence"] == f"the {p['colour']} {p['shape']} {CAPTIONS[p['action']]}"
        assert p["action"] == n["action"]  # the verb never differs
        changed = {a for a in ("shape", "colour") if p[a] != n[a]}
        assert changed == {a for a in ("shape", "colour") if r[f"{a}_neg"] == "True"} and len(changed) == 1
    for image_id in {r["pos_image_id"] for r in rows} | {r["neg_image_id"] for r in rows}:
        with Image.open(probe / "images" / f"{image_id}.png") as im:
            assert im.size == (64, 64) and im.mode == "RGB"
    # the same seed writes the same file
    again = tmp_path / "again"
    args = data_parser().parse_args(["data", "svo-probe", "--data", str(heldout48), "--out", str(again), "--seed", "0"])
    args.func(args)
    assert (again / "svo_probes.csv").read_bytes() == (probe / "svo_probes.csv").read_bytes()

    out = tmp_path / "report.json"
    _run(["eval", "svo-probes", "--model", str(tiny_model_dir), "--data", str(probe), "--out", str(out),
          "--workers", "0", "--no-progress"])
    r = json.loads(out.read_text())["results"]["svo-probes-shape-colour/zs-svo"]
    assert list(r["concepts"]) == ["shape", "colour"] and r["num_pairs"] == len(rows)
    assert sum(m["num_pairs"] for m in r["concepts"].values()) == len(rows)
    assert r["num_missing"] == r["num_failed"] == r["num_malformed"] == r["num_rows_skipped"] == 0
    assert 0 <= r["pairwise_acc"] <= 100 and r["chance_pairwise_acc"] == 50.0


def test_embedded_probe_refuses_a_folder_without_clips(tmp_path):
    from tvts.data.svo_probe import make_svo_probe

    with pytest.raises(ConfigError, match="MSRVTT_data.json"):
        make_svo_probe(tmp_path, tmp_path / "out")
