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
    ("model.sort_head.output=ranking", "model.sort_head.output"),
    ("objective.name=magic", "objective.name"),
    ("objective.contrastive=audio", "objective.contrastive"),
    ("objective.cpd.loss=triplet", "objective.cpd.loss"),
    ("objective.cpd.momentum=1.0", "objective.cpd.momentum"),
    ("objective.cpd.estimator=exact", "objective.cpd.estimator"),
    ("objective.cpd.positive=batch", "objective.cpd.positive"),
    ("objective.cpd.noise=queue", "objective.cpd.noise"),
    ("objective.cpd.noise=batch", "objective.cpd.noise"),  # NCE (the default estimator) assumes uniform noise draws
    ("objective.cpd.keys=queue", "objective.cpd.keys"),
    ("objective.cpd.keys=batch", "objective.cpd.keys"),  # the batch's keys need the batch's noise
    ("data.windows=middle", "data.windows"),
    ("objective.svilm.num_nouns=0", "objective.svilm.num_nouns"),
    ("model.text_proj=deep", "model.text_proj"),
    ("model.video.pool=max", "model.video.pool"),
    ("model.text.precision=fp16", "model.text.precision"),
    ("objective.clip_text=asr", "objective.clip_text"),
    ("train.curriculum.trigger=later", "train.curriculum.trigger"),
    ("data.time_order=reversed", "data.time_order"),
    ("data.group_size=3", "data.group_size"),  # must divide the batch of 32
    ("data.group_size=0", "data.group_size"),
    # values that used to pass checking and crash later (K! orders at the first step, a division by zero, ...)
    ("model.num_segments=8", "model.num_segments"),
    ("train.ckpt_every=0", "train.ckpt_every"),
    ("train.log_every=0", "train.log_every"),
    ("data.decode_timeout=-1", "data.decode_timeout"),
    ("data.workers=-2", "data.workers"),
    ("data.max_retries=-1", "data.max_retries"),
    ("train.grad_clip=-1", "train.grad_clip"),
    ("train.strategy=zero3", "train.strategy"),
])
def test_bad_fields_are_named(override, field):
    with pytest.raises(ConfigError) as e:
        load_recipe("demo", [override])
    assert field in str(e.value)


def test_an_out_of_range_override_names_the_override_not_the_file():
    with pytest.raises(ConfigError) as e:
        load_recipe("demo", ["train.steps=10", "train.ckpt_every=0"])
    assert "override train.ckpt_every=0" in str(e.value) and "demo.yaml" not in str(e.value)
    assert e.value.field == "train.ckpt_every"


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


@pytest.mark.parametrize("overrides, field", [
    (["train.curriculum.trigger=steps", "train.curriculum.at_step=0"], "train.curriculum.at_step"),
    (["objective.contrastive=clip", "objective.name=cpd", "model.sort_head.kind=none", "data.caption_manifest=c.jsonl",
      "data.caption_ratio=0.5"],
     "data.caption_ratio"),
    # the sort loss needs a sort head
    (["model.sort_head.kind=none"], "model.sort_head.kind"),
    # S-ViLM needs group tokens; group tokens need layers inside the encoder
    (["objective.contrastive=clip", "objective.name=svilm"], "model.video.num_groups"),
    (["model.video.num_groups=4", "model.video.group_layers=[9]"], "model.video.group_layers"),
    (["model.video.num_groups=4"], "model.video.group_layers"),
    (["model.video.group_self_attention=true"], "model.video.group_layers"),  # group tokens in attention need groups
    # a subset of the split list: a count, and only of a split list (a manifest or shards have their own ways)
    (["data.max_videos=-1"], "data.max_videos"),
    (["data.max_videos=10", "data.manifest=m.jsonl"], "data.max_videos"),
    (["model.video.num_groups=4", "model.video.group_layers=[2]", "model.video.group_assign=kmeans"], "model.video.group_assign"),
    # a 3D CNN cannot drop tokens; its depth is a ResNet depth
    (["model.video.arch=r3d_slow", "model.video.depth=34", "model.video.mask_ratio=0.5"], "model.video.mask_ratio"),
    (["model.video.arch=r3d_slow", "model.video.depth=4", "model.video.mask_ratio=0"], "model.video.depth"),
    (["model.video.arch=r3d_slow", "model.video.depth=18", "model.video.pool=mean"], "model.video.pool"),
    # encoding the K parts of a clip on their own needs T divisible by K * tubelet
    (["objective.contrastive=clip", "objective.name=vcop", "model.video.num_frames=6", "model.video.max_slots=3"], "model.video.num_frames"),
    # the demo matches parts with segments (contrastive: frame), an option of the tvts objective only
    (["objective.name=vcop"], "objective.contrastive"),
    (["objective.contrastive=frame", "model.video.num_frames=4", "model.video.max_slots=2"], "model.video.num_frames"),
])
def test_objective_and_model_combinations_are_checked(overrides, field):
    with pytest.raises(ConfigError) as e:
        load_recipe("demo", overrides)
    assert field in str(e.value)


def test_objective_variants_load():
    cpd = load_recipe("demo", ["objective.contrastive=clip", "objective.name=cpd", "model.sort_head.kind=none", "model.text_proj=mlp_bn",
                               "model.video.arch=r3d_slow", "model.video.depth=18", "model.video.mask_ratio=0",
                               "train.curriculum.trigger=steps", "train.curriculum.at_step=500"])
    assert (cpd.objective.cpd.loss, cpd.objective.cpd.temperature, cpd.train.curriculum.text_lr) == ("cross_pair", 0.07, 3e-5)
    svilm = load_recipe("demo", ["objective.contrastive=clip", "objective.name=svilm", "model.video.num_groups=8", "model.video.group_layers=[2,4]",
                                 "model.video.pool=groups", "model.sort_head.kind=none"])
    assert svilm.model.video.group_layers == [2, 4] and svilm.objective.svilm.num_nouns == 2


def test_every_registry_names_exactly_the_choices_the_config_accepts():
    """Config holds each choice list once (it sits below the layers that use them); each registry maps
    exactly those names to classes."""
    from tvts.config import ACTIVATION_NAMES, OBJECTIVE_NAMES, SORT_HEAD_KINDS
    from tvts.models.divided_vit import ACTIVATIONS
    from tvts.models.heads import SORT_HEADS
    from tvts.objectives import REGISTRY

    assert tuple(ACTIVATIONS) == ACTIVATION_NAMES
    assert tuple(SORT_HEADS) == SORT_HEAD_KINDS
    assert tuple(REGISTRY) == OBJECTIVE_NAMES


def test_video_config_is_the_class_of_its_arch_and_holds_only_its_fields(tmp_path):
    from tvts.config import DividedViTConfig, JointViTConfig, R3DConfig, load_model_config

    assert type(load_recipe("demo").model.video) is JointViTConfig
    assert type(load_model_config("tvtsv2_vitb16").video) is DividedViTConfig
    r3d = load_model_config("cpd_r3d34").video
    assert type(r3d) is R3DConfig and r3d.depth == 34 and not hasattr(r3d, "patch")
    # a field of another architecture is refused, with its dotted name
    with pytest.raises(ConfigError) as e:
        load_recipe("demo", ["model.video.post_norm=cls"])
    assert e.value.field == "model.video.post_norm"
    with pytest.raises(ConfigError) as e:
        load_model_config("cpd_r3d34", ["video.width=64"])
    assert e.value.field == "video.width"
    # an override that changes the arch leaves the base's ViT fields behind
    cfg = load_recipe("demo", ["objective.contrastive=clip", "objective.name=cpd", "model.sort_head.kind=none",
                               "model.video.arch=r3d_slow", "model.video.depth=18"])
    assert type(cfg.model.video) is R3DConfig and cfg.model.video.img_size == 32


def test_a_config_json_written_before_the_split_still_loads(tmp_path):
    """Until the split every config.json carried every field of every architecture; those at their old shared
    defaults are dropped, any other value of a field the arch does not have is an error."""
    import dataclasses
    import json

    from tvts.config import _SHARED_VIDEO_DEFAULTS, R3DConfig, load_model_config

    old = dataclasses.asdict(load_model_config("cpd_r3d34"))
    old["video"] = {**_SHARED_VIDEO_DEFAULTS, **old["video"]}  # the old union: depth is the ResNet's here
    old["family"] = "tvts"
    (tmp_path / "config.json").write_text(json.dumps(old))
    cfg = load_model_config(str(tmp_path / "config.json"))
    assert type(cfg.video) is R3DConfig and cfg.video.depth == 34 and cfg.family == "video_bert"
    old["video"]["patch"] = 8  # not the old default: it meant something once, so it is not silently dropped
    (tmp_path / "config.json").write_text(json.dumps(old))
    with pytest.raises(ConfigError) as e:
        load_model_config(str(tmp_path / "config.json"))
    assert e.value.field == "video.patch"
