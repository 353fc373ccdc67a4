"""What a recipe's data section builds, in one place: the trainer, the main job's evaluation and the
benchmarks all call these (``data_paths`` builds the embedded dataset on first use).

It sits above both ``tvts.config`` (the recipe) and ``tvts.data`` (what it builds), so that ``tvts.data`` never
reads a recipe: its datasets take plain arguments."""

from __future__ import annotations

from pathlib import Path

from tvts.config import RecipeConfig, ViTConfig
from tvts.data.datasets import TranscriptVideoDataset, read_split_list
from tvts.data.samples import MaskSpec
from tvts.data.manifest import ManifestDataset
from tvts.data.shards import ShardDataset
from tvts.data.processor import VideoProcessor


def mask_spec(cfg: RecipeConfig) -> MaskSpec:
    v = cfg.model.video
    return MaskSpec(
        kind=v.mask_kind if v.mask_ratio > 0 else "none",
        num_slots=v.num_frames // v.tubelet,
        num_patches=(v.img_size // v.patch) ** 2 if isinstance(v, ViTConfig) else 1,  # a 3D CNN reads no mask
        ratio=v.mask_ratio,
    )


def data_paths(cfg: RecipeConfig) -> tuple[Path, Path, Path]:
    """(root, train list, val list), building the synthetic dataset first when the recipe uses it."""
    d = cfg.data
    if d.synthetic is not None and not d.root and not d.manifest:
        from tvts.data.synthetic import make_synthetic

        s = d.synthetic
        make_synthetic(s.out, seed=s.seed, num_train=s.num_train, num_val=s.num_val, num_heldout=s.num_heldout,
                       size=s.size, fps=s.fps, spotlight=s.spotlight, scene_group=s.scene_group, progress=cfg.train.progress)
        root = Path(s.out) / "yttemporal"
    else:
        root = Path(d.root)
    train_list = Path(d.train_list) if d.train_list else root / "meta_data" / "yttemporal_train.csv"
    val_list = Path(d.val_list) if d.val_list else root / "meta_data" / "yttemporal_val.csv"
    return root, train_list, val_list


def processor(cfg: RecipeConfig) -> VideoProcessor:
    """The recipe's video preprocessing (saved with the model it trains, so evaluation and extraction see
    clips as training did): the model's frames and size, ``data.resize_ratio``, ``data.time_order``."""
    v = cfg.model.video
    return VideoProcessor(num_frames=v.num_frames, size=v.img_size, resize_ratio=cfg.data.resize_ratio,
                          time_order=cfg.data.time_order)


def dataset_args(cfg: RecipeConfig, train: bool) -> dict:
    """The dataset options of ``cfg`` (segments, frames, transform, mask, sampling, decoding), for training
    (random crops and masks) or evaluation."""
    v, d = cfg.model.video, cfg.data
    return dict(num_segments=cfg.model.num_segments, segment_seconds=d.segment_seconds, gap=d.gap,
                num_frames=v.num_frames, transform=processor(cfg).transform(train),
                mask=mask_spec(cfg) if train else None, train=train, seed=cfg.train.seed, shuffle=True,
                max_retries=d.max_retries, min_words=d.min_words, decode_backend=d.decode_backend, windows=d.windows)


def transcript_dataset(cfg: RecipeConfig, root: Path, split_list: Path, train: bool) -> TranscriptVideoDataset:
    """The YT-Temporal-layout dataset of ``root`` + ``split_list`` or, when ``data.manifest`` is set and
    ``train``, the manifest's (transcript records: TVTS samples; caption records: contrastive only). For training,
    ``data.max_videos`` keeps the first N videos of the split list."""
    if cfg.data.manifest and train:
        return ManifestDataset(cfg.data.manifest, timeout=cfg.data.decode_timeout, kind="auto", **dataset_args(cfg, train))
    names = read_split_list(split_list)[:cfg.data.max_videos] if train and cfg.data.max_videos else split_list
    return TranscriptVideoDataset(root, names, **dataset_args(cfg, train))


def train_datasets(cfg: RecipeConfig, root: Path, train_list: Path, rank: int = 0, world_size: int = 1) -> dict:
    """The training corpora of a recipe: ``main``, the transcript corpus (``data.shards`` streamed for process
    ``rank`` of ``world_size``, else ``data.manifest`` or the YT-Temporal split), and ``captions``, the caption
    corpus, when ``data.caption_ratio > 0``."""
    d = cfg.data
    if d.shards:
        main = ShardDataset(d.shards, rank=rank, world_size=world_size, shuffle_buffer=d.shuffle_buffer,
                            block_size=cfg.train.batch_size, timeout=d.decode_timeout, kind="auto", **dataset_args(cfg, True))
    else:
        main = transcript_dataset(cfg, root, train_list, train=True)
    out = {"main": main}
    if d.caption_ratio > 0:
        out["captions"] = ManifestDataset(d.caption_manifest, timeout=d.decode_timeout, kind="caption", **dataset_args(cfg, True))
    return out


def noun_spec(cfg: RecipeConfig) -> tuple[int, str] | None:
    """``(k, spaCy model)`` when the objective grounds noun phrases (S-ViLM): ``collate`` then adds each
    caption's first k noun phrases to the batch (in the DataLoader workers); else None."""
    o = cfg.objective
    return (o.svilm.num_nouns, o.svilm.spacy_model) if o.name == "svilm" and o.svilm.grounding_weight > 0 else None


def cache_dir(cfg: RecipeConfig) -> Path:
    """Where text-feature tables and frame stores live (``data.cache_dir``, default ``<train.out_dir>/cache``)."""
    return Path(cfg.data.cache_dir or Path(cfg.train.out_dir) / "cache")
