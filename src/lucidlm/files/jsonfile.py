"""Reading and writing the JSON files tokenizers live in, with the same care everywhere:
a missing file is a FileNotFoundError, a truncated or corrupt one a ValueError naming it, and a
write goes to a temp file that is renamed into place, so a crash never leaves half a file."""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_json(path: str | os.PathLike, what: str = "tokenizer file") -> object:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON (truncated or corrupt?): {exc}") from None


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file renamed over it, so a reader never sees
    half a file; missing parent directories are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json_atomic(path: str | os.PathLike, data: object, indent: int | None = 1) -> Path:
    return write_text_atomic(path, json.dumps(data, ensure_ascii=False, indent=indent))
