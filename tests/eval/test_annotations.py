"""Each standard annotation layout is read with the right split, captions and labels."""

import os

import pytest

from tvts.data.synthetic import ACTIONS
from tvts.errors import ConfigError
from tvts.eval.annotations import (VideoIndex, read_didemo, read_hmdb51, read_kinetics400, read_lsmdc, read_msrvtt_1ka,
                                   read_msrvtt_full, read_msvd, read_ssv2, read_ucf101, readable_class_name)


def _tests(eval_data):
    return [c for c in eval_data["clips"] if c["split"] == "test"]


def _same_file(a, b) -> bool:
    return os.path.samefile(a, b)


def test_msrvtt_1ka_one_caption_per_video(eval_data):
    ds = read_msrvtt_1ka(eval_data["msrvtt"])
    test = _tests(eval_data)
    assert ds.name == "msrvtt-1ka" and ds.video_ids == [c["video_id"] for c in test]
    assert ds.captions == [c["captions"][0] for c in test] and ds.text_to_video == list(range(len(test)))
    assert all(_same_file(p, c["path"]) for p, c in zip(ds.paths, test))


def test_msrvtt_all_captions_and_msvd_every_caption_is_a_query(eval_data):
    test = _tests(eval_data)
    for ds in (read_msrvtt_full(eval_data["msrvtt"]), read_msvd(eval_data["msvd"])):
        assert len(ds.video_ids) == len(test) and len(ds.captions) == 2 * len(test)
        assert ds.text_to_video == [i for i in range(len(test)) for _ in range(2)]
        assert ds.captions[2:4] == test[1]["captions"]
        assert all(_same_file(p, c["path"]) for p, c in zip(ds.paths, test))


def test_didemo_joins_the_sentences_of_a_video_into_one_paragraph(eval_data):
    ds = read_didemo(eval_data["didemo"])
    test = _tests(eval_data)
    assert ds.captions == [" ".join(c["captions"]) for c in test]
    assert ds.text_to_video == list(range(len(test)))
    assert all(_same_file(p, c["path"]) for p, c in zip(ds.paths, test))  # found by stem: .mov in the json, .mp4 on disk


def test_lsmdc_last_column_is_the_caption(eval_data):
    ds = read_lsmdc(eval_data["lsmdc"])
    assert ds.captions == [c["captions"][1] for c in _tests(eval_data)]


@pytest.mark.parametrize("reader", [read_ucf101, read_hmdb51, read_kinetics400, read_ssv2])
def test_labelled_layouts_give_the_true_class_per_split(eval_data, reader):
    name = {read_ucf101: "ucf101", read_hmdb51: "hmdb51", read_kinetics400: "k400", read_ssv2: "ssv2"}[reader]
    for split in ("train", "test"):
        ds = reader(eval_data[name], split)
        want = [c for c in eval_data["clips"] if c["split"] == split or (name, split) == ("ssv2", "test")]
        assert len(ds.class_names) == len(ACTIONS) and len(ds.paths) == len(want)
        by_file = {os.stat(c["path"]).st_ino: c for c in want}
        for path, label in zip(ds.paths, ds.labels):
            clip = by_file[os.stat(path).st_ino]  # the file is a hard link of the clip
            assert ds.class_names[label] == _expected_class(name, clip["action"])


def _expected_class(name: str, action: str) -> str:
    from tvts.data.synthetic import CAPTIONS

    snake = "".join("_" + c.lower() if c.isupper() else c for c in action).lstrip("_")
    return {"ucf101": action, "hmdb51": snake, "k400": snake.replace("_", " "),
            "ssv2": f"Something {CAPTIONS[action]}"}[name]


def test_class_orders(eval_data):
    assert read_ucf101(eval_data["ucf101"]).class_names == list(ACTIONS)  # classInd order
    assert read_hmdb51(eval_data["hmdb51"]).class_names == sorted(read_hmdb51(eval_data["hmdb51"]).class_names)
    k = read_kinetics400(eval_data["k400"])
    assert k.class_names == sorted(k.class_names) and k.name == "k400-val"
    s = read_ssv2(eval_data["ssv2"], "val")
    assert s.descriptions == [c["captions"][0] for c in eval_data["clips"]]


def test_hmdb_ignores_unused_videos(eval_data):
    ids = read_hmdb51(eval_data["hmdb51"], "train").video_ids + read_hmdb51(eval_data["hmdb51"], "test").video_ids
    assert not any(v.startswith("unused") for v in ids)


def test_missing_video_and_missing_file_are_clear_errors(eval_data, tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video_id,sentence\nret0,msr0,video99,a caption\n")
    with pytest.raises(ConfigError, match="video99"):
        read_msrvtt_1ka(tmp_path)
    with pytest.raises(ConfigError, match="test_data.json"):
        read_didemo(tmp_path)


def test_video_index_finds_by_relative_path_and_stem(tmp_path):
    for rel in ("a/x.mp4", "b/y.webm", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    index = VideoIndex(tmp_path)
    assert index.find("a/x.mp4") == str(tmp_path / "a" / "x.mp4")
    assert index.find("y") == index.find("y.avi") == str(tmp_path / "b" / "y.webm")
    with pytest.raises(ConfigError):
        index.find("notes")


def test_readable_class_names():
    assert readable_class_name("ApplyEyeMakeup") == "apply eye makeup"
    assert readable_class_name("brush_hair") == "brush hair"
    assert readable_class_name("playing guitar") == "playing guitar"
    assert readable_class_name("YoYo") == "yo yo"
