"""Converting published checkpoints: files are built here with the published key names and shapes
(random values, small widths), converted, and the converted tvts model must give the features of the
model the checkpoint came from. Reading them must not run code stored in them."""

import argparse

import pytest
import torch
import yaml

from tvts.config import to_dict
from tvts.convert_cli import add_convert_parser
from tvts.errors import CheckpointError
from tvts.models import VideoBert, VideoClip, load_model
from tvts.models.convert import convert_checkpoint, read_state_dict
from tvts.testing import tiny_model_config

open_clip = pytest.importorskip("open_clip")

TEXTS = ["the red square moves left", "a blue circle grows", "um the star", "rotates"]
RAN = []  # what pickled callables would record if the loader ran them


def record(*args):
    RAN.append(args)
    return args


class Hook:
    """Unpickling this calls ``record``: the stand-in for code a malicious checkpoint would run."""

    def __reduce__(self):
        return (record, ("code from the checkpoint ran",))


class ConfigParser:
    """Like the trainer config pickled into the released checkpoints (an object of a class that a
    user of the checkpoint does not have)."""

    def __init__(self):
        self.config = {"arch": {"type": "TVTSv2"}, "n_gpu": 8}
        self.hook = Hook()

    def __setstate__(self, state):
        RAN.append("ConfigParser.__setstate__")


def _frames():
    return torch.randn(2, 4, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def _released(path, state):
    """The layout of a released training checkpoint."""
    torch.save({"arch": "DistributedDataParallel", "epoch": 10, "state_dict": state, "monitor_best": 0.5,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-7, "params": [0, 1]}]}, "config": ConfigParser()}, path)


def _source_v2(tiny_v2):
    torch.manual_seed(0)
    m = VideoClip(tiny_v2()).eval()
    with torch.no_grad():  # as after training: a working temporal branch
        for blk in m.video_model.transformer.resblocks:
            torch.nn.init.normal_(blk.timeattn.qkv.weight, std=0.2)
        torch.nn.init.normal_(m.video_model.temporal_embedding, std=0.3)
    return m


@pytest.mark.parametrize("with_head", [False, True])
def test_released_tvtsv2_checkpoint_gives_the_same_features(tiny_v2, published, tmp_path, with_head):
    source = _source_v2(tiny_v2)
    state = published.to_tvtsv2(source.state_dict(), with_head)
    expected = published.tvtsv2_shapes(w=32, layers=2, patch=8, grid=2, wt=32, text_layers=4, e=16, context=16,
                                       frames=4, sort_head=with_head)
    assert {k.removeprefix("module."): tuple(v.shape) for k, v in state.items()} == expected
    _released(tmp_path / "TVTSv2.pth", state)
    RAN.clear()
    _, conversion = convert_checkpoint("tvtsv2", tmp_path / "TVTSv2.pth", tmp_path / "model", config=tiny_v2())
    assert RAN == []  # neither the ConfigParser's __setstate__ nor the pickled hook ran
    assert all(k.startswith("pred_model.") for k in conversion.fresh) and bool(conversion.fresh) != with_head
    model = load_model(tmp_path / "model").eval()
    with torch.no_grad():
        assert torch.equal(model.encode_video(_frames()), source.encode_video(_frames()))
        assert torch.equal(model.encode_text(TEXTS), source.encode_text(TEXTS))
        if with_head:
            feats = source.encode_text(TEXTS).expand(2, 4, 16)
            assert torch.equal(model.sort_logits(model.video_model(_frames()), feats),
                               source.sort_logits(source.video_model(_frames()), feats))


def test_conversion_is_strict(tiny_v2, published, tmp_path):
    state = published.to_tvtsv2(_source_v2(tiny_v2).state_dict(), with_head=False)
    del state["module.video_model.transformer.resblocks.1.timeattn.proj.bias"]
    state["module.video_model.mystery"] = torch.zeros(3)
    state["module.text_projection"] = torch.zeros(32, 8)
    _released(tmp_path / "broken.pth", state)
    with pytest.raises(CheckpointError) as e:
        convert_checkpoint("tvtsv2", tmp_path / "broken.pth", config=tiny_v2())
    assert e.value.missing == ["video_model.transformer.resblocks.1.timeattn.proj.bias"]
    assert e.value.unexpected == ["video_model.mystery"]
    assert e.value.mismatched == ["text_model.clip.text_projection (32, 8) vs (32, 16)"]


def test_cli_choices_are_the_converters():
    import tvts.convert_cli as cli
    import tvts.models.convert as convert

    assert cli.SOURCES == convert.SOURCES and cli.SIZES == tuple(convert.TVTSV2_SIZES)


def test_pickled_objects_where_weights_belong_are_refused(tmp_path):
    torch.save({"state_dict": {"video_model.proj": torch.zeros(2), "video_model.conv1.weight": Hook()}}, tmp_path / "evil.pth")
    RAN.clear()
    with pytest.raises(CheckpointError, match="not a plain-tensor checkpoint"):
        read_state_dict(tmp_path / "evil.pth")
    assert RAN == []


def _tiny_clip():
    torch.manual_seed(0)
    clip = open_clip.model.CLIP(embed_dim=16, vision_cfg=dict(image_size=16, patch_size=8, width=32, layers=2, head_width=16),
                                text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=4),
                                quick_gelu=True).eval()
    with torch.no_grad():
        for p in clip.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return clip


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_openai_torchscript_archive_is_read_without_its_code(tiny_v2, tmp_path, monkeypatch):
    """An OpenAI-style .pt (a TorchScript archive with the OpenAI CLIP key names and the extra
    input_resolution/context_length/vocab_size entries) converts without torch.jit.load and gives
    exactly what the same weights give from a plain OpenCLIP state dict, or through --unsafe."""
    clip = _tiny_clip()
    torch.save(clip.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    for k in ("input_resolution", "context_length", "vocab_size"):  # plain attributes here, buffers in OpenAI's
        clip.__dict__.pop(k, None)
        clip.register_buffer(k, torch.tensor(16))
    torch.jit.script(clip).save(str(tmp_path / "ViT-tiny.pt"))

    plain, _ = convert_checkpoint("open-clip", tmp_path / "open_clip_pytorch_model.bin", config=tiny_v2())
    unsafe, _ = convert_checkpoint("openai-clip", tmp_path / "ViT-tiny.pt", config=tiny_v2(), unsafe=True)

    def no_jit(*a, **k):
        raise AssertionError("torch.jit.load must not be called without unsafe")

    monkeypatch.setattr(torch.jit, "load", no_jit)
    safe, conversion = convert_checkpoint("openai-clip", tmp_path / "ViT-tiny.pt", config=tiny_v2())
    assert {"input_resolution", "context_length", "vocab_size", "logit_scale"} <= set(conversion.ignored)
    converted = [k for k in safe.state_dict() if k not in conversion.fresh]  # the rest is freshly initialised
    assert len(converted) == len(conversion.state)
    for other in (plain, unsafe):
        a, b = safe.state_dict(), other.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in converted)
    with torch.no_grad():
        img = torch.randn(2, 3, 16, 16)
        torch.testing.assert_close(safe.eval().encode_video(img[:, None]), clip.encode_image(img), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def distilbert_dir(tmp_path_factory):
    """A tiny random DistilBERT (the published TVTS text model's architecture) with a real tokenizer."""
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

    from tvts.models.text import resolve_text_model

    d = tmp_path_factory.mktemp("distilbert")
    tok = AutoTokenizer.from_pretrained(resolve_text_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    DistilBertModel(DistilBertConfig(vocab_size=tok.vocab_size, dim=32, n_layers=2, n_heads=2, hidden_dim=64,
                                     max_position_embeddings=64)).save_pretrained(str(d))
    tok.save_pretrained(str(d))
    return d


def test_released_tvts_v1_checkpoint_gives_the_same_features(distilbert_dir, tmp_path):
    cfg = tiny_model_config(distilbert_dir, sort_head="transformer")
    torch.manual_seed(0)
    source = VideoBert(cfg, pretrained_text=False).eval()
    state = {"module." + k.replace("text_model.model.", "text_model.", 1): v.clone() for k, v in source.state_dict().items()}
    state["module.text_model.embeddings.position_ids"] = torch.arange(64)[None]  # saved by old transformers
    assert {"module.txt_proj.1.weight", "module.vid_proj.0.weight", "module.pred_model.head.weight",
            "module.video_model.temporal_embed", "module.text_model.transformer.layer.1.ffn.lin2.weight"} <= set(state)
    _released(tmp_path / "TVTS.pth", state)
    cfg_path = tmp_path / "tiny_tvts.yaml"
    cfg_path.write_text(yaml.safe_dump(to_dict(cfg)))
    parser = argparse.ArgumentParser()
    add_convert_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["convert", "--from", "tvts-v1", "--config", str(cfg_path), "--text-model", str(distilbert_dir),
                              str(tmp_path / "TVTS.pth"), str(tmp_path / "model")])
    assert args.func(args) == 0
    model = load_model(tmp_path / "model").eval()
    assert isinstance(model, VideoBert) and (tmp_path / "model" / "text" / "tokenizer_config.json").is_file()
    with torch.no_grad():
        assert torch.equal(model.encode_video(_frames()), source.encode_video(_frames()))
        assert torch.equal(model.encode_text(TEXTS), source.encode_text(TEXTS))
        feats = source.text_model(TEXTS).expand(2, 4, 32)
        assert torch.equal(model.sort_logits(model.video_model(_frames()), feats),
                           source.sort_logits(source.video_model(_frames()), feats))


def test_a_released_checkpoint_is_evaluated_from_the_command_line_alone(tiny_v2, published, tmp_path):
    """convert (CLI) → eval (CLI) on an MSR-VTT-layout folder: no user code between a released file and
    its zero-shot retrieval numbers."""
    import json

    from tvts.cli import main
    from tvts.data.synthetic import make_synthetic

    state = published.to_tvtsv2(_source_v2(tiny_v2).state_dict(), with_head=False)
    _released(tmp_path / "TVTSv2_ViT_tiny.pth", state)
    (tmp_path / "tiny_v2.yaml").write_text(yaml.safe_dump(to_dict(tiny_v2())))
    assert main(["convert", "--from", "tvtsv2", "--config", str(tmp_path / "tiny_v2.yaml"),
                 str(tmp_path / "TVTSv2_ViT_tiny.pth"), str(tmp_path / "model")]) == 0
    held = make_synthetic(tmp_path / "shapes", num_train=0, num_val=0, num_heldout=16, workers=1, progress=False)["heldout_root"]
    assert main(["eval", "retrieval", "--dataset", "msrvtt", "--model", str(tmp_path / "model"), "--data", held,
                 "--out", str(tmp_path / "report.json"), "--workers", "0", "--no-progress"]) == 0
    r = json.loads((tmp_path / "report.json").read_text())["results"]["msrvtt-1ka/zs-retrieval"]
    assert r["num_videos"] == 8 and r["num_failed"] == 0 and 1 <= r["t2v_MedR"] <= 8


def _released_extraction_script(model, path: str, num_frames: int, size: int) -> torch.Tensor:
    """What the released feature_extraction_TVTSv2_*.py computes, written out here with the libraries it uses:
    decord reads frames int(linspace(0, n - 1, T)), each becomes a PIL image, torchvision's Resize((S, S))
    squashes it bilinearly, ToTensor + ImageNet Normalize, then one [1, T, 3, S, S] forward."""
    import numpy as np
    from PIL import Image
    from torchvision import transforms

    try:
        import decord
    except ImportError:  # (the dev extra brings it on x86-64) every frame through PyAV: the same pixels here
        from tvts.data.decode import decode_all

        every = decode_all(path)
        frames = every[np.linspace(0, len(every) - 1, num_frames).astype(int)]
    else:
        vr = decord.VideoReader(path)
        frames = vr.get_batch(np.linspace(0, len(vr) - 1, num_frames).astype(int)).asnumpy()
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    with torch.no_grad():
        return model.encode_video(torch.stack([tf(Image.fromarray(f)) for f in frames])[None])[0]


def test_extract_with_the_release_preset_gives_the_released_scripts_features(tiny_v2, published, tmp_path, make_video):
    """convert (saves the release's evaluation preprocessing) → extract --preset tvtsv2-extract on clips of
    another aspect ratio and frame count: the features of the released extraction script's own pipeline."""
    import json

    import numpy as np
    from safetensors import safe_open

    from tvts.cli import main

    source = _source_v2(tiny_v2)
    _released(tmp_path / "TVTSv2.pth", published.to_tvtsv2(source.state_dict(), with_head=False))
    (tmp_path / "tiny_v2.yaml").write_text(yaml.safe_dump(to_dict(tiny_v2())))
    assert main(["convert", "--from", "tvtsv2", "--config", str(tmp_path / "tiny_v2.yaml"), str(tmp_path / "TVTSv2.pth"),
                 str(tmp_path / "model")]) == 0
    saved = json.loads((tmp_path / "model" / "preprocessor.json").read_text())
    assert saved["interpolation"] == "pil-nearest" and saved["frame_sampling"] == "segments" and saved["num_frames"] == 4
    rng = np.random.default_rng(0)
    for name, (n, h, w) in {"wide": (23, 24, 40), "tall": (37, 48, 26)}.items():
        blocks = rng.integers(0, 256, (n, h // 4 + 1, w // 4 + 1, 3), dtype=np.uint8)  # smooth enough for H.264
        make_video(tmp_path / "videos" / f"{name}.mp4", np.repeat(np.repeat(blocks, 4, 1), 4, 2)[:, :h, :w], 10, crf=10)
    out = tmp_path / "feats.safetensors"
    assert main(["extract", "--model", str(tmp_path / "model"), "--videos", str(tmp_path / "videos"), "--out", str(out),
                 "--preset", "tvtsv2-extract", "--workers", "0", "--no-progress"]) == 0
    with safe_open(str(out), "pt") as f:
        ids, feats = json.loads(f.metadata()["ids"]), f.get_tensor("features")
    assert ids == ["tall", "wide"]
    for i, name in enumerate(ids):
        expected = _released_extraction_script(source, str(tmp_path / "videos" / f"{name}.mp4"), 4, 16)
        torch.testing.assert_close(feats[i], expected, rtol=0, atol=1e-5 * expected.abs().max().item())
    # the saved (evaluation) pipeline is another computation: the check above can tell them apart
    assert main(["extract", "--model", str(tmp_path / "model"), "--videos", str(tmp_path / "videos"),
                 "--out", str(tmp_path / "eval.safetensors"), "--workers", "0", "--no-progress"]) == 0
    with safe_open(str(tmp_path / "eval.safetensors"), "pt") as f:
        assert not torch.allclose(f.get_tensor("features"), feats, atol=1e-3)
