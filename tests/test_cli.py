"""The main job end to end through the CLI, on a tiny recipe (tiny model, tiny dataset)."""

import json

import pytest
import yaml

from tvts.cli import main
from tvts.testing import make_tiny_bert


@pytest.fixture
def tiny_recipe(tmp_path):
    bert = make_tiny_bert(tmp_path / "bert")
    recipe = {
        "model": {"base": "tvts_demo", "embed_dim": 16,
                  "video": {"img_size": 16, "patch": 8, "width": 32, "depth": 1, "heads": 2, "max_slots": 4},
                  "text": {"name": str(bert), "max_length": 16}, "sort_head": {"depth": 1, "heads": 2}},
        "data": {"synthetic": {"out": str(tmp_path / "shapes"), "num_train": 8, "num_val": 4, "num_heldout": 16},
                 "workers": 0},
        "train": {"out_dir": str(tmp_path / "run"), "steps": 3, "batch_size": 4, "ckpt_every": 2, "log_every": 1,
                  "progress": False},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_main_job_writes_checkpoint_metrics_results_and_plot(tiny_recipe, tmp_path, capsys):
    assert main(["main", "--config", str(tiny_recipe)]) == 0
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["version"] == 1 and results["sort_head"] == "pointer"
    s = results["sort"]
    assert s["num_videos"] == 4 and s["K"] == 4 and s["chance_segment_acc"] == 0.25
    for part in ("text_video", "text_only"):
        assert 0.0 <= s[part]["segment_acc"] <= 1.0 and 0.0 <= s[part]["order_acc"] <= 1.0
    r = results["retrieval"]
    assert r["num_queries"] == r["num_videos"] == 8
    assert r["t2v_MedR"] >= 1 and r["t2v_MedR"] <= 8 and r["t2v_R@10"] == 100.0  # only 8 candidates
    assert results["train"]["steps"] == 3
    assert set(results["timing"]) == {"data_s", "pretrain_s", "eval_s", "total_s"}
    assert (run / "training_curves.png").stat().st_size > 1000
    assert (run / "model" / "model.safetensors").is_file()
    assert "text + video" in capsys.readouterr().out


def test_bad_override_is_a_clear_error(tiny_recipe, capsys):
    assert main(["main", "--config", str(tiny_recipe), "train.batch_sise=2"]) == 2
    assert "train.batch_sise" in capsys.readouterr().err


def test_a_missing_optional_package_is_one_line_before_any_work(tmp_path, monkeypatch):
    """Each optional dependency missing: one ConfigError naming the extra to install, raised before work starts."""
    import sys

    import pytest

    from tvts.deps import EXTRAS, require
    from tvts.errors import ConfigError

    for module, extra in EXTRAS.items():
        monkeypatch.setitem(sys.modules, module, None)  # "not installed": importing it raises ImportError
        with pytest.raises(ConfigError) as e:
            require(module, "this step", field="x.y")
        assert f"pip install 'tvts[{extra}]'" in str(e.value) and "this step needs" in str(e.value)
        assert "\n" not in str(e.value)
    # the shard writer checks before it reads or writes anything
    from tvts.data.shards import write_shards

    with pytest.raises(ConfigError, match=r"tvts data shard needs webdataset: pip install 'tvts\[shards\]'"):
        write_shards(tmp_path / "m.jsonl", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_svilm_needs_spacy_only_for_its_grounding(monkeypatch):
    """S-ViLM without spatial grounding (``grounding_weight=0``) trains without spaCy; with it, the missing
    package is one line naming the extra, before any work."""
    import sys

    import pytest

    from tvts.config import load_recipe
    from tvts.errors import ConfigError
    from tvts.train.trainer import check_dependencies

    from tvts.data.nouns import load_pipeline

    monkeypatch.setitem(sys.modules, "spacy", None)  # "not installed"
    load_pipeline.cache_clear()  # a pipeline loaded by an earlier test would hide the missing package
    check_dependencies(load_recipe("svilm_demo", ["objective.svilm.grounding_weight=0"]))
    with pytest.raises(ConfigError, match=r"needs spacy: pip install 'tvts\[svilm\]'"):
        check_dependencies(load_recipe("svilm_demo"))
