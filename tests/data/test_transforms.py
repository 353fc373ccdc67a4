import json

import numpy as np
import pytest
import torch

from tvts.data.transforms import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, VideoTransform
from tvts.errors import ConfigError


def _coords(t=3, h=60, w=80):
    """Frames whose red channel is the column index and green the row index (to locate the crop)."""
    x = np.zeros((t, h, w, 3), np.uint8)
    x[..., 0] = np.arange(w)[None, None, :]
    x[..., 1] = np.arange(h)[None, :, None]
    x[..., 2] = (np.arange(t) * 50)[:, None, None]
    return x


def test_short_side_as_published():
    assert VideoTransform(224).short_side == 268  # int(224 * 1.2), as the published pipeline
    assert VideoTransform(224, resize_ratio=1.0).short_side == 224
    assert VideoTransform(100, resize_ratio=1.15).short_side == 115


def test_eval_output_shape_and_normalisation():
    frames = np.full((4, 48, 64, 3), 128, np.uint8)
    frames[1] = 255
    tf = VideoTransform(32, train=False)
    y = tf(frames)
    assert y.shape == (4, 3, 32, 32) and y.dtype == torch.float32
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(y[0, :, 5, 7], (128 / 255 - mean) / std)
    torch.testing.assert_close(y[1, :, 0, 0], (1.0 - mean) / std)
    clip = VideoTransform(32, mean=CLIP_MEAN, std=CLIP_STD)(frames)
    torch.testing.assert_close(clip[0, :, 3, 3], (128 / 255 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD))


def test_resize_keeps_aspect_and_centre_crop_is_centred():
    # size 40, ratio 1.5 -> short side 60 = the input's, so no scaling; the 40x40 crop sits at the centre
    tf = VideoTransform(40, resize_ratio=1.5, train=False, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    y = (tf(_coords()) * 255).round()
    assert y[0, 0, 0, 0] == 20 and y[0, 0, 0, 39] == 59  # columns 20..59 of 80
    assert y[0, 1, 0, 0] == 10 and y[0, 1, 39, 0] == 49  # rows 10..49 of 60
    assert torch.equal(y[:, 2, 0, 0], torch.tensor([0.0, 50.0, 100.0]))  # frames stay in order


def test_random_crop_is_seeded_and_shared_by_all_frames():
    tf = VideoTransform(40, resize_ratio=1.5, train=True, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    frames = _coords()
    a = tf(frames, np.random.default_rng(5))
    b = tf(frames, np.random.default_rng(5))
    assert torch.equal(a, b)
    lefts = set()
    for seed in range(30):
        y = (tf(frames, np.random.default_rng(seed)) * 255).round()
        left, top = y[0, 0, 0, 0].item(), y[0, 1, 0, 0].item()
        assert 0 <= left <= 40 and 0 <= top <= 20
        for t in range(3):  # same crop for every frame
            assert y[t, 0, 0, 0] == left and y[t, 1, 0, 0] == top
        lefts.add(left)
    assert len(lefts) > 5
    with pytest.raises(ConfigError):
        tf(frames)  # train mode needs an rng


def test_upscales_small_video_and_accepts_odd_sizes():
    y = VideoTransform(32, train=True)(np.zeros((2, 17, 23, 3), np.uint8), np.random.default_rng(0))
    assert y.shape == (2, 3, 32, 32)


def test_bad_inputs():
    tf = VideoTransform(32)
    with pytest.raises(ConfigError):
        tf(np.zeros((2, 40, 40, 3), np.float32))
    with pytest.raises(ConfigError):
        tf(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(ConfigError):
        VideoTransform(32, interpolation="lanczos")
    with pytest.raises(ConfigError):
        VideoTransform(32, resize_ratio=0.9)


def test_describe_is_exact_and_serialisable():
    d = VideoTransform(224, train=False).describe()
    json.dumps(d)
    assert d["resize"]["short_side"] == 268 and d["resize"]["interpolation"] == "bilinear"
    assert d["crop"] == {"size": 224, "mode": "center"}
    assert d["mean"] == list(IMAGENET_MEAN) and d["std"] == list(IMAGENET_STD)
    assert VideoTransform(224, train=True).describe()["crop"]["mode"] == "random"


def test_shuffled_time_order_keeps_every_frame_and_loses_the_order(gray_code):
    """The appearance-only control: the same frames, in a random order per training draw and in one fixed
    order (the same for every clip) in evaluation; "keep" leaves the order alone."""
    frames = gray_code.frames(12, 32, 32)
    keep = VideoTransform(16, 1.0, train=False)

    def index(x):
        return gray_code.index_normalized(x.numpy(), IMAGENET_MEAN, IMAGENET_STD).tolist()

    assert index(keep(frames)) == list(range(12))
    shuffled_train = VideoTransform(16, 1.0, train=True, time_order="shuffle")
    orders = [index(shuffled_train(frames, np.random.default_rng(s))) for s in range(5)]
    assert all(sorted(o) == list(range(12)) for o in orders)
    assert len({tuple(o) for o in orders}) == 5 and tuple(range(12)) not in {tuple(o) for o in orders}
    assert orders[0] == index(shuffled_train(frames, np.random.default_rng(0)))  # seeded
    shuffled_eval = VideoTransform(16, 1.0, train=False, time_order="shuffle")
    fixed = index(shuffled_eval(frames))
    assert sorted(fixed) == list(range(12)) and fixed != list(range(12)) and index(shuffled_eval(frames)) == fixed
    assert shuffled_eval.describe()["time_order"] == "shuffle" and keep.describe()["time_order"] == "keep"
    with pytest.raises(ConfigError):
        VideoTransform(16, time_order="reversed")
