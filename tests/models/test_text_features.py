"""Precomputed text features: the same features and the same loss as encoding every step."""

import warnings

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
    # Each gradient agrees relative to its own scale, with a floor relative to the largest gradient: some are
    # zero in exact arithmetic (an attention key's bias shifts every logit of a row alike) and only rounding noise
    # of ~1e-9 here, which a relative test alone would compare noise with noise.
    floor = 1e-6 * max(g.abs().max().item() for g in grad_a.values())
    for n in grad_a:
        assert (grad_a[n] - grad_b[n]).abs().max().item() <= 1e-4 * grad_a[n].abs().max().item() + floor, n


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


def _bf16_model(bert, precision):
    torch.manual_seed(0)
    cfg = tiny_model_config(bert, trainable_layers=0)
    cfg.text.precision = precision
    return build_model(cfg).eval()


def test_a_bf16_tower_stays_close_to_fp32_and_gets_its_own_table(bert, tmp_path):
    """``model.text.precision: bf16``: features within bf16 rounding of float32 ones (float32 out), the
    table equal to encoding per step up to that rounding, and a fingerprint of its own (never the fp32 file)."""
    fp32, bf16 = _bf16_model(bert, "fp32").text_model, _bf16_model(bert, "bf16").text_model
    texts = _texts(64, 5)
    with torch.no_grad():
        a, b = fp32.encode(texts), bf16.encode(texts)
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # it did run in bf16
    assert _close(a, b, rel=3e-2)  # bf16 keeps 8 bits of mantissa: ~0.4 % per product, a few % over 2 blocks
    cos = torch.nn.functional.cosine_similarity(a, b)
    assert cos.min() > 0.999
    assert fp32.fingerprint() != bf16.fingerprint()
    table = TextFeatureTable.build(bf16.encode, texts, tokens_per_batch=256)
    bf16.feature_table = table
    with torch.no_grad():
        assert _close(bf16(texts[:10]), bf16.encode(texts[:10]), rel=3e-2)


def _linear_output_dtypes(text_model, texts, autocast: bool):
    """The dtypes the tower's first linear layer produced while encoding ``texts``."""
    linear = next(m for m in text_model.model.modules() if isinstance(m, torch.nn.Linear))
    seen = []
    handle = linear.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        text_model.encode(texts)
    handle.remove()
    return set(seen)


def test_text_precision_decides_the_frozen_towers_dtype_and_leaves_a_callers_autocast_on(bert, monkeypatch):
    texts = _texts(3, 6)
    assert _linear_output_dtypes(_bf16_model(bert, "fp32").text_model, texts, autocast=False) == {torch.float32}
    assert _linear_output_dtypes(_bf16_model(bert, "bf16").text_model, texts, autocast=False) == {torch.bfloat16}
    # fp32 must not switch off the trainer's autocast (a trainable tower under train.precision)
    torch.manual_seed(0)
    trainable = build_model(tiny_model_config(bert, trainable_layers=-1)).eval().text_model
    assert _linear_output_dtypes(trainable, texts, autocast=True) == {torch.bfloat16}
    # bf16 applies to a frozen tower only
    trainable.cfg.precision = "bf16"
    assert _linear_output_dtypes(trainable, texts, autocast=False) == {torch.float32}
    # auto: bf16 exactly where the device computes it natively
    import tvts.models.text as text_module

    auto = _bf16_model(bert, "auto").text_model
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(text_module, "native_bf16", lambda device, native=native: native)
        assert _linear_output_dtypes(auto, texts, autocast=False) == {dtype}


def test_truncated_counts_the_texts_cut_to_max_length_and_a_cut_text_encodes_as_its_head(bert):
    model = _frozen_model(bert)
    tower = model.text_model
    limit = tower.cfg.max_length  # tokens, [CLS] and [SEP] included; one token per word of WORDS
    assert len(tower.tokenizer("red")["input_ids"]) == 3  # one word piece between [CLS] and [SEP]
    lengths = [1, limit - 2, limit - 1, limit + 5, 3 * limit]  # words
    texts = [" ".join(["red"] * n) for n in lengths]
    assert tower.truncated(texts) == (3, 3 * limit + 2)
    assert tower.truncated(texts[:2]) == (0, limit) and tower.truncated([]) == (0, 0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with torch.no_grad():
            tower(texts[:2])  # the longest reaches the limit without being cut: no warning
            assert not seen
            # what was cut is lost: the long text encodes as its first limit - 2 words
            assert _close(tower(texts[3:4]), tower([" ".join(texts[3].split()[: limit - 2])]))
            tower(texts)
    assert len(seen) == 1  # said once per tower, naming the field to raise
    assert "1 of 1 texts are longer than model.text.max_length=16" in str(seen[0].message)
