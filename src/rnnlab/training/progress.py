"""Progress: a tqdm bar on a terminal, quiet plain lines otherwise, nothing when asked."""

from __future__ import annotations

import sys

from tqdm import tqdm

MODES = ("auto", "bar", "lines", "none")


class Progress:
    def __init__(self, mode: str, total: int, label: str, initial: int = 0):
        if mode not in MODES:
            raise ValueError(f"progress must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.label, self.total = mode, label, total
        self.bar = None
        self._next_line = 0  # plain lines: about ten per run, whatever the eval rate
        if mode == "bar":
            self.bar = tqdm(
                total=total, initial=initial, desc=label, leave=False, dynamic_ncols=True
            )

    def step(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def evaluated(self, step: int, loss: float, metric: str, value: float, seconds: float) -> None:
        if self.mode == "lines" and (step >= self._next_line or step == self.total):
            self._next_line = step + max(1, self.total // 10)
            print(
                f"{self.label}: step {step}/{self.total} loss {loss:.4g} "
                f"val {metric} {value:.4g} ({seconds:.1f}s)",
                flush=True,
            )
        elif self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4g}", **{metric: f"{value:.4g}"})

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
