import json

import numpy as np
import pytest
import torch

from tvts.data.transcripts import (
    Transcript,
    load_yt_annotation,
    sample_segments,
    segment_bounds,
    segment_texts,
    shuffle_segments,
    span_seconds,
)
from tvts.errors import ConfigError, SampleError


def _transcript(times, duration, words=None, path="mem.json"):
    times = np.asarray(times, dtype=np.float64)
    words = words or [f"w{i}" for i in range(len(times))]
    return Transcript(words=list(words), times=times, duration=duration, path=path)


# --- Eq. 1 ---------------------------------------------------------------------------------------------


def test_segment_bounds_follow_eq1_with_gap():
    b = segment_bounds(2.5, 4, 3.0, gap=1.5)
    # S_k = 2.5 + (k-1)(3 + 1.5), E_k = S_k + 3
    np.testing.assert_allclose(b, [[2.5, 5.5], [7.0, 10.0], [11.5, 14.5], [16.0, 19.0]])
    assert b.shape == (4, 2) and b.dtype == np.float64
    np.testing.assert_allclose(segment_bounds(0.0, 3, 4.0), [[0, 4], [5, 9], [10, 14]])  # default gap 1 s
    assert span_seconds(4, 4.0, 1.0) == 19.0
    assert span_seconds(1, 4.0, 1.0) == 4.0
    assert span_seconds(3, 2.0, 0.5) == 7.0  # 3*2 + 2*0.5


def test_segment_bounds_rejects_bad_args():
    with pytest.raises(ConfigError):
        segment_bounds(0.0, 0, 4.0)
    with pytest.raises(ConfigError):
        segment_bounds(0.0, 4, -1.0)
    with pytest.raises(ConfigError):
        span_seconds(4, 4.0, gap=-0.1)


def test_segment_texts_boundaries_are_inclusive():
    # Segments [0, 4], [5, 9]: words exactly at S_k and E_k belong, words just outside (and in the gap) do not.
    times = [-0.001, 0.0, 2.0, 4.0, 4.001, 4.999, 5.0, 9.0, 9.001]
    words = ["before", "atS1", "mid1", "atE1", "gap1", "gap2", "atS2", "atE2", "after"]
    tr = _transcript(times, 20.0, words)
    texts = segment_texts(tr, segment_bounds(0.0, 2, 4.0, gap=1.0))
    assert texts == ["atS1 mid1 atE1", "atS2 atE2"]


def test_segment_texts_empty_segment_is_empty_string():
    tr = _transcript([0.5, 10.5], 20.0, ["a", "b"])
    assert segment_texts(tr, segment_bounds(0.0, 3, 4.0)) == ["a", "", "b"]


# --- sampling -------------------------------------------------------------------------------------------


def test_sample_segments_eval_uses_middle_and_is_deterministic():
    tr = _transcript(np.arange(0.0, 30.0, 0.25), 30.0)
    a = sample_segments(tr, 4, 4.0, 1.0, None)
    b = sample_segments(tr, 4, 4.0, 1.0, None)
    assert a.start == pytest.approx((30.0 - 19.0) / 2)
    np.testing.assert_allclose(a.bounds, segment_bounds(5.5, 4, 4.0, 1.0))
    assert a.texts == b.texts
    assert a.texts == segment_texts(tr, a.bounds)


def test_sample_segments_random_start_in_range_and_seeded():
    tr = _transcript(np.arange(0.0, 40.0, 0.1), 40.0)
    starts = []
    for seed in range(50):
        s = sample_segments(tr, 4, 4.0, 1.0, np.random.default_rng(seed))
        assert 0.0 <= s.start <= 40.0 - 19.0
        assert s.bounds[-1, 1] <= 40.0
        assert s.texts == segment_texts(tr, s.bounds)
        starts.append(s.start)
    assert len(set(starts)) == 50  # really random
    again = sample_segments(tr, 4, 4.0, 1.0, np.random.default_rng(7))
    assert again.start == starts[7]


def test_sample_segments_exact_span_gives_start_zero():
    tr = _transcript(np.arange(0.0, 19.0, 0.5), 19.0)
    s = sample_segments(tr, 4, 4.0, 1.0, np.random.default_rng(0))
    assert s.start == 0.0 and s.bounds[-1, 1] == 19.0


def test_sample_segments_too_short():
    tr = _transcript([1.0, 2.0], 10.0, path="short.json")
    with pytest.raises(SampleError) as ei:
        sample_segments(tr, 4, 4.0, 1.0, np.random.default_rng(0))
    e = ei.value
    assert e.reason == "too_short" and e.path == "short.json"
    assert "10.000" in e.detail and "19.000" in e.detail


def test_sample_segments_resamples_empty_segment():
    # Words only in [10, 40): a start < 6 leaves segment 1 ([start, start + 4]) empty; the sampler must
    # retry until start >= 6.
    tr = _transcript(np.arange(10.0, 40.0, 0.05), 40.0)
    seed = next(s for s in range(100) if np.random.default_rng(s).uniform(0.0, 21.0) < 6.0)
    s = sample_segments(tr, 4, 4.0, 1.0, np.random.default_rng(seed), max_tries=10)
    assert s.start >= 6.0 and all(s.texts)
    assert s.start != np.random.default_rng(seed).uniform(0.0, 21.0)  # not the first (bad) draw


def test_sample_segments_empty_after_max_tries():
    tr = _transcript([0.5], 40.0, path="sparse.json")  # segments never all filled

    class CountingRng:
        def __init__(self):
            self.rng, self.calls = np.random.default_rng(0), 0

        def uniform(self, a, b):
            self.calls += 1
            return self.rng.uniform(a, b)

    rng = CountingRng()
    with pytest.raises(SampleError) as ei:
        sample_segments(tr, 4, 4.0, 1.0, rng, max_tries=5)
    assert ei.value.reason == "empty_segment" and ei.value.path == "sparse.json"
    assert rng.calls == 5
    with pytest.raises(SampleError, match="empty_segment"):
        sample_segments(tr, 4, 4.0, 1.0, None, max_tries=5)


def test_sample_segments_eval_falls_back_to_other_deterministic_starts():
    # The middle start (10.5) misses the words; the eval sampler tries a fixed grid and finds start 0.
    tr = _transcript(np.arange(0.0, 19.01, 0.5), 40.0)
    a = sample_segments(tr, 4, 4.0, 1.0, None, max_tries=5)
    b = sample_segments(tr, 4, 4.0, 1.0, None, max_tries=5)
    assert a.start == b.start == 0.0


def test_sample_segments_min_words():
    tr = _transcript([0.0, 5.0, 10.0, 15.0], 19.0)
    assert len(sample_segments(tr, 4, 4.0, 1.0, None, min_words=1).texts) == 4
    with pytest.raises(SampleError, match="empty_segment"):
        sample_segments(tr, 4, 4.0, 1.0, None, min_words=2)


# --- shuffle --------------------------------------------------------------------------------------------


def test_shuffle_segments_order_semantics():
    texts = ["a", "b", "c", "d", "e"]
    seen = set()
    for seed in range(20):
        shuffled, order = shuffle_segments(texts, np.random.default_rng(seed))
        assert order.dtype == torch.long and order.shape == (5,)
        assert sorted(order.tolist()) == [0, 1, 2, 3, 4]
        assert all(shuffled[i] == texts[order[i]] for i in range(5))
        seen.add(tuple(order.tolist()))
    assert len(seen) > 1
    same, order = shuffle_segments(texts, None)
    assert same == texts and order.tolist() == [0, 1, 2, 3, 4]


# --- annotation files -----------------------------------------------------------------------------------


def test_load_yt_annotation_cleans_and_sorts(tmp_path, make_yt_annotation):
    p = make_yt_annotation(
        tmp_path / "a.json",
        words=["world", " hello ", "&amp", "x;", "  ", "end"],
        times=[2.0, 1.0, 1.5, 1.7, 1.8, 3],
        duration=12.5,
        denoised=[],
    )
    tr = load_yt_annotation(p)
    assert tr.words == ["hello", "world", "end"]
    np.testing.assert_array_equal(tr.times, [1.0, 2.0, 3.0])
    assert tr.times.dtype == np.float64
    assert tr.duration == 12.5 and tr.path == str(p)


def test_load_yt_annotation_repairs_mojibake_with_ftfy(tmp_path, make_yt_annotation):
    pytest.importorskip("ftfy", reason="ftfy is optional; without it words are only stripped")
    p = make_yt_annotation(tmp_path / "m.json", ["caf\u00c3\u00a9", "rock&amp;roll"], [0.0, 1.0], 5.0)
    assert load_yt_annotation(p).words == ["caf\u00e9", "rock&roll"]


def _write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)
    return str(path)


@pytest.mark.parametrize(
    "doc, reason, field",
    [
        ({"info": {"duration": 10}}, "bad_annotation", "subtitles"),
        ({"subtitles": [], "info": {}}, "bad_annotation", "info.duration"),
        ({"subtitles": [], "info": {"duration": "10"}}, "bad_annotation", "info.duration"),
        ({"subtitles": {}, "info": {"duration": 10}}, "bad_annotation", "subtitles"),
        (
            {"subtitles": [{"word": "a", "time": 1}] * 3 + [{"word": "b", "time": "2"}], "info": {"duration": 10}},
            "bad_annotation",
            "subtitles[3].time is not a number",
        ),
        ({"subtitles": [{"word": 5, "time": 1.0}], "info": {"duration": 10}}, "bad_annotation", "subtitles[0].word"),
        ({"subtitles": ["a"], "info": {"duration": 10}}, "bad_annotation", "subtitles[0]"),
        ({"subtitles": [], "info": {"duration": 0}}, "zero_duration", "info.duration"),
        ({"subtitles": [], "info": {"duration": -3.0}}, "zero_duration", "info.duration"),
        ([1, 2], "bad_annotation", "top level"),
    ],
)
def test_load_yt_annotation_errors_name_file_and_field(tmp_path, doc, reason, field):
    p = _write(tmp_path / "ann.json", json.dumps(doc))
    with pytest.raises(SampleError) as ei:
        load_yt_annotation(p)
    assert ei.value.reason == reason
    assert ei.value.path == p
    assert p in str(ei.value) and field in str(ei.value)


def test_load_yt_annotation_unreadable(tmp_path):
    bad_utf8 = _write(tmp_path / "latin1.json", b'{"subtitles": [{"word": "caf\xe9", "time": 1}]}', "wb")
    not_json = _write(tmp_path / "trunc.json", '{"subtitles": [')
    for p in (bad_utf8, not_json, str(tmp_path / "missing.json")):
        with pytest.raises(SampleError) as ei:
            load_yt_annotation(p)
        assert ei.value.reason == "bad_annotation" and p in str(ei.value)


def test_load_yt_annotation_too_long(tmp_path, make_yt_annotation):
    p = make_yt_annotation(tmp_path / "long.json", ["w"] * 11, list(range(11)), 20.0)
    assert len(load_yt_annotation(p, max_words=11).words) == 11
    with pytest.raises(SampleError) as ei:
        load_yt_annotation(p, max_words=10)
    assert ei.value.reason == "transcript_too_long" and "11" in ei.value.detail


# --- clip captions --------------------------------------------------------------------------------------


def test_caption_joins_the_events_mostly_inside_the_clip():
    t = Transcript(words=["a"], times=np.array([1.0]), duration=30.0,
                   captions=[(0.0, 5.0, "the red circle grows"), (5.0, 10.0, "the blue star moves left"),
                             (10.0, 15.0, "the green square shrinks")])
    # [4, 11]: event 2 fully inside; events 1 and 3 overlap by 1 s of 5 (not mostly inside)
    assert t.caption(4.0, 11.0, ["x"]) == "the blue star moves left"
    assert t.caption(2.0, 13.0, ["x"]) == "the red circle grows, then the blue star moves left, then the green square shrinks"


def test_caption_falls_back_to_the_segment_transcripts():
    t = _transcript([1.0], 10.0)
    assert t.caption(0.0, 5.0, ["first words", "", "then more"]) == "first words then more"
    with_events = Transcript(words=["a"], times=np.array([1.0]), duration=30.0, captions=[(20.0, 25.0, "late")])
    assert with_events.caption(0.0, 10.0, ["spoken"]) == "spoken"


def test_annotation_events_are_read_and_validated(tmp_path):
    doc = {"info": {"duration": 12.0}, "subtitles": [{"word": "hi", "time": 1.0}],
           "events": [{"start": 5.0, "end": 10.0, "caption": " the red circle grows "},
                      {"start": 0.0, "end": 5.0, "caption": "the blue star spins"}]}
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    assert load_yt_annotation(p).captions == [(0.0, 5.0, "the blue star spins"), (5.0, 10.0, "the red circle grows")]
    doc["events"][1] = {"start": "zero", "end": 5.0, "caption": "x"}
    p.write_text(json.dumps(doc))
    with pytest.raises(SampleError) as e:
        load_yt_annotation(p)
    assert e.value.reason == "bad_annotation" and "events[1]" in str(e.value) and str(p) in str(e.value)


def test_reachable_segment_texts_hold_every_sampled_segment_and_nothing_else():
    """Property: every text of many training draws is in the enumerated set, and every enumerated text is the
    text of some segment at some start (checked on a fine grid of starts plus the breakpoints)."""
    from tvts.data.transcripts import reachable_segment_texts

    rng = np.random.default_rng(5)
    for trial in range(20):
        n = int(rng.integers(5, 60))
        times = np.sort(rng.uniform(0, 40, n)).round(2)
        tr = Transcript([f"w{j}" for j in range(n)], times, duration=40.0)
        min_words = int(trial % 3)
        reachable = reachable_segment_texts(tr, 3, 4.0, 1.0, min_words=min_words)
        drawn = set()
        for _ in range(300):
            try:
                drawn |= set(sample_segments(tr, 3, 4.0, 1.0, rng, min_words=min_words, max_tries=1).texts)
            except SampleError:
                continue
        assert drawn <= reachable
        grid = np.unique(np.concatenate([np.linspace(0, 40 - 14, 20001), times, times - 4, times - 5, times - 9, times - 10]))
        produced = set()
        for s in grid[(grid >= 0) & (grid <= 26)]:
            texts = segment_texts(tr, segment_bounds(s, 3, 4.0, 1.0))
            if all(len(t.split()) >= min_words for t in texts):
                produced |= set(texts)
        assert reachable <= produced
    short = Transcript(["a"], [1.0], duration=10.0)
    assert reachable_segment_texts(short, 3, 4.0, 1.0) == set()


def test_a_segment_keeps_at_most_max_segment_words_and_every_path_agrees():
    import numpy as np

    from tvts.data.transcripts import MAX_SEGMENT_WORDS, Transcript, reachable_segment_texts, sample_segments, segment_texts

    n = 3 * MAX_SEGMENT_WORDS  # broken timestamps: hundreds of words inside one second
    words = [f"w{i}" for i in range(n)] + ["late"]
    times = np.concatenate([np.linspace(1.0, 1.9, n), [6.0]])
    t = Transcript(words, times, 8.0)
    texts = segment_texts(t, np.array([[0.0, 3.0], [5.0, 8.0]]))
    assert texts[0].split() == words[:MAX_SEGMENT_WORDS] and texts[1] == "late"
    seg = sample_segments(t, 2, 3.0, 2.0, np.random.default_rng(0))
    assert all(len(x.split()) <= MAX_SEGMENT_WORDS for x in seg.texts)
    assert set(seg.texts) <= reachable_segment_texts(t, 2, 3.0, 2.0)  # the text-feature table covers what sampling gives
