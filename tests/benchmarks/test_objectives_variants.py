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
    plain, softmax = recipe("cpd_plain_head"), recipe("cpd_softmax_plain_head")
    assert (plain.objective.cpd.estimator, softmax.objective.cpd.estimator) == ("nce", "softmax")
    assert recipe("cpd_softmax_all_noise").objective.cpd.num_noise == 2399
    assert recipe("contrastive_warm").objective.temperature == 10 * recipe("contrastive").objective.temperature
