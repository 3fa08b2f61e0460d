"""Per-step metrics to JSONL and CSV (one pair of files per stream, e.g. train and val), and TensorBoard if present."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class MetricsLogger:
    """Append-only metric streams under `folder`: `<stream>.jsonl` (the record) and `<stream>.csv` (for plotting).

    Disabled loggers (non-zero ranks) accept calls and write nothing.
    """

    def __init__(self, folder: str | Path, *, enabled: bool = True, tensorboard: bool = True) -> None:
        self.folder = Path(folder)
        self.enabled = enabled
        self._tb = None
        if enabled:
            self.folder.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError:  # tensorboard is optional
                    pass
                else:
                    self._tb = SummaryWriter(str(self.folder / "tensorboard"))

    def _jsonl(self, stream: str) -> Path:
        return self.folder / f"{stream}.jsonl"

    def read(self, stream: str) -> list[dict[str, Any]]:
        path = self._jsonl(stream)
        if not path.is_file():
            return []
        rows = []
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    log.warning("%s: ignoring a truncated line (the run was killed while writing it)", path)
        return rows

    def truncate_after(self, step: int) -> None:
        """Drop rows past `step` in every stream: a resumed run re-does those steps and logs them again."""
        if not self.enabled:
            return
        for path in self.folder.glob("*.jsonl"):
            stream = path.stem
            rows = [row for row in self.read(stream) if row.get("step", 0) <= step]
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
            self._rewrite_csv(stream, rows)

    def _rewrite_csv(self, stream: str, rows: list[dict[str, Any]]) -> None:
        path = self.folder / f"{stream}.csv"
        if not rows:
            path.unlink(missing_ok=True)
            return
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    def log(self, stream: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), **values}
        with self._jsonl(stream).open("a") as f:
            f.write(json.dumps(row) + "\n")
        csv_path = self.folder / f"{stream}.csv"
        columns = None
        if csv_path.is_file():
            with csv_path.open() as f:
                columns = next(csv.reader(f), None)
        if columns is None or set(row) - set(columns):
            # New columns (first row, or a metric that appears later): rewrite the file with a wider header.
            self._rewrite_csv(stream, self.read(stream))
        else:
            with csv_path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=columns).writerow(row)
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{stream}/{key}", value, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
