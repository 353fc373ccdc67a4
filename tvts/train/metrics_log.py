"""The one logging path: a JSONL file of metric rows (one per ``log_every`` steps), on process 0."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    """Appends rows to ``path``. On resume (``truncate_after=step``) rows logged after that step by the
    interrupted run are dropped first, so the file reads as one uninterrupted run."""

    def __init__(self, path: str | Path, enabled: bool = True, truncate_after: int = 0):
        self.path = Path(path)
        self.enabled = enabled
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if truncate_after and self.path.exists():
            rows = [r for r in read_metrics(self.path) if r.get("step", 0) <= truncate_after]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        elif not truncate_after:
            self.path.write_text("")

    def write(self, row: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
