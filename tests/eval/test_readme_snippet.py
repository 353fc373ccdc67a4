"""The README's Python example runs as written (a tiny model and a generated clip stand in for the demo's
model and held-out video), and encode_video explains bad inputs."""

from pathlib import Path

import pytest
import torch

from tvts.errors import ConfigError
from tvts.models import load_model

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_python_example_runs(tiny_model_dir, eval_data, capsys):
    block = README.read_text().split("Your own video and text")[1].split("```python\n")[1].split("```")[0]
    assert 'load_model_and_processor("runs/demo/model")' in block and 'processor("data/narrated_shapes/heldout/videos/all/video0.mp4"' in block
    clip = eval_data["clips"][0]["path"]
    code = block.replace("runs/demo/model", str(tiny_model_dir)).replace("data/narrated_shapes/heldout/videos/all/video0.mp4", clip)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    assert scope["frames"].shape == (1, 4, 3, 16, 16) and scope["video"].shape == (1, 16)
    assert scope["text"].shape == (2, 16) and not scope["model"].training
    printed = capsys.readouterr().out
    assert printed.startswith("tensor([") and printed.count(",") == 1  # two scores


def test_encode_video_takes_images_and_explains_bad_frames(tiny_model_dir):
    model = load_model(tiny_model_dir)
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        assert model.encode_video(x[:, 0]).shape == (2, 16)  # [B, 3, H, W]: one frame each
        torch.testing.assert_close(model.encode_video(x[:, :2]), model.encode_video(x[:, :2].clone()))
    with pytest.raises(ConfigError, match="uint8.*divided by 255"):
        model.encode_video((x * 50).clamp(0, 255).to(torch.uint8))
    with pytest.raises(ConfigError, match="32x32, this model takes 16x16"):
        model.encode_video(torch.randn(1, 4, 3, 32, 32))
    with pytest.raises(ConfigError, match="5 frames: this model takes a multiple of 2"):
        model.encode_video(torch.randn(1, 5, 3, 16, 16))
    with pytest.raises(ConfigError, match=r"\[B, T, 3, H, W\]"):
        model.encode_video(torch.randn(1, 4, 16, 16))
