"""At initialisation TVTSv2 is CLIP: a B/16-shaped TVTSv2 whose weights come from a CLIP model through
the converter encodes images and texts exactly as that CLIP model does. The reference is open_clip's
own ViT-B-16 (QuickGELU, as OpenAI's), with random weights; nothing is downloaded.

This checks the converter (every key, the qkv layout) and the wiring of the video encoder: the temporal
attention at its initial state adds exactly nothing, the spatial attention and MLP are CLIP's.
"""

import math

import pytest
import torch

from tvts.config import load_model_config
from tvts.models.convert import clip_to_tvtsv2
from tvts.models.video_clip import VideoClip, is_new_parameter

open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    cfg = open_clip.get_model_config("ViT-B-16")
    clip = open_clip.model.CLIP(embed_dim=cfg["embed_dim"], vision_cfg=cfg["vision_cfg"], text_cfg=cfg["text_cfg"],
                                quick_gelu=True).eval()
    with torch.no_grad():  # non-trivial norms and biases, so that a misplaced one shows
        for p in clip.parameters():
            if p.ndim == 1:
                p.add_(0.1 * torch.randn_like(p))
    model = VideoClip(load_model_config("tvtsv2_vitb16")).eval()
    conversion = clip_to_tvtsv2(clip.state_dict(), model, "open_clip ViT-B-16")
    model.load_state_dict(conversion.state, strict=False)
    assert conversion.ignored == ["logit_scale"]
    assert conversion.fresh and all(is_new_parameter(k) for k in conversion.fresh)
    return clip, model


@torch.no_grad()
def test_a_one_frame_video_is_encoded_as_the_clip_image(pair):
    clip, model = pair
    img = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model.encode_video(img[:, None]), clip.encode_image(img), rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_a_static_video_is_the_clip_image_up_to_the_cls_attention_weight(pair):
    """With T identical frames every patch sees exactly what it sees in the image (the temporal branch
    is zero), but the [CLS], which attends to all tokens (published design), sees each patch key T
    times and its own key once: its softmax equals the image one with a bias of -log T on the
    [CLS]-to-[CLS] logit. With that bias the CLIP image encoder gives our video embedding exactly."""
    clip, model = pair
    t = 2
    img = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    video = model.encode_video(img[:, None].expand(1, t, 3, 224, 224))
    vis = clip.visual
    bias = torch.zeros(197, 197)
    bias[0, 0] = -math.log(t)
    pooled, _ = vis._pool(vis.transformer(vis._embeds(img), attn_mask=bias))
    torch.testing.assert_close(video, pooled @ vis.proj, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(video, clip.encode_image(img), atol=1e-3)


@torch.no_grad()
def test_texts_are_encoded_as_clip_encodes_them(pair):
    clip, model = pair
    texts = ["a person playing the guitar", "", "so um " * 60 + "this transcript is longer than 77 tokens"]
    ours = model.encode_text(texts)
    ref = clip.encode_text(open_clip.tokenize(texts))
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
