"""Optional dependencies: one place that says which extra brings which package, and one message when
one is missing, raised before any work starts (not as a worker's traceback after files were written)."""

from __future__ import annotations

import importlib

from tvts.errors import ConfigError

# import name -> the pyproject extra that installs it
EXTRAS = {
    "webdataset": "shards",
    "torchcodec.decoders": "torchcodec",
    "open_clip": "clip",
    "spacy": "svilm",
    "faster_whisper": "asr",
    "wandb": "wandb",
    "faiss": "faiss",
}
NOTES = {"torchcodec.decoders": " and FFmpeg's shared libraries (Debian: apt-get install ffmpeg)"}


def require(module: str, what: str, field: str | None = None):
    """Import ``module`` (a key of :data:`EXTRAS`) or raise one :class:`ConfigError` naming ``what`` needs it
    and the command that installs it."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # ImportError, or a library's own load error (torchcodec without FFmpeg)
        extra = EXTRAS[module]
        raise ConfigError(f"{what} needs {module.split('.')[0]}: pip install 'tvts[{extra}]'{NOTES.get(module, '')} "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''})", field=field) from None
