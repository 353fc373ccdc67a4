"""Many strings in two numpy arrays, for datasets that DataLoader workers fork."""

from __future__ import annotations

import numpy as np

__all__ = ["PackedStrings"]


class PackedStrings:
    """An immutable list of strings stored as one UTF-8 buffer plus offsets.

    Hand-written on purpose: a Python list of millions of ``str`` objects in a Dataset is copied page by page
    into every forked DataLoader worker as reference counts are touched ("copy-on-read"); two numpy arrays
    are not. ``names[i]`` returns a ``str``."""

    def __init__(self, names: list[str]):
        encoded = [n.encode("utf-8") for n in names]
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self._offsets[1:])

    @classmethod
    def from_buffers(cls, blob: np.ndarray, offsets: np.ndarray) -> "PackedStrings":
        """Wrap an existing uint8 buffer ``[B]`` and int64 offsets ``[N + 1]`` (string i is
        ``blob[offsets[i]:offsets[i + 1]]``) without copying them."""
        names = cls.__new__(cls)
        names._blob, names._offsets = blob, offsets
        return names

    def buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """The uint8 buffer ``[B]`` and int64 offsets ``[N + 1]`` holding the strings (no copy)."""
        return self._blob, self._offsets

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> str:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        return self._blob[self._offsets[i] : self._offsets[i + 1]].tobytes().decode("utf-8")

    def __iter__(self):
        return (self[i] for i in range(len(self)))
