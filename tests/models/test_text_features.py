"""Precomputed text features: the same features and the same loss as encoding every step."""

import pytest
import torch

from tvts.config import ObjectiveConfig
from tvts.models import build_model
from tvts.models.text_features import TextFeatureTable
from tvts.objectives.tvts import TVTSObjective
from tvts.testing import make_tiny_bert, tiny_model_config

WORDS = "the red blue green square circle star moves left right up down grows shrinks rotates now um".split()


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "bert")


def _texts(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [" ".join(WORDS[j] for j in torch.randint(len(WORDS), (int(torch.randint(1, 9, (1,), generator=g)),),
                                                        generator=g)) for _ in range(n)]


def _frozen_model(bert):
    torch.manual_seed(0)
    return build_model(tiny_model_config(bert, trainable_layers=0)).eval()


def _close(a, b, rel=1e-5):
    """Equal up to float rounding, relative to the tensors' scale."""
    return (a - b).abs().max().item() <= rel * max(a.abs().max().item(), 1e-12)


def test_table_features_equal_the_tower_and_misses_are_encoded(bert, tmp_path):
    model = _frozen_model(bert)
    text = model.text_model
    known = _texts(200, 0)
    table = TextFeatureTable.build(text.encode, known, tokens_per_batch=256)
    assert len(table) == len(set(known))
    text.feature_table = table
    queries = known[:40] + ["a sentence nobody precomputed", known[3]]
    with torch.no_grad():
        looked_up = text(queries)
        direct = text.encode(queries)
    assert _close(looked_up, direct)
    assert table.misses == 1
    table.save(tmp_path / "t.safetensors")
    again = TextFeatureTable.load(tmp_path / "t.safetensors")
    assert again.texts == table.texts and torch.equal(again.features, table.features)


def test_same_loss_with_and_without_the_table(bert):
    """The TVTS objective on one batch: loss terms and gradients agree with per-step encoding."""
    batch_texts = [_texts(4, s) for s in range(6)]
    g = torch.Generator().manual_seed(1)
    batch = {"frames": torch.randn(6, 4, 3, 16, 16, generator=g), "texts": batch_texts,
             "order": torch.stack([torch.randperm(4, generator=g) for _ in range(6)]),
             "keep": torch.stack([torch.stack([torch.randperm(4, generator=g)[:2].sort().values for _ in range(2)])
                                  for _ in range(6)])}
    results = []
    for use_table in (False, True):
        model = _frozen_model(bert)
        if use_table:
            model.text_model.feature_table = TextFeatureTable.build(model.text_model.encode,
                                                                    [t for s in batch_texts for t in s] + _texts(50, 9))
        losses, _ = TVTSObjective(ObjectiveConfig())(model, batch)
        sum(losses.values()).backward()
        results.append(({k: v.detach() for k, v in losses.items()},
                        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
        if use_table:
            assert model.text_model.feature_table.misses == 0
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert set(loss_a) == {"contrastive", "sort"}
    for k in loss_a:
        assert _close(loss_a[k], loss_b[k]), k
    assert set(grad_a) == set(grad_b) and not any(n.startswith("text_model.") for n in grad_a)  # frozen
    for n in grad_a:
        assert _close(grad_a[n], grad_b[n], rel=1e-4), n


def test_a_trainable_tower_never_reads_the_table(bert):
    torch.manual_seed(0)
    model = build_model(tiny_model_config(bert, trainable_layers=-1)).eval()
    texts = _texts(5, 3)
    table = TextFeatureTable.build(model.text_model.encode, texts)
    table.features.zero_()
    model.text_model.feature_table = table
    assert model.text_model(texts).abs().sum() > 0 and table.misses == 0


def test_load_or_build_reuses_a_file_only_for_the_same_weights_and_texts(bert, tmp_path):
    model = _frozen_model(bert)
    text = model.text_model
    texts = _texts(30, 4)
    fingerprint = text.fingerprint()
    first, path, loaded = TextFeatureTable.load_or_build(tmp_path, fingerprint, text.encode, texts)
    assert not loaded and path.is_file()
    second, same_path, loaded = TextFeatureTable.load_or_build(tmp_path, text.fingerprint(), text.encode, reversed(texts))
    assert loaded and same_path == path and torch.equal(second.features, first.features)
    with torch.no_grad():
        text.model.embeddings.word_embeddings.weight[5] += 1.0
    _, other, loaded = TextFeatureTable.load_or_build(tmp_path, text.fingerprint(), text.encode, texts)
    assert not loaded and other != path
    _, third, loaded = TextFeatureTable.load_or_build(tmp_path, text.fingerprint(), text.encode, texts[:-1])
    assert not loaded and third not in (path, other)
    path.write_bytes(b"damaged")  # e.g. cut short by a full disk: encoded again, not trusted
    fresh = _frozen_model(bert).text_model
    assert fresh.fingerprint() == fingerprint
    rebuilt, again, loaded = TextFeatureTable.load_or_build(tmp_path, fingerprint, fresh.encode, texts)
    assert not loaded and again == path and torch.equal(rebuilt.features, first.features)
