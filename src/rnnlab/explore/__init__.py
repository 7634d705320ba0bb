"""``rnnlab explore``: an interactive page over a trained run's gates, cells and gradients.

``explore(RUN)`` traces every model of a run folder over its validation data (or the
user's text or CSV) and returns an :class:`Explorer`: ``.save(path)`` writes one
self-contained HTML page (works from ``file://``), ``.serve()`` serves it on 127.0.0.1
for inputs too large to embed, and in Jupyter it displays inline. Modules: ``inputs``
(what the model reads), ``trace`` (activations), ``connectivity`` (‖∂ prediction_t /
∂ x_s‖), ``stats`` (unit rankings, saturation), ``data`` (all of it for a run folder),
``page`` (quantised rows + the assets in ``assets/``), ``serve`` (the HTTP server).
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from rnnlab._io import InputError, write_bytes_atomic
from rnnlab.explore.data import collect
from rnnlab.explore.page import Page

__all__ = ["Explorer", "explore"]


class Explorer:
    """The explorer page of a run: save it, serve it, or show it in a notebook."""

    def __init__(self, page: Page):
        self.page = page

    def html(self) -> str:
        """The self-contained page (an InputError if its data is too large to embed)."""
        return self.page.html()

    def save(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Write the page to ``path``; an existing file is kept unless ``force``."""
        path = Path(path)
        if path.exists() and not force:
            raise InputError(f"{str(path)!r} already exists; pass --force to overwrite it")
        write_bytes_atomic(path, self.html().encode("utf-8"))
        return path

    def serve(self, port: int = 0):
        """Serve the page on 127.0.0.1 in a background thread; return (server, url)."""
        from rnnlab.explore.serve import serve_in_background

        return serve_in_background(self.page, port)

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html(), quote=True)}" '
                'style="width:100%;height:900px;border:1px solid #ddd"></iframe>')


def explore(run_dir: str | os.PathLike, *, text: str | None = None,
            data: str | os.PathLike | None = None, steps: int = 2000,
            connect_steps: int = 300, window: int = 100) -> Explorer:
    """The explorer of a training run or a comparison folder.

    ``text``/``data``: the input instead of the run's validation data (charlm: text or a
    text file; forecast: a CSV with the run's columns). ``steps``: how much of the input
    to show. Connectivity is computed for the first ``connect_steps`` steps, each over the
    ``window`` steps before it.
    """
    return Explorer(Page(collect(run_dir, text=text, data=data, steps=steps,
                                 connect_steps=connect_steps, window=window)))
