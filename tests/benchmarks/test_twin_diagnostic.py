"""benchmarks/twin_diagnostic.py: the direction twins it compares are read from the generator's annotations."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def diagnostic(load_benchmark):
    return load_benchmark("twin_diagnostic")


def test_twins_are_the_direction_pairs(diagnostic, val_videos):
    # The generator's pairs are videos 2j and 2j + 1; the list order must not matter.
    root, names = val_videos
    order = [4, 1, 5, 0, 3, 2]
    twin = diagnostic.twins(root, [names[i] for i in order]).tolist()
    assert [order[t] for t in twin] == [i ^ 1 for i in order]


def test_a_video_without_its_twin_gets_none(diagnostic, val_videos):
    # Dropping video 3 leaves video 2 alone; two copies of one video are not each other's twin.
    root, names = val_videos
    twin = diagnostic.twins(root, [names[i] for i in (0, 1, 2, 4, 4)]).tolist()
    assert twin == [1, 0, -1, -1, -1]
