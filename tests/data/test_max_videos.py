"""data.max_videos: training reads the first N videos of the split list; evaluation lists are untouched."""

from __future__ import annotations

from tvts.config import load_recipe
from tvts.recipe_data import transcript_dataset


def test_max_videos_keeps_the_first_n_training_videos_only(tmp_path):
    names = [f"synth/data/vid_{i:05d}.mp4" for i in range(7)]
    split = tmp_path / "train.csv"
    split.write_text("Name\tDuration\n" + "".join(f"{n}\t10\n" for n in names))
    for n in (0, 3, 7, 50):  # 0: all of them; more than the list holds: all of them
        cfg = load_recipe("demo", [f"data.max_videos={n}", f"train.out_dir={tmp_path / 'run'}"])
        train = transcript_dataset(cfg, tmp_path, split, train=True)
        held = transcript_dataset(cfg, tmp_path, split, train=False)
        want = names[:n] if n else names
        assert [train.source.names[i] for i in range(len(train))] == want
        assert [held.source.names[i] for i in range(len(held))] == names
