import pytest

from tvts.config import load_model_config, load_recipe
from tvts.errors import ConfigError


def test_named_recipes_and_models_load():
    demo = load_recipe("demo")
    assert demo.model.name == "tvts_demo" and demo.model.sort_head.kind == "pointer"
    paper = load_recipe("tvts_vitb16")
    v = paper.model.video
    assert (v.num_frames, v.tubelet, v.patch, v.img_size, v.width, v.depth, v.mask_ratio) == (16, 2, 16, 224, 768, 12, 0.75)
    assert (paper.model.embed_dim, paper.objective.temperature, paper.objective.sort_weight) == (256, 0.05, 2.0)
    assert paper.model.sort_head.kind == "transformer"
    assert load_model_config("tvts_demo").video.width == 128


def test_overrides_are_typed():
    cfg = load_recipe("demo", ["train.steps=7", "model.video.depth=2", "objective.stop_gradient=false"])
    assert (cfg.train.steps, cfg.model.video.depth, cfg.objective.stop_gradient) == (7, 2, False)


@pytest.mark.parametrize("override, field", [
    ("train.stepz=3", "train.stepz"),
    ("train.steps=many", "train.steps"),
    ("model.video.mask_ratio=1.5", "model.video.mask_ratio"),
    ("model.sort_head.kind=magic", "model.sort_head.kind"),
])
def test_bad_fields_are_named(override, field):
    with pytest.raises(ConfigError) as e:
        load_recipe("demo", [override])
    assert field in str(e.value)


def test_bad_yaml_file_names_the_file(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("model: tvts_demo\ntrain:\n  batch_size: [1, 2\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(str(p))
    assert str(p) in str(e.value)
    p.write_text("model: tvts_demo\ndata:\n  synthetic: {}\ntrain:\n  betas: 0.9\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(str(p))
    assert "train.betas" in str(e.value) and str(p) in str(e.value)


def test_unknown_config_name_lists_known_ones():
    with pytest.raises(ConfigError) as e:
        load_recipe("nonexistent_recipe")
    assert "demo" in str(e.value)
