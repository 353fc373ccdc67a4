"""The options of ``tvts eval`` and ``tvts extract``, stated once: one typed dataclass per protocol (each field's
default is the only one; the argument parsers and ``eval all`` read them from here) and :func:`resolve_options`,
which fills and type-checks a dict of options with the same machinery as the recipes (:mod:`tvts.config`):
an unknown option or a value of the wrong type is one :class:`~tvts.errors.ConfigError` naming it.

Importing this module imports no torch and no OmegaConf (``tvts --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from tvts.data.segments import GAP, SEGMENT_SECONDS

RETRIEVAL_DATASETS = ("msrvtt", "msrvtt-allcaps", "msvd", "didemo", "lsmdc")
RECOGNITION_DATASETS = ("ucf101", "hmdb51", "k400")
LABELLED_DATASETS = ("ucf101", "hmdb51", "k400", "ssv2")
SPLITS = ("train", "test", "val")  # test and val both mean the evaluation split
FOLDS = (1, 2, 3)  # UCF-101 / HMDB-51 split numbers
VOTES = ("weighted", "majority")


@dataclass
class EncoderOptions:
    """How videos are encoded: the model, test-time views, batching and the video processor's overrides."""

    model: str = ""  # a model folder (model.safetensors + config.json + preprocessor.json)
    clips: int = 1  # temporal clips per video (views are averaged)
    crops: int = 1  # spatial crops per clip: 1 or 3
    batch_size: int = 16  # videos per forward pass
    workers: int = 2  # DataLoader processes decoding videos
    device: str = "auto"  # auto, cpu or cuda
    preset: Optional[str] = None  # a preprocessing preset instead of the model folder's (tvts.data.choices.PRESETS)
    num_frames: int = 0  # frames per clip; 0: the model folder's
    resize_ratio: Optional[float] = None  # None: the model folder's
    interpolation: Optional[str] = None  # None: the model folder's
    cache: Optional[str] = None  # video-feature cache folder; None: features/ beside out
    progress: bool = True


@dataclass
class EvalOptions(EncoderOptions):
    """What every protocol takes."""

    data: str = ""  # the dataset folder
    videos: Optional[str] = None  # the video folder; None: DATA/videos
    out: str = "eval/report.json"
    figures: bool = True


@dataclass
class RetrievalOptions(EvalOptions):
    dataset: str = "msrvtt"
    dsl: bool = False
    dsl_temperature: float = 0.01


@dataclass
class LabelledOptions(EvalOptions):
    """A labelled action dataset (tvts.eval.annotations.read_labelled): which one, and which official split."""

    dataset: str = "ucf101"
    fold: int = 1  # UCF-101 / HMDB-51 split number


@dataclass
class ZeroShotOptions(LabelledOptions):
    split: str = "test"
    template: Optional[list[str]] = None
    templates_file: Optional[str] = None


@dataclass
class MultipleChoiceOptions(EvalOptions):
    dataset: str = "ssv2"
    split: str = "val"
    seed: int = 0


@dataclass
class LinearProbeOptions(LabelledOptions):
    epochs: int = 100
    lr: float = 0.1
    probe_batch_size: int = 512
    seed: int = 0


@dataclass
class KnnOptions(LabelledOptions):
    k: int = 25
    vote: str = "weighted"


@dataclass
class V2VOptions(LabelledOptions):
    dataset: str = "ssv2"
    split: str = "val"


@dataclass
class SortOptions(EvalOptions):
    list: Optional[str] = None
    segment_seconds: float = SEGMENT_SECONDS
    gap: float = GAP


@dataclass
class FinetuneOptions(LabelledOptions):
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.05
    seed: int = 0
    clips: int = 2  # test views, TVTS: 2 x 3 (5 x 3 on Kinetics-400)
    crops: int = 3


@dataclass
class SvoProbesOptions(EvalOptions):
    images: Optional[str] = None  # the image folder; None: DATA/images
    thresholds: list[float] = field(default_factory=lambda: [0.2, 0.25, 0.3])


PROTOCOL_OPTIONS: dict[str, type[EvalOptions]] = {
    "retrieval": RetrievalOptions, "zero-shot": ZeroShotOptions, "ssv2-mc": MultipleChoiceOptions,
    "linear-probe": LinearProbeOptions, "knn": KnnOptions, "v2v": V2VOptions, "sort": SortOptions,
    "finetune": FinetuneOptions, "svo-probes": SvoProbesOptions,
}
DATASET_CHOICES = {"retrieval": RETRIEVAL_DATASETS, "zero-shot": RECOGNITION_DATASETS, "ssv2-mc": ("ssv2",),
                   "linear-probe": LABELLED_DATASETS, "knn": LABELLED_DATASETS, "v2v": LABELLED_DATASETS,
                   "finetune": LABELLED_DATASETS}
ENCODER_OPTIONS = tuple(f.name for f in dataclasses.fields(EncoderOptions))


def defaults(protocol: str | None = None) -> dict:
    """The default of every option of ``protocol`` (None: the options every protocol shares)."""
    cls = PROTOCOL_OPTIONS[protocol] if protocol else EvalOptions
    return dataclasses.asdict(cls())


def resolve_options(protocol: str, values: dict, source: str = "") -> dict:
    """``values`` over ``protocol``'s defaults, type-checked (an unknown option, a wrong type or a value outside
    its choices is a :class:`ConfigError` naming it); ``model`` and ``data`` are required."""
    from tvts.config import load_structured
    from tvts.errors import ConfigError

    if protocol not in PROTOCOL_OPTIONS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose from {sorted(PROTOCOL_OPTIONS)}", field="protocol",
                          source=source)
    opts = dataclasses.asdict(load_structured(PROTOCOL_OPTIONS[protocol], dict(values), source))
    for key in ("model", "data"):
        if not opts.get(key):
            raise ConfigError(f"protocol {protocol} needs '{key}'", field=key, source=source)
    checks = [("dataset", DATASET_CHOICES.get(protocol)), ("split", SPLITS), ("fold", FOLDS), ("vote", VOTES),
              ("crops", (1, 3))]
    for key, choices in checks:
        if choices and key in opts and opts[key] not in choices:
            raise ConfigError(f"{protocol}: {key} must be one of {', '.join(map(str, choices))}, got {opts[key]!r}",
                              field=key, source=source)
    if opts["clips"] < 1:
        raise ConfigError(f"clips must be >= 1, got {opts['clips']}", field="clips", source=source)
    return opts
