"""Protocol logic on controlled features and a stub text encoder."""

import hashlib

import pytest
import torch

from tvts.eval.annotations import LabelledSet
from tvts.eval.protocols import (class_embeddings, frozen_feature_protocols, linear_probe, retrieval_from_features,
                                 ssv2_mc_candidates)


class StubEncoder:
    """``texts``: a fixed random unit vector per string (from its hash)."""

    def texts(self, texts):
        rows = []
        for t in texts:
            g = torch.Generator().manual_seed(int(hashlib.sha1(t.encode()).hexdigest()[:8], 16))
            rows.append(torch.randn(8, generator=g))
        return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def _labelled(n_per_class: int, classes: int) -> LabelledSet:
    labels = [c for c in range(classes) for _ in range(n_per_class)]
    return LabelledSet("toy", [f"v{i}" for i in range(len(labels))], [""] * len(labels), labels,
                       [f"class{c}" for c in range(classes)], [f"desc {c} {i}" for i, c in enumerate(labels)])


def test_ssv2_mc_one_candidate_per_class_seeded():
    ds = _labelled(3, 6)
    options, answers = ssv2_mc_candidates(ds, seed=5)
    for i, (opts, a) in enumerate(zip(options, answers)):
        assert len(opts) == 6 and opts[a] == ds.descriptions[i]
        classes = sorted(int(o.split()[1]) for o in opts)
        assert classes == list(range(6))  # the true one and exactly one of every other class
    assert ssv2_mc_candidates(ds, seed=5) == (options, answers)
    assert ssv2_mc_candidates(ds, seed=6) != (options, answers)
    assert len(set(answers)) > 1  # the true description is not always in the same place


def test_template_ensemble_is_the_normalised_mean():
    enc = StubEncoder()
    names = ["run", "jump"]
    single = class_embeddings(enc, names, ("a person {}",))
    assert torch.allclose(single, enc.texts(["a person run", "a person jump"]))
    ens = class_embeddings(enc, names, ("a person {}", "a video of {}"))
    want = torch.nn.functional.normalize(enc.texts(["a person run", "a person jump"]) + enc.texts(["a video of run", "a video of jump"]), dim=-1)
    assert torch.allclose(ens, want, atol=1e-6)


def test_linear_probe_learns_separable_features_and_is_seeded():
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=-1)
    ytr, yte = torch.arange(5).repeat(20), torch.arange(5).repeat(4)
    xtr = centres[ytr] + 0.05 * torch.randn(100, 16, generator=g)
    xte = centres[yte] + 0.05 * torch.randn(20, 16, generator=g)
    logits = linear_probe(xtr, ytr, xte, 5, epochs=20, batch_size=25)
    assert (logits.argmax(1) == yte).all()
    assert torch.equal(logits, linear_probe(xtr, ytr, xte, 5, epochs=20, batch_size=25))
    res = frozen_feature_protocols((xtr, ytr), (xte, yte), 5, epochs=30)
    assert res["linear-probe"]["top1"] == res["knn"]["top1"] == 100.0 and res["v2v"]["R@1"] == 100.0
    assert sum(map(sum, res["knn"]["confusion"])) == 20


def test_retrieval_from_features_dsl_is_a_separate_result():
    g = torch.Generator().manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)
    t = torch.nn.functional.normalize(v + 0.3 * torch.randn(6, 8, generator=g), dim=-1)
    plain = retrieval_from_features(t, v, torch.arange(6))
    both = retrieval_from_features(t, v, torch.arange(6), dsl_temperature=0.01)
    assert set(plain) == {"zs-retrieval"} and set(both) == {"zs-retrieval", "zs-retrieval-dsl"}
    assert both["zs-retrieval"] == plain["zs-retrieval"]
    assert both["zs-retrieval-dsl"]["dsl_temperature"] == 0.01


@pytest.mark.parametrize("protocol", ["knn", "v2v"])
def test_single_frozen_protocol(protocol):
    x, y = torch.eye(4), torch.tensor([0, 0, 1, 1])
    assert set(frozen_feature_protocols((x, y), (x, y), 2, protocols=(protocol,))) == {protocol}
