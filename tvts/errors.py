"""Typed errors. Each names the file and the field it is about, so a user can fix the input."""

from __future__ import annotations


class TVTSError(Exception):
    """Base class of the library's own errors."""


class ConfigError(TVTSError, ValueError):
    """A bad config: unknown field, wrong type, bad value. ``field`` is the dotted path, ``source`` the file."""

    def __init__(self, message: str, field: str | None = None, source: str | None = None):
        where = " ".join(p for p in (f"in {source}" if source else "", f"at '{field}'" if field else "") if p)
        super().__init__(f"{message}" + (f" ({where})" if where else ""))
        self.message = message
        self.field = field
        self.source = source

    def __reduce__(self):  # pickles with its fields (e.g. back from a decoding process)
        return (type(self), (self.message, self.field, self.source))


class SampleError(TVTSError):
    """One training/eval sample cannot be used. ``reason`` is a short stable key used for counting
    (e.g. ``"decode"``, ``"no_video_stream"``, ``"empty_segment"``), ``path`` the offending file."""

    def __init__(self, reason: str, path: str | None = None, detail: str = ""):
        msg = f"{reason}: {path}" if path else reason
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)
        self.reason = reason
        self.path = path
        self.detail = detail

    def __reduce__(self):
        return (type(self), (self.reason, self.path, self.detail))


class DataError(TVTSError):
    """Too much of a corpus is unusable (``data.max_bad_fraction``), or a run's files cannot be written."""


class CheckpointError(TVTSError):
    """A checkpoint that does not match the model: lists the missing and unexpected keys."""

    def __init__(self, path: str, missing: list[str] = (), unexpected: list[str] = (), mismatched: list[str] = ()):
        parts = [f"cannot load {path}"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""))
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}" + (" ..." if len(unexpected) > 20 else ""))
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {', '.join(mismatched[:20])}")
        super().__init__("; ".join(parts))
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
