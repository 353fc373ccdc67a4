"""Protocol logic on controlled features and a stub text encoder."""

import hashlib
import math
from types import SimpleNamespace

import pytest
import torch

from tvts.errors import ConfigError
from tvts.eval.annotations import LabelledSet
from tvts.eval.protocols import (caption_vs_foil, class_embeddings, frozen_feature_protocols, linear_probe, retrieval_from_features,
                                 sort_accuracy, ssv2_mc_candidates)
from tvts.objectives.sorting import pairs, permutation_index


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


def test_caption_vs_foil_against_a_direct_count():
    g = torch.Generator().manual_seed(0)
    video, caption, foil = (torch.nn.functional.normalize(torch.randn(50, 8, generator=g), dim=-1) for _ in range(3))
    expected = sum(float(video[i] @ caption[i]) > float(video[i] @ foil[i]) for i in range(50))
    out = caption_vs_foil(video, caption, foil)
    assert out == {"top1": 100.0 * expected / 50, "num_videos": 50, "chance_top1": 50.0}
    assert caption_vs_foil(video, video, foil)["top1"] == 100.0  # the clip's own direction always wins
    assert caption_vs_foil(video, caption, caption)["top1"] == 0.0  # a tie is not a right answer


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
    assert res["linear-probe"].metrics["top1"] == res["knn"].metrics["top1"] == 100.0 and res["v2v"].metrics["R@1"] == 100.0
    assert sum(map(sum, res["knn"].metrics["confusion"])) == 20
    assert res["knn"].logits.shape == (20, 5) and res["v2v"].logits is None


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


# ---------------------------------------------------------------------------------------- transcript sorting
class _OracleSorter(torch.nn.Module):
    """A sort 'model' for ``sort_accuracy``: each transcript is a digit, its original position; with the
    video the head predicts the true order perfectly, without it always the identity order."""

    def __init__(self, output: str):
        super().__init__()
        self.config = SimpleNamespace(name="oracle", sort_head=SimpleNamespace(output=output))
        self.pred_model = torch.nn.Identity()  # stands for a sort head; sort_logits below does the work

    def sort_video(self, frames):
        return frames

    def text_model(self, texts):
        return torch.tensor([[float(t)] for t in texts])

    def sort_logits(self, video, feats):
        b, k = feats.shape[:2]
        order = feats[..., 0].long() if video is not None else torch.arange(k).repeat(b, 1)
        output = self.config.sort_head.output
        if output == "kway":
            return 10.0 * torch.nn.functional.one_hot(order, k).float()
        if output == "pairwise":
            ij = pairs(k)
            return 10.0 * ((order[:, ij[:, 0]] < order[:, ij[:, 1]]).float() * 2 - 1)
        return 10.0 * torch.nn.functional.one_hot(permutation_index(order), math.factorial(k)).float()


@pytest.mark.parametrize("output", ["kway", "pairwise", "factorial"])
def test_sort_accuracy_for_every_sort_output(output):
    orders = [[0, 1, 2, 3], [2, 0, 3, 1], [1, 0, 2, 3], [3, 2, 1, 0]]
    samples = [{"frames": torch.zeros(2, 3, 4, 4), "texts": [str(o) for o in order], "caption": "", "order": torch.tensor(order),
                "bounds": torch.zeros(4, 2), "frame_times": torch.zeros(2), "video_id": str(i), "index": i}
               for i, order in enumerate(orders)]
    res = sort_accuracy(_OracleSorter(output), samples, batch_size=3, workers=0, progress=False)
    assert res["num_videos"] == 4 and res["K"] == 4
    assert res["text_video"] == {"segment_acc": 1.0, "order_acc": 1.0}
    # Text only: the identity order, right for sample 0 (4 transcripts), 2 of sample 2, none elsewhere.
    assert res["text_only"] == {"segment_acc": 6 / 16, "order_acc": 0.25}


def test_sort_accuracy_of_a_model_without_sort_head_is_a_clear_error():
    model = _OracleSorter("kway")
    model.pred_model = None
    with pytest.raises(ConfigError, match="no sort head") as e:
        sort_accuracy(model, [], batch_size=3, workers=0, progress=False)
    assert e.value.field == "model.sort_head.kind"


def test_retrieval_examples_carry_the_rank_of_the_right_video():
    from tvts.eval.annotations import RetrievalSet
    from tvts.eval.extract import Features
    from tvts.eval.protocols import zero_shot_retrieval

    g = torch.Generator().manual_seed(1)
    feats = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=-1)

    class Enc(StubEncoder):
        def videos(self, name, paths, ids):
            return Features(feats, list(ids), [], {})

    ds = RetrievalSet("toy", [f"v{i}" for i in range(6)], [f"/x/v{i}.mp4" for i in range(6)],
                      [f"caption {i}" for i in range(6)], list(range(6)))
    out = zero_shot_retrieval(Enc(), ds, examples=6)
    text = Enc().texts(ds.captions)
    scores = text @ feats.T
    assert len(out.examples) == 6 and set(out.metrics) == {"toy/zs-retrieval"}
    for i, e in enumerate(out.examples):
        expected = 1 + sum(float(scores[i, j]) > float(scores[i, i]) for j in range(6))
        assert e["rank"] == expected and e["truth"] == f"/x/v{i}.mp4"
        assert (e["rank"] <= 3) == (e["truth"] in e["top"])
