"""The one way a benchmark writes what it measured: ``<report>.json`` (the figures) and ``<report>.md`` (the
table it prints). Imported by the scripts in this folder (``python benchmarks/x.py`` puts it on the path)."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(report: str, results: dict, md: str) -> None:
    """Write ``results`` to ``<report>.json`` and ``md`` to ``<report>.md`` (folders created), then print ``md``."""
    Path(report).parent.mkdir(parents=True, exist_ok=True)
    Path(report + ".json").write_text(json.dumps(results, indent=2) + "\n")
    Path(report + ".md").write_text(md + "\n")
    print(md)
