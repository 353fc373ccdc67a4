import numpy as np
import pytest

from tvts.data.sampling import tsn_timestamps
from tvts.errors import ConfigError


def test_tsn_eval_midpoints():
    t = tsn_timestamps(2.0, 10.0, 4)
    np.testing.assert_allclose(t, [3.0, 5.0, 7.0, 9.0])
    assert t.dtype == np.float64 and t.shape == (4,)
    np.testing.assert_allclose(tsn_timestamps(0.0, 1.0, 1), [0.5])


def test_tsn_train_one_time_in_each_part():
    start, end, m = 5.5, 24.5, 8
    width = (end - start) / m
    seen = []
    for seed in range(200):
        t = tsn_timestamps(start, end, m, np.random.default_rng(seed))
        part = np.floor((t - start) / width).astype(int)
        np.testing.assert_array_equal(part, np.arange(m))  # time j lies in its own part j
        assert np.all(np.diff(t) > 0)
        seen.append((t - start) / width - np.arange(m))
    offsets = np.concatenate(seen)
    assert offsets.min() < 0.05 and offsets.max() > 0.95  # the whole part is reachable, not only the midpoint
    np.testing.assert_array_equal(
        tsn_timestamps(start, end, m, np.random.default_rng(3)), tsn_timestamps(start, end, m, np.random.default_rng(3))
    )


def test_tsn_degenerate_and_bad_args():
    np.testing.assert_array_equal(tsn_timestamps(3.0, 3.0, 4, np.random.default_rng(0)), [3.0] * 4)
    with pytest.raises(ConfigError):
        tsn_timestamps(0.0, 1.0, 0)
    with pytest.raises(ConfigError):
        tsn_timestamps(2.0, 1.0, 4)
    with pytest.raises(ConfigError):
        tsn_timestamps(0.0, float("nan"), 4)
