"""``tvts search``: the exact window for its own embedding, the moment-merging rule, video-to-video, FAISS
giving the exact results, the command line, and (with a trained demo model) text queries that find the
window of the event they name more often than chance."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from tvts.cli import main
from tvts.errors import ConfigError
from tvts.search.query import SearchIndex, like_query, parse_like, text_query

REPO = Path(__file__).resolve().parents[2]


def test_a_windows_own_embedding_finds_exactly_that_window(small_index):
    idx = SearchIndex(small_index)
    assert len(idx) > 40
    for row in range(len(idx)):
        top = idx.search(idx.windows[row], k=3)[0]
        assert top.window == row and top.score == pytest.approx(1.0, abs=1e-5)
        assert top.video == idx.videos[int(idx.window_video[row])]["video"]
        s, e = idx.window_span[row].tolist()
        assert top.start <= s and top.end >= e and (top.window_start, top.window_end) == pytest.approx((s, e))


@pytest.mark.parametrize("k", [1, 3, 10])
def test_moments_are_the_touching_windows_that_beat_everything_left_out(small_index, k):
    idx = SearchIndex(small_index)
    g = torch.Generator().manual_seed(k)
    for _ in range(5):
        q = torch.randn(idx.windows.shape[1], generator=g)
        moments = idx.search(q, k=k)
        scores = idx.windows @ torch.nn.functional.normalize(q, dim=0)
        assert [m.score for m in moments] == sorted((m.score for m in moments), reverse=True)
        for m in moments:
            assert m.score == pytest.approx(float(scores[m.window]), abs=1e-5)
            assert m.start <= m.window_start < m.window_end <= m.end
        for a in moments:  # moments of one video neither overlap nor touch
            for b in moments:
                if a is not b and a.video == b.video:
                    assert a.end < b.start or b.end < a.start
        # every window scoring above the last moment lies inside a moment of its video (all of them when fewer
        # than k moments came back: every window then joined one)
        # fewer than k moments only when every window of the index joined one
        inside = [any(m.video == idx.videos[int(idx.window_video[r])]["video"] and m.start <= float(idx.window_span[r, 0])
                      and float(idx.window_span[r, 1]) <= m.end for m in moments) for r in range(len(idx.windows))]
        assert len(moments) == k or (len(moments) < k and all(inside)), (len(moments), k)
        cut = moments[-1].score if len(moments) == k else -math.inf
        for row in torch.nonzero(scores > cut + 1e-6).flatten().tolist():
            name = idx.videos[int(idx.window_video[row])]["video"]
            s, e = idx.window_span[row].tolist()
            assert any(m.video == name and m.start <= s and e <= m.end for m in moments), row


def test_more_like_a_moment_or_a_video_leaves_the_example_out(small_index):
    idx = SearchIndex(small_index)
    name = idx.videos[2]["video"]
    q, exclude = like_query(idx, name, 9.0)
    row = idx.window_at(2, 9.0)
    s, e = idx.window_span[row].tolist()
    assert s <= 9.0 <= e and torch.equal(q, idx.windows[row])
    moments = idx.search(q, k=8, **exclude)
    assert moments and all(m.video != name or m.end <= s or m.start >= e for m in moments)
    whole, exclude = like_query(idx, name, None)
    assert torch.equal(whole, idx.clips[2])
    assert all(m.video != name for m in idx.search(whole, k=8, **exclude))
    assert parse_like("a@b.mp4@12.5") == ("a@b.mp4", 12.5) and parse_like("dir/x.mp4") == ("dir/x.mp4", None)
    with pytest.raises(ConfigError, match="not in the index"):
        like_query(idx, "nope.mp4", None)


def test_more_like_a_file_outside_the_index_embeds_it_as_the_index_would(small_index, narrated, tiny_model, tmp_path):
    import shutil

    idx = SearchIndex(small_index)
    name = idx.videos[3]["video"]
    copy = tmp_path / "elsewhere.mp4"
    shutil.copyfile(narrated["dir"] / name, copy)
    calls = []

    def loader():
        calls.append(1)
        return tiny_model[0]

    for seconds in (None, 7.3):
        q, exclude = like_query(idx, str(copy), seconds, model_loader=loader)
        assert exclude == {}  # not the index's file: nothing left out
        want = idx.clips[3] if seconds is None else idx.windows[idx.window_at(3, seconds)]
        assert torch.allclose(q, want, atol=1e-5)
    assert len(calls) == 2
    # the indexed file itself, by its path: the index's rows, no model needed
    q, exclude = like_query(idx, str(narrated["dir"] / name), None, model_loader=loader)
    assert torch.equal(q, idx.clips[3]) and exclude == {"exclude_video": 3} and len(calls) == 2
    with pytest.raises(ConfigError, match="not in the index"):  # without a loader (the server): never read
        like_query(idx, str(copy), None)


def test_faiss_missing_is_one_line_naming_the_extra(small_index, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)
    idx = SearchIndex(small_index)
    with pytest.raises(ConfigError, match=r"pip install 'tvts\[faiss\]'") as e:
        idx.search(idx.windows[0], k=1, backend="faiss")
    assert "\n" not in str(e.value)


def test_faiss_gives_the_exact_results(small_index):
    pytest.importorskip("faiss")
    idx = SearchIndex(small_index)
    g = torch.Generator().manual_seed(5)
    for _ in range(10):
        q = torch.randn(idx.windows.shape[1], generator=g)
        exact = [m.to_dict() for m in idx.search(q, k=5)]
        fast = [m.to_dict() for m in idx.search(q, k=5, backend="faiss")]
        assert [(m["video"], m["start"], m["end"], m["window"]) for m in fast] == \
               [(m["video"], m["start"], m["end"], m["window"]) for m in exact]
        assert [m["score"] for m in fast] == pytest.approx([m["score"] for m in exact], abs=1e-5)


def test_cli_text_and_like_queries_print_json(small_index, capsys):
    idx = SearchIndex(small_index)
    assert main(["search", str(small_index), "the red square moves left", "-k", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["moments"]) == 4 and {m["video"] for m in out["moments"]} <= set(idx.by_name)
    name = idx.videos[0]["video"]
    assert main(["search", str(small_index), "--like", f"{name}@3", "-k", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all(line.split()[-1] in idx.by_name for line in lines)
    assert main(["search", str(small_index)]) == 2  # neither a text nor --like: one clear error
    assert "--like" in capsys.readouterr().err


def test_cli_index_then_search(narrated, tiny_model, tmp_path, capsys):
    _, model_dir = tiny_model
    out = tmp_path / "idx"
    assert main(["index", str(narrated["dir"]), "--model", model_dir, "--out", str(out), "--workers", "0",
                 "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"{len(narrated['events'])} videos" in printed and "embedded now" in printed
    assert main(["search", str(out), "a shape grows", "--json", "-k", "1"]) == 0
    assert len(json.loads(capsys.readouterr().out)["moments"]) == 1


# ---------------------------------------------------------------------------------------- the demo model
def _demo_model() -> Path | None:
    p = Path(os.environ.get("TVTS_DEMO_MODEL", REPO / "runs" / "demo" / "model"))
    return p if (p / "model.safetensors").is_file() else None


@pytest.mark.skipif(_demo_model() is None, reason="needs the trained demo model (make demo, or TVTS_DEMO_MODEL=<folder>)")
def test_demo_model_finds_the_window_of_the_event_a_caption_names(narrated, index_with, tmp_path):
    """Every event caption of 6 unseen narrated videos is a query. Over the whole index, the top moment's best
    window is right when its centre lies in an event of the same colour, shape and action (in any video); chance
    is the fraction of all windows that are right. Within the event's own video, the best window is right when
    its centre lies in that event. Both hit counts must beat chance by 3 binomial standard deviations."""
    from tvts.models import load_model

    torch.set_num_threads(1)
    demo = _demo_model()
    model = load_model(demo)
    index_with((model, str(demo)), narrated["dir"], tmp_path / "idx")
    idx = SearchIndex(tmp_path / "idx")
    spans = idx.window_span.tolist()
    rows_of = {r["video"]: range(int(idx.first_window[v]), int(idx.first_window[v + 1])) for v, r in enumerate(idx.videos)}
    name_of = [idx.videos[int(v)]["video"] for v in idx.window_video]
    stats = {"global": [0, 0.0, 0.0], "own video": [0, 0.0, 0.0]}  # hits, expected hits, variance
    for name, events in narrated["events"].items():
        for ev in events:
            want = (ev["colour"], ev["shape"], ev["action"])
            q = text_query(model, ev["caption"])
            top = idx.search(q, k=1)[0]
            right = [_centre_in(spans[r], narrated["events"][name_of[r]], want) for r in range(len(idx))]
            own = list(rows_of[name])
            best = own[int((idx.windows[own] @ q).argmax())]
            in_event = [ev["start"] <= (spans[r][0] + spans[r][1]) / 2 < ev["end"] for r in own]
            for key, hit, p in (("global", right[top.window], sum(right) / len(right)),
                                ("own video", in_event[own.index(best)], sum(in_event) / len(in_event))):
                stats[key][0] += hit
                stats[key][1] += p
                stats[key][2] += p * (1 - p)
    for key, (hits, expected, var) in stats.items():
        assert hits > expected + 3 * math.sqrt(var), (key, hits, expected, stats)


def _centre_in(span, events, want) -> bool:
    c = (span[0] + span[1]) / 2
    return any(ev["start"] <= c < ev["end"] and (ev["colour"], ev["shape"], ev["action"]) == want for ev in events)
