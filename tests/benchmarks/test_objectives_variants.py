"""benchmarks/objectives.py: every variant is a valid recipe, and the ones taken apart change what they say."""

from __future__ import annotations

import pytest

from tvts.config import load_recipe


@pytest.fixture(scope="module")
def objectives(load_benchmark):
    return load_benchmark("objectives")


def test_every_variant_loads_as_a_valid_recipe(objectives, tmp_path):
    assert objectives.OPTIONAL <= set(objectives.VARIANTS)
    for name in objectives.VARIANTS:  # raises ConfigError naming the field
        load_recipe("demo", objectives.recipe_overrides(name, 0, 2100, tmp_path / name))


def test_taken_apart_variants_change_what_they_name(objectives, tmp_path):
    def recipe(name):
        return load_recipe("demo", objectives.recipe_overrides(name, 0, 2100, tmp_path / name))

    base = recipe("svilm_transcript_groups")
    for name, assign in (("svilm_transcript_groups_argmax", "argmax"), ("svilm_transcript_groups_soft", "soft")):
        r = recipe(name)
        assert (base.model.video.group_assign, r.model.video.group_assign) == ("gumbel", assign)
    assert recipe("svilm_transcript_groups_last").model.video.group_layers == [4]
    attend = recipe("svilm_transcript_groups_attend")
    assert (base.model.video.group_self_attention, attend.model.video.group_self_attention) == (False, True)
    plain, softmax = recipe("cpd_plain_head"), recipe("cpd_softmax_plain_head")
    assert (plain.objective.cpd.estimator, softmax.objective.cpd.estimator) == ("nce", "softmax")
    assert recipe("cpd_softmax_all_noise").objective.cpd.num_noise == 2399
    assert recipe("contrastive_warm").objective.temperature == 10 * recipe("contrastive").objective.temperature


def test_the_chance_row_shows_only_the_columns_some_row_fills(objectives):
    """A table of variants without a sort head has no sort column, so no sort chance level either."""
    def run(variant, lp):
        return {"variant": variant, "pretrain_s": 60.0, "linear_probe": {"top1": lp, "chance_top1": 12.5},
                "sort": {"chance_segment_acc": 0.25}}

    runs = {"contrastive": [run("contrastive", 40.0), run("contrastive", 50.0)], "cpd": [run("cpd", 10.0)]}
    table = objectives.summarise(runs)
    assert table["contrastive"]["linear probe"][:2] == (45.0, pytest.approx(7.0711, abs=1e-3))
    md = objectives.markdown(table, objectives.chance_row(runs), 100, [0, 1], "cmd")
    chance = next(line for line in md.splitlines() if line.startswith("| chance"))
    cells = [c.strip() for c in chance.strip("|").split("|")]
    cols = [m[0] for m in objectives.METRICS]
    assert cells[1 + cols.index("linear probe")] == "12.5" and cells[1 + cols.index("sort acc. (T+V)")] == "–"
    assert "(-35.0)" in md  # cpd's difference to the baseline's mean
