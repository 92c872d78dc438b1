"""Atomic writes of JSON, CSV and checkpoints, and loaders that fail loudly.

Every write goes to a temporary file in the same directory, is flushed and fsynced, then
``os.replace``d over the target: a reader (or a crash) sees the old file or the new one, never
half of one. Loaders name the file in every error.
"""
from __future__ import annotations

import csv
import io as _io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch

__all__ = ["CheckpointError", "DataFileError", "atomic_write_bytes", "atomic_write_text",
           "atomic_write_json", "atomic_write_csv", "append_csv_rows", "read_csv", "read_json",
           "read_jsonl", "atomic_write_jsonl", "save_checkpoint", "load_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or not loadable."""


class DataFileError(ValueError):
    """A data or results file that cannot be read; the message names the file (and line)."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates 0600 files; results are meant to be shared, so use the umask's default.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    return path


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # numpy / torch arrays and scalars (0-d gives a plain number)
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_jsonl(path: str | os.PathLike, records: Iterable[Mapping[str, Any]]) -> Path:
    text = "".join(json.dumps(r, default=_json_default) + "\n" for r in records)
    return atomic_write_text(path, text)


def _csv_text(rows: Sequence[Mapping[str, Any]], fieldnames: Sequence[str] | None) -> str:
    if fieldnames is None:
        fieldnames = []
        for r in rows:
            for k in r:
                if k not in fieldnames:
                    fieldnames.append(k)
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n", extrasaction="raise")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def atomic_write_csv(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
                     fieldnames: Sequence[str] | None = None) -> Path:
    """Write a tidy CSV (header + one line per row) atomically."""
    return atomic_write_text(path, _csv_text(rows, fieldnames))


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a CSV written by :func:`atomic_write_csv` (values stay strings)."""
    path = Path(path)
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except FileNotFoundError:
        raise DataFileError(f"{path}: file not found") from None
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise DataFileError(f"{path}: cannot read CSV ({err})") from None


def append_csv_rows(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]],
                    fieldnames: Sequence[str] | None = None) -> Path:
    """Append rows by rewriting the whole file atomically (results files are small).

    Rewriting rather than appending in place means a crash mid-write never leaves a torn line,
    which is what lets interrupted sweeps resume from the rows already on disk.
    """
    path = Path(path)
    old = read_csv(path) if path.exists() else []
    names = list(fieldnames) if fieldnames else None
    if names is None and old:
        names = list(old[0].keys())
        for r in rows:
            for k in r:
                if k not in names:
                    names.append(k)
    return atomic_write_csv(path, [*old, *rows], names)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataFileError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise DataFileError(f"{path}: line {err.lineno}: invalid JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataFileError(f"{path}: cannot read ({err})") from None


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = Path(path)
    out = []
    try:
        with open(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataFileError(f"{path}: line {lineno}: invalid JSON ({err.msg})") from None
                if not isinstance(obj, dict):
                    raise DataFileError(f"{path}: line {lineno}: expected a JSON object")
                out.append(obj)
    except FileNotFoundError:
        raise DataFileError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataFileError(f"{path}: cannot read ({err})") from None
    return out


def save_checkpoint(path: str | os.PathLike, obj: Mapping[str, Any]) -> Path:
    """Save a plain dict of tensors / numbers / strings atomically (``torch.save``)."""
    buf = _io.BytesIO()
    torch.save(dict(obj), buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code from pickles).

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or holds non-tensor objects.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt archives
        raise CheckpointError(f"{path}: cannot load checkpoint, the file is truncated or corrupt "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj
