"""Every protocol end to end from the command line, on the fixtures in the standard layouts."""

import json
from pathlib import Path

import pytest
import yaml

from tvts.errors import ConfigError
from tvts.eval.cli_commands import build_parser
from tvts.eval.extract import ViewsDataset, side_paths


def _run(argv):
    args = build_parser().parse_args(argv)
    assert args.func(args) == 0


def _eval(protocol, tiny_model_dir, data, out, *extra):
    _run(["eval", protocol, "--model", str(tiny_model_dir), "--data", str(data), "--out", str(out),
          "--workers", "0", "--no-progress", *extra])
    report = json.loads(out.read_text())
    assert out.with_suffix(".md").read_text().startswith("# Evaluation of")
    return report["results"]


@pytest.mark.parametrize("dataset,name,queries", [("msrvtt", "msrvtt-1ka", 8), ("msrvtt-allcaps", "msrvtt-1ka-allcaps", 16),
                                                  ("msvd", "msvd-test", 16), ("didemo", "didemo-test-paragraph", 8),
                                                  ("lsmdc", "lsmdc-1k", 8)])
def test_retrieval(eval_data, tiny_model_dir, tmp_path, dataset, name, queries):
    res = _eval("retrieval", tiny_model_dir, eval_data[dataset.split("-")[0]], tmp_path / "r.json", "--dataset", dataset, "--dsl")
    assert set(res) == {f"{name}/zs-retrieval", f"{name}/zs-retrieval-dsl"}
    r = res[f"{name}/zs-retrieval"]
    assert r["num_queries"] == queries and r["num_videos"] == 8 and r["t2v_R@10"] == 100.0 and r["num_failed"] == 0
    assert r["t2v_MedR"] >= 1 and r["t2v_MedR"] <= 8 and r["v2t_MeanR"] >= 1 and r["v2t_MeanR"] <= 8
    with open(r["figure"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("dataset,name", [("ucf101", "ucf101-split1"), ("hmdb51", "hmdb51-split1"), ("k400", "k400-val")])
def test_zero_shot_recognition_with_a_template_ensemble(eval_data, tiny_model_dir, tmp_path, dataset, name):
    res = _eval("zero-shot", tiny_model_dir, eval_data[dataset], tmp_path / "z.json", "--dataset", dataset,
                "--template", "a person {}", "--template", "a video of {}")
    r = res[f"{name}/zs-recognition"]
    assert r["num_videos"] == 8 and r["num_classes"] == 8 and r["templates"] == ["a person {}", "a video of {}"]
    assert 0 <= r["top1"] <= r["top5"] <= 100 and sum(map(sum, r["confusion"])) == 8
    assert len(r["figures"]) == 2 and all(Path(p).stat().st_size > 1000 for p in r["figures"])  # confusion + top-5


def test_ssv2_mc_knn_v2v_and_sort(eval_data, tiny_model_dir, tmp_path):
    mc = _eval("ssv2-mc", tiny_model_dir, eval_data["ssv2"], tmp_path / "a.json", "--seed", "3")["ssv2-val/mc-seed3"]
    assert mc["num_candidates"] == 8 and mc["num_videos"] == 16 and mc["seed"] == 3
    knn = _eval("knn", tiny_model_dir, eval_data["hmdb51"], tmp_path / "b.json", "--dataset", "hmdb51", "--k", "3")
    assert knn["hmdb51-split1/knn-k3-weighted"]["num_train"] == 8
    v2v = _eval("v2v", tiny_model_dir, eval_data["ssv2"], tmp_path / "c.json")["ssv2-val/v2v"]
    assert v2v["num_queries"] == v2v["num_videos"] == 16 and 1 <= v2v["MedR"] <= 15
    with pytest.raises(ConfigError, match="two videos of some class"):  # UCF fixture: one test video per class
        _eval("v2v", tiny_model_dir, eval_data["ucf101"], tmp_path / "c.json", "--dataset", "ucf101")
    sort = _eval("sort", tiny_model_dir, eval_data["yttemporal"], tmp_path / "d.json")["yttemporal-yttemporal_val/sort-K4"]
    assert sort["num_videos"] == 2 and 0 <= sort["text_video"]["order_acc"] <= 1


def test_linear_probe_reuses_cached_features(eval_data, tiny_model_dir, tmp_path, monkeypatch):
    args = ("--dataset", "ucf101", "--epochs", "5")
    r1 = _eval("linear-probe", tiny_model_dir, eval_data["ucf101"], tmp_path / "p.json", *args)["ucf101-split1/linear-probe"]
    assert r1["num_train"] == 8 and r1["epochs"] == 5 and 0 <= r1["top1"] <= 100

    def no_decoding(self, i):
        raise AssertionError("a cached video was decoded again")

    monkeypatch.setattr(ViewsDataset, "__getitem__", no_decoding)
    r2 = _eval("linear-probe", tiny_model_dir, eval_data["ucf101"], tmp_path / "p.json", *args)["ucf101-split1/linear-probe"]
    assert r2["top1"] == r1["top1"] and r2["confusion"] == r1["confusion"]


def test_eval_all_writes_one_report(eval_data, tiny_model_dir, tmp_path):
    cfg = {"model": str(tiny_model_dir), "workers": 0, "progress": False, "figures": False,
           "protocols": [{"protocol": "retrieval", "dataset": "msrvtt", "data": str(eval_data["msrvtt"])},
                         {"protocol": "zero-shot", "dataset": "ucf101", "data": str(eval_data["ucf101"])},
                         {"protocol": "zero-shot", "dataset": "ucf101", "data": str(eval_data["ucf101"]), "template": ["{}"]},
                         {"protocol": "linear-probe", "dataset": "ucf101", "data": str(eval_data["ucf101"]), "epochs": 3}]}
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _run(["eval", "all", "--config", str(path), "--out", str(tmp_path / "all.json")])
    res = json.loads((tmp_path / "all.json").read_text())["results"]
    assert set(res) == {"msrvtt-1ka/zs-retrieval", "ucf101-split1/zs-recognition", "ucf101-split1/zs-recognition#2",
                        "ucf101-split1/linear-probe"}
    md = (tmp_path / "all.md").read_text()
    assert "| msrvtt-1ka/zs-retrieval |" in md and "| ucf101-split1/linear-probe |" in md


@pytest.mark.parametrize("entry,field,match", [
    ({"protocol": "knn", "epochs": 3}, "epochs", "epochs"),  # another protocol's option
    ({"protocol": "linear-probe", "epochs": "many"}, "epochs", "many"),  # a wrong type
    ({"protocol": "knn", "vote": "loudest"}, "vote", "vote must be one of weighted, majority"),
    ({"protocol": "zero-shot", "dataset": "ssv2"}, "dataset", "dataset must be one of ucf101, hmdb51, k400"),
    ({"protocol": "linear-prob"}, "protocol", "unknown protocol 'linear-prob'"),
])
def test_eval_all_names_the_entry_and_option_it_rejects(eval_data, tiny_model_dir, tmp_path, entry, field, match,
                                                        monkeypatch):
    import tvts.eval.cli_commands as cli

    monkeypatch.setattr(cli, "_encoder", lambda opts: pytest.fail("a protocol ran before every entry was checked"))
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump({"model": str(tiny_model_dir), "protocols": [
        {"protocol": "v2v", "data": str(eval_data["ssv2"])}, {**entry, "data": str(eval_data["ucf101"])}]}))
    with pytest.raises(ConfigError, match=match) as e:
        _run(["eval", "all", "--config", str(path), "--out", str(tmp_path / "x.json")])
    assert e.value.field == field and "protocols[2]" in str(e.value)


def test_every_command_line_default_is_the_options_dataclass_default():
    from tvts.eval.options import PROTOCOL_OPTIONS, defaults

    parser = build_parser()
    for protocol in PROTOCOL_OPTIONS:
        args = vars(parser.parse_args(["eval", protocol, "--model", "M", "--data", "D"]))
        for key, value in defaults(protocol).items():
            if key in args and key not in ("model", "data"):
                assert args[key] == value, (protocol, key)


def test_extract_command_folder_and_list(eval_data, tiny_model_dir, tmp_path):
    out = tmp_path / "feats.safetensors"
    _run(["extract", "--model", str(tiny_model_dir), "--videos", str(eval_data["ucf101"] / "videos"), "--out", str(out),
          "--workers", "0", "--no-progress", "--clips", "2", "--reduce", "none"])
    index = json.loads(side_paths(out)["index"].read_text())["ids"]
    assert len(index) == 16 and index[0].startswith("Grow/v_Grow_g01")
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(c["path"] for c in eval_data["clips"][:3]) + "\nmissing.mp4\n")
    _run(["extract", "--model", str(tiny_model_dir), "--list", str(listing), "--out", str(tmp_path / "l.safetensors"),
          "--workers", "0", "--no-progress"])
    failed = json.loads(side_paths(tmp_path / "l.safetensors")["failed"].read_text())
    assert [f["video_id"] for f in failed] == ["missing.mp4"] and failed[0]["reason"] == "unreadable"


def test_finetune_trains_and_tests_with_views(eval_data, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    res = _eval("finetune", tiny_model_dir, eval_data["k400"], tmp_path / "ft.json", "--dataset", "k400", "--epochs", "2",
                "--batch-size", "4")["k400-val/finetune"]
    assert res["views"] == "2 clips x 3 crops" and len(res["train_loss"]) == 2 and res["num_train"] == 8
    assert res["num_videos"] == 8 and 0 <= res["top1"] <= res["top5"] <= 100 and res["lr"] == 1e-3
    weights = load_file(str(tmp_path / "k400-val_finetune.safetensors"))
    assert weights["head.weight"].shape == (8, 16)


def test_protocols_run_one_after_another_build_one_report(eval_data, tiny_model_dir, tmp_path):
    out = tmp_path / "report.json"
    mc = _eval("ssv2-mc", tiny_model_dir, eval_data["ssv2"], out, "--seed", "3")
    both = _eval("v2v", tiny_model_dir, eval_data["ssv2"], out)
    assert set(both) == set(mc) | {"ssv2-val/v2v"} and both["ssv2-val/mc-seed3"] == mc["ssv2-val/mc-seed3"]
    report = json.loads(out.read_text())
    assert set(report["settings"]) == set(both)  # each result keeps the settings it was computed with
    md = out.with_suffix(".md").read_text()
    assert "mc-seed3" in md and "v2v" in md
    other = tmp_path / "other_model"  # a report is about one model: another model's results are refused
    import shutil

    shutil.copytree(tiny_model_dir, other)
    with pytest.raises(ConfigError, match="holds the results of model"):
        _eval("v2v", other, eval_data["ssv2"], out)
