"""Small file helpers shared by tasks, training and the CLI.

Everything a user hands us (a path, a CSV, a text file) is checked here, and every
problem raises :class:`InputError` with one sentence naming what is wrong and what
was expected. Writes that must survive a kill go through a temporary name, ``fsync``
and ``os.replace``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

RUN_MARKER = "run.json"
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class InputError(ValueError):
    """A bad argument, file or data set given by the user.

    The CLI prints the message on one line and exits with status 2.
    """


class RunWarning(UserWarning):
    """Damage in a run folder that was worked around (an older intact copy was used).

    The CLI prints it as one line, ``Warning: <message>``.
    """


# ----------------------------------------------------------------------------- reading


def readable_file(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} {str(p)!r} does not exist")
    if not p.is_file():
        raise InputError(f"{what} {str(p)!r} is not a regular file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{what} {str(p)!r} is not readable (check its permissions)")
    if p.stat().st_size == 0:
        raise InputError(f"{what} {str(p)!r} is empty")
    return p


def read_text(path: str | os.PathLike, what: str = "text file") -> str:
    """Read a UTF-8 text file, refusing missing, empty and binary files."""
    p = readable_file(path, what)
    try:
        data = p.read_bytes()
    except OSError as err:
        raise InputError(f"cannot read {what} {str(p)!r}: {err.strerror}") from err
    if b"\x00" in data[:65536]:
        raise InputError(f"{what} {str(p)!r} looks binary (it contains NUL bytes); expected text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{what} {str(p)!r} is not UTF-8 text (undecodable byte at offset {err.start})"
        ) from err
    text = text.removeprefix("\ufeff")  # a byte-order mark is not content
    if not text.strip():
        raise InputError(f"{what} {str(p)!r} holds only whitespace; expected text")
    return text


def read_csv(path: str | os.PathLike, what: str = "CSV file") -> tuple[list[str], list[list[str]]]:
    """Return the header and the data rows of a CSV file (header required)."""
    text = read_text(path, what)
    rows = [row for row in csv.reader(text.splitlines()) if any(cell.strip() for cell in row)]
    if not rows:
        raise InputError(f"{what} {str(path)!r} has no rows")
    header = [h.strip() for h in rows[0]]
    if len(set(header)) != len(header):
        raise InputError(f"{what} {str(path)!r} has duplicate column names in its header")
    body = rows[1:]
    if not body:
        raise InputError(f"{what} {str(path)!r} has a header but no data rows")
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise InputError(
                f"{what} {str(path)!r} line {n} has {len(row)} fields; the header has "
                f"{len(header)}"
            )
    return header, body


def column_index(header: Sequence[str], name: str, path: str | os.PathLike) -> int:
    if name not in header:
        raise InputError(
            f"column {name!r} is not in {str(path)!r}; its columns are {', '.join(header)}"
        )
    return list(header).index(name)


def numeric_columns(
    header: Sequence[str], rows: Sequence[Sequence[str]], names: Sequence[str], path
) -> np.ndarray:
    """Parse the named columns as float64, shape (rows, columns); NaN and text are errors."""
    idx = [column_index(header, name, path) for name in names]
    out = np.empty((len(rows), len(idx)), dtype=np.float64)
    for r, row in enumerate(rows):
        for c, i in enumerate(idx):
            cell = row[i].strip()
            if not cell:
                raise InputError(
                    f"column {names[c]!r} of {str(path)!r} has an empty value on line {r + 2}; "
                    "expected numbers"
                )
            try:
                value = float(cell)
            except ValueError:
                raise InputError(
                    f"column {names[c]!r} of {str(path)!r} has a non-numeric value {cell!r} "
                    f"on line {r + 2}; expected numbers"
                ) from None
            if not math.isfinite(value):
                raise InputError(
                    f"column {names[c]!r} of {str(path)!r} has {cell or 'an empty value'!r} on "
                    f"line {r + 2}; expected finite numbers (no NaN or infinity)"
                )
            out[r, c] = value
    return out


# ----------------------------------------------------------------------------- writing


def fsync_dir(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a kill leaves either the old or the new file."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(p.parent)


def _finite(obj):
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json(obj) -> str:
    return json.dumps(_finite(obj), indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_json(path: str | os.PathLike, obj) -> None:
    write_bytes_atomic(path, to_json(obj).encode())


def read_json(path: str | os.PathLike, what: str = "JSON file"):
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {str(p)!r} does not exist")
    try:
        return json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{what} {str(p)!r} is not valid JSON: {err}") from err


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- run folders


def prepare_run_dir(path: str | os.PathLike, *, force: bool = False, resume: bool = False) -> Path:
    """Create (or reuse, when resuming) a run folder without ever clobbering one silently.

    An existing non-empty folder is an error unless ``resume`` (continue it) or ``force``
    (delete it first — only if it is an rnnlab run folder, recognised by its ``run.json``).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError(f"run folder {str(p)!r} exists and is not a folder")
    if p.is_dir() and any(p.iterdir()):
        if resume:
            return p
        if not force:
            raise InputError(
                f"run folder {str(p)!r} already exists; pass --force to overwrite it, "
                "--resume to continue it, or choose another --name/--out"
            )
        if not (p / RUN_MARKER).is_file():
            raise InputError(
                f"refusing to delete {str(p)!r}: it is not an rnnlab run folder (no {RUN_MARKER})"
            )
        shutil.rmtree(p)
    p.mkdir(parents=True, exist_ok=True)
    return p
