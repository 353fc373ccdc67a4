"""Frame-time sampling (TSN, Wang et al. 2016), as TVTS Sec. 3.1 uses it: cut [S_1, E_K] into M equal
parts and take one frame per part."""

from __future__ import annotations

import math

import numpy as np

from tvts.errors import ConfigError

__all__ = ["tsn_timestamps"]


def tsn_timestamps(
    start: float, end: float, num_frames: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """TSN sampling of ``num_frames`` (M) times in seconds, float64 ``[M]``, ascending.

    [start, end] is cut into M equal parts [a_j, a_{j+1}); with ``rng`` (training) one time is drawn
    uniformly in each part, with ``rng`` None (evaluation) each part's midpoint is used.
    """
    if not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ConfigError(f"num_frames must be an int >= 1, got {num_frames!r}", field="num_frames")
    start, end = float(start), float(end)
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        raise ConfigError(f"need finite start <= end, got [{start}, {end}]")
    width = (end - start) / num_frames
    lo = start + width * np.arange(num_frames, dtype=np.float64)
    offset = np.full(num_frames, 0.5) if rng is None else rng.random(num_frames)  # in [0, 1)
    return lo + offset * width
