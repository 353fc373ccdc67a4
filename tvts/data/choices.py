"""The preprocessing choices, stated once and importable without torch (the CLI's ``--help`` lists them):
normalisation statistics, interpolations, resize modes, frame orders and samplings, and the presets of the
published models' own pipelines (used by :mod:`tvts.data.transforms` and :mod:`tvts.data.processor`)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "pil-nearest", "pil-bilinear", "pil-bicubic")
"""Tensor resampling (bilinear/bicubic antialiased), or ``pil-*``: Pillow's, frame by frame, as the released code."""

RESIZE_MODES = ("short_side", "squash")
"""``short_side``: keep the aspect ratio, short side to ``size * resize_ratio``, then crop ``size``;
``squash``: every frame to ``size x size``, no crop."""

TIME_ORDERS = ("keep", "shuffle")
"""``keep``: frames in time order; ``shuffle``: a control that removes the order (see ``VideoTransform``)."""

WINDOWS = ("random", "fixed")
"""Which window of K segments a training draw of a transcript video takes: ``random``, a new start every draw
(Eq. 1); ``fixed``, the evaluation's (the middle one) every epoch, so that each video is one fixed video-text
pair, as a memory bank of the training pairs assumes (CPD). The frames' times and crops stay random."""

FRAME_SAMPLINGS = ("segments", "linspace")
"""``segments``: the midpoint of each of ``num_frames`` equal parts of the clip (TSN at test time);
``linspace``: frame indices ``int(linspace(0, n - 1, num_frames))``."""

PRESETS: dict[str, dict] = {
    # tvts's own default (what pretraining uses unless the recipe says otherwise)
    "default": {},
    # the released TVTSv2 evaluation code: 'uniform' segment midpoints, PIL NEAREST short side 268, centre 224
    "tvtsv2-eval": {"frame_sampling": "segments", "resize_mode": "short_side", "resize_ratio": 1.2,
                    "interpolation": "pil-nearest"},
    # the released TVTSv2 feature_extraction_*.py: frames int(linspace(0, n-1, T)), Resize((224, 224)) bilinear
    "tvtsv2-extract": {"frame_sampling": "linspace", "resize_mode": "squash", "interpolation": "pil-bilinear"},
    # the released TVTS (v1) evaluation transform: segment midpoints, short side 268 bilinear, centre crop
    "tvts-eval": {"frame_sampling": "segments", "resize_mode": "short_side", "resize_ratio": 1.2,
                  "interpolation": "pil-bilinear"},
}
"""Named pipelines: how frames are sampled and resized (``num_frames`` and ``size`` come from the model)."""
