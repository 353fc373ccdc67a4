"""Feature extraction: files written, views, resuming, undecodable videos."""

import json

import numpy as np
import pytest
import torch

from tvts.errors import ConfigError
from tvts.data.processor import VideoProcessor
from tvts.eval.extract import crop_windows, extract_features, load_features, side_paths
from tvts.models import load_model


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    m = load_model(tiny_model_dir).eval()
    calls = []
    encode = m.encode_video

    def counting(frames):
        calls.append(len(frames))
        return encode(frames)

    m.encode_video = counting
    m.calls = calls
    return m


def _extract(model, tiny_model_dir, paths, ids, out, **kw):
    kw = {"batch_size": 3, "workers": 0, "progress": False, **kw}
    return extract_features(model, paths, ids, out, model_dir=str(tiny_model_dir),
                            processor=VideoProcessor(num_frames=kw.pop("num_frames", 4), size=16), **kw)


def test_clip_timestamps_and_crop_windows():
    t = VideoProcessor(num_frames=2, size=16).frame_times(8.0, 25.0, 200, clips=2)
    assert t.tolist() == [[1.0, 3.0], [5.0, 7.0]]
    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    wins = crop_windows(frames, 3)
    assert [w.shape for w in wins] == [(2, 4, 4, 3)] * 3
    assert np.array_equal(wins[0], frames[:, :, 0:4]) and np.array_equal(wins[1], frames[:, :, 1:5])
    assert np.array_equal(wins[2], frames[:, :, 2:6])
    assert crop_windows(frames, 1)[0] is frames


def test_extract_writes_features_index_preprocessing_and_resumes(eval_data, model, tiny_model_dir, tmp_path):
    clips = eval_data["clips"][:5]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    paths, ids = [c["path"] for c in clips] + [str(broken)], [c["video_id"] for c in clips] + ["broken"]
    out = tmp_path / "f.safetensors"
    model.calls.clear()
    f = _extract(model, tiny_model_dir, paths, ids, out, chunk=2)
    files = side_paths(out)
    assert f.features.shape == (5, 16) and f.ids == ids[:5] and sum(model.calls) == 5
    assert [x["video_id"] for x in f.failed] == ["broken"] and f.failed[0]["reason"] == "unreadable"
    assert json.loads(files["failed"].read_text())[0]["path"] == str(broken)
    prep = json.loads(files["preprocessing"].read_text())
    assert prep["processor"]["num_frames"] == 4 and prep["processor"]["transform"]["crop"]["size"] == 16 and prep["clips"] == 1
    assert not files["parts"].exists()
    loaded = load_features(out)
    assert torch.equal(loaded.features, f.features) and loaded.ids == f.ids
    # resume: nothing new is encoded except the failed video (retried) and a new one
    model.calls.clear()
    more = eval_data["clips"][5]
    g = _extract(model, tiny_model_dir, paths + [more["path"]], ids + [more["video_id"]], out)
    assert sum(model.calls) == 1 and g.ids == ids[:5] + [more["video_id"]]
    assert torch.allclose(g.features[:5], f.features)


def test_interrupted_run_keeps_finished_chunks(eval_data, model, tiny_model_dir, tmp_path, monkeypatch):
    clips = eval_data["clips"][:4]
    paths, ids = [c["path"] for c in clips], [c["video_id"] for c in clips]
    out = tmp_path / "g.safetensors"
    model.calls.clear()

    def stop_after_two(frames, calls=model.calls):
        if sum(calls) >= 2:
            raise KeyboardInterrupt
        calls.append(len(frames))
        return torch.zeros(len(frames), 16)

    monkeypatch.setattr(model, "encode_video", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        _extract(model, tiny_model_dir, paths, ids, out, batch_size=1, chunk=2)
    assert len(list(side_paths(out)["parts"].glob("part_*.safetensors"))) == 1
    monkeypatch.undo()
    model.calls.clear()
    f = _extract(model, tiny_model_dir, paths, ids, out, batch_size=1)
    assert sum(model.calls) == 2 and f.ids == ids and torch.all(f.features[:2] == 0)


def test_views_kept_or_averaged_and_settings_checked(eval_data, model, tiny_model_dir, tmp_path):
    clips = eval_data["clips"][:2]
    paths, ids = [c["path"] for c in clips], [c["video_id"] for c in clips]
    kept = _extract(model, tiny_model_dir, paths, ids, tmp_path / "v.safetensors", clips=2, crops=3, reduce="none")
    mean = _extract(model, tiny_model_dir, paths, ids, tmp_path / "m.safetensors", clips=2, crops=3)
    assert kept.features.shape == (2, 6, 16) and torch.allclose(kept.features.mean(1), mean.features, atol=1e-5)
    assert not torch.allclose(kept.features[:, 0], kept.features[:, 5])  # different windows, different features
    with pytest.raises(ConfigError, match="other settings"):
        _extract(model, tiny_model_dir, paths, ids, tmp_path / "v.safetensors", clips=1)


def test_new_weights_in_the_same_model_folder_are_never_served_old_features(eval_data, tiny_model_dir, tmp_path):
    """The resume cache is keyed by a hash of the weights: retraining into the same folder is refused."""
    clips = eval_data["clips"][:2]
    paths, ids = [c["path"] for c in clips], [c["video_id"] for c in clips]
    m = load_model(tiny_model_dir).eval()
    out = tmp_path / "w.safetensors"
    _extract(m, tiny_model_dir, paths, ids, out)
    with torch.no_grad():
        next(m.video_model.parameters()).add_(0.01)  # "retrained", same folder name
    with pytest.raises(ConfigError, match="other settings.*weights_sha256"):
        _extract(m, tiny_model_dir, paths, ids, out)


def test_duplicate_ids_name_both_files_and_rows_must_match_their_ids(eval_data, model, tiny_model_dir, tmp_path):
    from safetensors.torch import save_file

    clips = eval_data["clips"][:2]
    a, b = clips[0]["path"], clips[1]["path"]
    with pytest.raises(ConfigError, match=f"the same id for 'x': {a} and {b}"):
        _extract(model, tiny_model_dir, [a, b], ["x", "x"], tmp_path / "d.safetensors")
    out = tmp_path / "r.safetensors"
    _extract(model, tiny_model_dir, [a, b], ["a", "b"], out)
    assert load_features(out).ids == ["a", "b"]
    save_file({"features": torch.zeros(3, 16)}, str(out), metadata={"ids": json.dumps(["a", "b"])})  # 3 rows, 2 ids
    with pytest.raises(ConfigError, match="3 rows for 2 ids"):
        load_features(out)
