import pytest
import torch

from tvts.models.heads import PointerSortHead, SortTransformer
from tvts.models.vit import VideoTokens


@pytest.mark.parametrize("head_cls", [SortTransformer, PointerSortHead])
def test_sort_heads_are_permutation_equivariant_over_transcripts(head_cls):
    torch.manual_seed(0)
    head = head_cls(4, 32, 2, 2, 4.0, video_width=24, text_width=20).eval()
    video = VideoTokens(torch.randn(2, 1 + 2 * 3, 24), num_slots=2, tokens_per_slot=3)
    texts = torch.randn(2, 4, 20)
    perm = torch.tensor([2, 0, 3, 1])
    a = head(video, texts)
    b = head(video, texts[:, perm])
    assert a.shape == (2, 4, 4)
    # Shuffling the transcripts shuffles the rows of the prediction, nothing else: the head cannot
    # read the order from the input positions.
    assert torch.allclose(b, a[:, perm], atol=1e-5)


@pytest.mark.parametrize("head_cls", [SortTransformer, PointerSortHead])
def test_text_only_path_ignores_video(head_cls):
    torch.manual_seed(0)
    head = head_cls(4, 32, 2, 2, 4.0, video_width=24, text_width=20).eval()
    texts = torch.randn(1, 4, 20)
    v1 = VideoTokens(torch.randn(1, 7, 24), 2, 3)
    v2 = VideoTokens(torch.randn(1, 7, 24), 2, 3)
    assert head(None, texts).shape == (1, 4, 4)
    assert not torch.allclose(head(v1, texts), head(v2, texts), atol=1e-5)  # the video matters when given


def test_published_layout_has_no_extra_keys_when_widths_agree():
    head = SortTransformer(4, 64, 2, 4, 4.0, video_width=64, text_width=64)
    keys = set(head.state_dict())
    assert not any(k.startswith(("video_in", "text_in")) for k in keys)
    assert {"type_embed", "norm.weight", "head.weight", "blocks.1.mlp.fc2.bias"} <= keys
    assert len(keys) == 29  # as the published pred_model
