import pytest
import torch

from tvts.errors import CheckpointError
from tvts.models import VideoBert, build_model, load_model
from tvts.models.video_bert import WEIGHTS_NAME
from tvts.objectives.sorting import kway_sort_loss
from tvts.testing import make_tiny_bert, tiny_model_config


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("bert"))


def _batch(b=2):
    torch.manual_seed(1)
    frames = torch.randn(b, 4, 3, 16, 16)
    texts = [["the red square moves left", "a blue circle grows", "um the star", "rotates"]] * b
    return frames, texts


def test_save_and_load_round_trip(bert_dir, tmp_path):
    torch.manual_seed(0)
    m = build_model(tiny_model_config(bert_dir)).eval()
    m.save_pretrained(tmp_path / "m")
    m2 = load_model(tmp_path / "m").eval()
    frames, texts = _batch()
    assert torch.equal(m.encode_video(frames), m2.encode_video(frames))
    assert torch.equal(m.encode_text(texts[0]), m2.encode_text(texts[0]))
    # The saved folder is self-contained: the text encoder is rebuilt from its own text/ subfolder.
    assert m2.config.text.name == str(tmp_path / "m" / "text")
    m2.config.text.name = m.config.text.name
    assert m2.config == m.config


def test_folders_and_configs_with_the_old_family_names_still_load(bert_dir, tmp_path):
    """Families were named "tvts" and "tvtsv2" until they were named by what they are."""
    import json

    from tvts.config import load_model_config

    torch.manual_seed(0)
    m = build_model(tiny_model_config(bert_dir)).eval()
    m.save_pretrained(tmp_path / "m")
    cfg_file = tmp_path / "m" / "config.json"
    data = json.loads(cfg_file.read_text())
    assert data["family"] == "video_bert"
    data["family"] = "tvts"
    cfg_file.write_text(json.dumps(data))
    m2 = load_model(tmp_path / "m")
    assert isinstance(m2, VideoBert) and m2.config.family == "video_bert"
    frames, _ = _batch()
    assert torch.equal(m.encode_video(frames), m2.encode_video(frames))
    for name, family in (("tvtsv2_vitb16", "video_clip"), ("tvts_demo", "video_bert")):
        assert load_model_config(name).family == family
    with pytest.raises(Exception, match="unknown model family"):
        load_model_config("tvts_demo", ["family=tvts3"])
    assert load_model_config("tvtsv2_vitb16", ["family=tvtsv2"]).family == "video_clip"


def test_loading_is_strict(bert_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    m = build_model(tiny_model_config(bert_dir))
    m.save_pretrained(tmp_path / "m")
    state = load_file(str(tmp_path / "m" / WEIGHTS_NAME))
    del state["video_model.temporal_embed"]
    state["video_model.surprise"] = torch.zeros(1)
    save_file(state, str(tmp_path / "m" / WEIGHTS_NAME))
    with pytest.raises(CheckpointError) as e:
        VideoBert.from_pretrained(tmp_path / "m")
    assert "video_model.temporal_embed" in str(e.value) and "video_model.surprise" in str(e.value)


def _sort_grads(bert_dir, stop_gradient):
    torch.manual_seed(0)
    m = build_model(tiny_model_config(bert_dir)).train()
    frames, texts = _batch()
    out = m(frames, texts, stop_gradient=stop_gradient)
    kway_sort_loss(out["sort_logits"], torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])).backward()
    text_grads = [p.grad for p in m.text_model.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    video_grads = [p.grad for p in m.video_model.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    return text_grads, video_grads


def test_stop_gradient_keeps_sort_loss_out_of_the_text_encoder(bert_dir):
    text_grads, video_grads = _sort_grads(bert_dir, stop_gradient=True)
    assert text_grads == []
    assert len(video_grads) > 0  # the sort loss still trains the video encoder
    text_grads, _ = _sort_grads(bert_dir, stop_gradient=False)
    assert len(text_grads) > 0  # without stop-gradient it reaches the text encoder


def test_frozen_text_encoder_has_no_trainable_parameters(bert_dir):
    m = build_model(tiny_model_config(bert_dir, trainable_layers=0)).train()
    assert not any(p.requires_grad for p in m.text_model.parameters())
    assert not m.text_model.model.training  # dropout off while frozen
    part = build_model(tiny_model_config(bert_dir, trainable_layers=1))
    trainable = {n for n, p in part.text_model.named_parameters() if p.requires_grad}
    assert trainable and all(".layer.1." in n for n in trainable)


def test_video_pooling_reads_the_cls_or_the_mean_of_the_other_tokens(bert_dir):
    """pool=cls projects token 0; pool=mean projects the mean of the kept slot tokens (not the [CLS])."""
    torch.manual_seed(0)
    frames = torch.randn(2, 4, 3, 16, 16)
    cls_model = build_model(tiny_model_config(bert_dir)).eval()
    mean_model = build_model(tiny_model_config(bert_dir, pool="mean")).eval()
    mean_model.load_state_dict(cls_model.state_dict())
    with torch.no_grad():
        tokens = cls_model.video_model(frames)
        assert torch.allclose(cls_model.encode_video(frames), cls_model.vid_proj(tokens.cls))
        expected = cls_model.vid_proj(tokens.tokens[:, 1:].mean(1))
        assert torch.allclose(mean_model.encode_video(frames), expected, atol=1e-6)
        assert not torch.allclose(expected, cls_model.vid_proj(tokens.cls))


def test_saved_model_folders_are_readable_by_the_group(tmp_path):
    import os
    import stat

    from tvts.models.base import replace_dir

    src = tmp_path / "src"
    src.mkdir(mode=0o700)
    (src / "model.safetensors").write_bytes(b"x")
    os.chmod(src / "model.safetensors", 0o600)
    old = os.umask(0o022)
    try:
        replace_dir(src, tmp_path / "model")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "model").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "model" / "model.safetensors").st_mode) == 0o644
