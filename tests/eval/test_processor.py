"""The video processor: which frames it samples, how it resizes (equal to the released code's Pillow
pipelines), that it travels with the model folder, and that every entry point reads the same one."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from tvts.data.choices import IMAGENET_MEAN, IMAGENET_STD, PRESETS
from tvts.data.processor import VideoProcessor
from tvts.errors import ConfigError


@pytest.fixture(scope="module")
def coded_video(tmp_path_factory, make_video, gray_code):
    """30 frames at 10 fps; frame i has gray level base + step * i."""
    return make_video(tmp_path_factory.mktemp("v") / "coded.mp4", gray_code.frames(30), 10)


def _indices(proc, path, gray_code):
    x = proc(path)[0]
    return gray_code.index_normalized(x.numpy(), IMAGENET_MEAN, IMAGENET_STD).tolist()


def test_frame_sampling_picks_the_frames_it_names(coded_video, gray_code):
    linspace = VideoProcessor(num_frames=4, size=16, frame_sampling="linspace")
    assert _indices(linspace, coded_video, gray_code) == np.linspace(0, 29, 4).astype(int).tolist()
    segments = VideoProcessor(num_frames=4, size=16)
    mid = (np.arange(4) + 0.5) * 30 / 4  # the midpoint of each quarter, in frames
    assert _indices(segments, coded_video, gray_code) == np.floor(mid).astype(int).tolist()
    for proc in (linspace, segments):  # a search window [1.2, 2.6] s: frames shown in it, in time order
        t = proc.times(1.2, 2.6, 10.0)
        assert len(t) == 4 and np.all(np.diff(t) > 0) and 1.2 <= t.min() and t.max() <= 2.6
        np.testing.assert_allclose(proc.times(0.0, 3.0, 10.0), proc.frame_times(3.0, 10.0, 30)[0])
    with pytest.raises(ConfigError, match="needs the video's frame rate"):
        linspace.times(0.0, 1.0)
    for proc in (linspace, segments):  # several clips: each in its own window, in time order
        t = proc.frame_times(3.0, 10.0, 30, clips=3)
        assert t.shape == (3, 4) and np.all(np.diff(t.reshape(-1)) > 0)
        assert np.all((t >= np.arange(3)[:, None]) & (t < np.arange(1, 4)[:, None]))


@pytest.mark.parametrize("hw", [(24, 40), (45, 30)])
def test_pil_pipelines_equal_the_released_transforms(hw):
    frames = np.random.default_rng(hw[0]).integers(0, 256, (3, *hw, 3), dtype=np.uint8)
    norm = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    released = {  # the torchvision/PIL compositions of the released code, per frame
        "tvtsv2-extract": transforms.Compose([transforms.Resize((16, 16)), *norm]),
        "tvtsv2-eval": transforms.Compose([transforms.Resize(19, interpolation=transforms.InterpolationMode.NEAREST),
                                           transforms.CenterCrop(16), *norm]),
        "tvts-eval": transforms.Compose([transforms.Resize(19), transforms.CenterCrop(16), *norm]),
    }
    assert set(released) == set(PRESETS) - {"default"}
    for name, tf in released.items():
        got = VideoProcessor.from_preset(name, num_frames=3, size=16)(frames)[0]
        want = torch.stack([tf(Image.fromarray(f)) for f in frames])
        assert got.shape == (3, 3, 16, 16)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    squash = VideoProcessor(num_frames=3, size=16, resize_mode="squash")(frames)[0]
    crop = VideoProcessor(num_frames=3, size=16)(frames)[0]
    assert not torch.allclose(squash, crop, atol=0.05)  # squashing keeps the whole frame, a crop does not


def test_an_image_is_one_frame_and_bad_inputs_are_explained(tiny_model_dir):
    import tvts

    model, proc = tvts.load_model_and_processor(tiny_model_dir)
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    x = proc(image)
    assert x.shape == (1, 3, 16, 16) and not model.training
    still = proc(np.repeat(image[None], 2, axis=0))  # the same image as a 2-frame clip
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(x), model.encode_video(still), rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match=r"a path, uint8 frames \[T, H, W, 3\] or an image"):
        proc(np.zeros((2, 2), np.uint8))
    with pytest.raises(ConfigError, match="uint8"):
        proc(np.zeros((2, 20, 30, 3), np.float32))


def test_the_processor_travels_with_the_model_folder(tmp_path, tiny_model_dir):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "preprocessor.json").unlink(missing_ok=True)
    v = json.loads((folder / "config.json").read_text())["video"]
    assert VideoProcessor.from_pretrained(folder) == VideoProcessor(num_frames=v["num_frames"], size=v["img_size"])
    proc = VideoProcessor.from_preset("tvtsv2-extract", 4, 16).replace(resize_ratio=1.5, mean=(0.5, 0.5, 0.5))
    proc.save(folder)
    assert VideoProcessor.from_pretrained(folder) == proc
    d = proc.to_dict()
    for bad, match in (({**d, "crop": 3}, r"unknown preprocessing field\(s\) \['crop'\]"),
                       ({**d, "frame_sampling": "random"}, "frame_sampling must be one of segments, linspace"),
                       ({**d, "resize_ratio": 0.5}, "resize_ratio must be >= 1")):
        (folder / "preprocessor.json").write_text(json.dumps(bad))
        with pytest.raises(ConfigError, match=match):
            VideoProcessor.from_pretrained(folder)
    with pytest.raises(ConfigError, match="unknown preprocessing preset 'tvtsv3'"):
        VideoProcessor.from_preset("tvtsv3", 4, 16)


def test_extract_and_eval_read_the_folders_processor(tmp_path, tiny_model_dir):
    import shutil

    from tvts.eval.cli_commands import COMMON_DEFAULTS, _encoder, video_processor

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    saved = VideoProcessor(num_frames=2, size=16, resize_ratio=1.125, interpolation="bicubic")
    saved.save(folder)
    opts = {**COMMON_DEFAULTS, "model": str(folder), "out": str(tmp_path / "r.json")}
    enc = _encoder(opts)
    assert enc.processor == saved and enc.num_frames == 2 and enc.transform.short_side == 18
    assert video_processor({**opts, "resize_ratio": 1.5, "num_frames": 4}) == saved.replace(resize_ratio=1.5, num_frames=4)
    assert video_processor({**opts, "preset": "tvtsv2-extract"}) == VideoProcessor.from_preset("tvtsv2-extract", 2, 16)


def test_read_decodes_the_frames_the_processor_names(coded_video, gray_code):
    """``read`` = probe + frame times + decode: the whole-video clips of ``frame_times``, and with a generator
    one random time in each part (TSN's training sampling), different per generator, in time order."""
    proc = VideoProcessor(num_frames=4, size=16)
    clips = proc.read(coded_video, clips=3)
    assert clips.shape[:2] == (3, 4) and clips.dtype == np.uint8
    expected = np.floor(proc.frame_times(3.0, 10.0, 30, clips=3) * 10).astype(int)
    assert [gray_code.index(c).tolist() for c in clips] == expected.tolist()
    drawn = [gray_code.index(proc.read(coded_video, rng=np.random.default_rng(s))[0]) for s in range(4)]
    for d in drawn:
        assert np.all((d >= np.arange(4) * 30 // 4) & (d < (np.arange(4) + 1) * 30 // 4))  # one per quarter
    assert len({tuple(d.tolist()) for d in drawn}) > 1
    with pytest.raises(ConfigError, match="one clip"):
        proc.read(coded_video, clips=2, rng=np.random.default_rng(0))
