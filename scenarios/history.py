"""The run's own history: every fault the harness applied (and later every workload
operation), with wall and monotonic times, as JSON lines in `<run>/history.jsonl`.

Entries follow Jepsen's shape: `{"process": "nemesis", "type": "invoke"|"ok"|"fail"|
"info", "f": <what>, "value": {...}}`, so that a checker reading the agents' event logs
next to it knows when each fault was active and which backend applied it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class History:
    def __init__(self, path: Path):
        self.path = path
        self.entries: list[dict[str, Any]] = []

    def record(self, process: str, type: str, f: str, value: Any = None, **extra: Any) -> dict:
        entry = {
            "index": len(self.entries),
            "t_wall": time.time(),
            "t_mono": time.monotonic(),
            "process": process,
            "type": type,
            "f": f,
            "value": value,
            **extra,
        }
        self.entries.append(entry)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(entry, ensure_ascii=False) + "\n")
        return entry
