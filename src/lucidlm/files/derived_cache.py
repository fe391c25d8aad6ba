"""Files derived from a model file, kept so that the next process need not derive them again.

Every ``lucidlm generate --model smollm2-135m-instruct`` used to redo the same work: dequantise
135M weights from the GGUF (Q4_1 -> float32) and build a 49k-token BPE tokenizer from its
metadata, about 1 s on a quiet core. The results never change while the GGUF does not, so the
first load writes them here and later loads read them back:

    <home>/derived/SmolLM2-135M-Instruct.Q4_1.gguf-<12 hex digits of its path>/
        weights.safetensors   float32 state dict + ModelConfig    (loading/weights_cache.py)
        vocab.json            the tokenizer's vocab and merges    (tokenizers/gguf_vocab.py)
        source.txt            the source's path (to find entries whose source is gone)

``<home>`` is the home of the asset cache: ``$LUCIDLM_HOME``, else ``~/.cache/lucidlm``.

When a derived file may be used. It records a *key*: this module's format version, lucidlm's
version, and the source file's path, size, modification time and change time. It is used only
if that key equals the source's key now; else it is derived again and replaced. Why not the
source's sha256: hashing 98 MB at every load costs 0.06-0.12 s, a tenth of the time saved. Size
and modification time are what Python's ``.pyc`` files and lucidlm's asset stamps trust; the
change time (ctime) is added because ``cp -p``, ``tar`` and ``unzip`` copy a modification time but
cannot set a ctime, so another file copied over the source is noticed even at the same size.

Writing is atomic: into a temporary file in the same directory, flushed to disk (fsync), then
renamed into place (``os.replace``), so a reader sees the old file or the whole new one, never
part of one. A derived file that cannot be read back (truncated, not what it should be, another
key) is derived again; one that cannot be written (read-only home, full disk) is skipped with
one warning, and loading works as without a cache. The bytes of a derived file are not re-hashed
at each load (as for assets: 540 MB would cost more than the dequantisation saved).
Entries whose source file is gone are deleted whenever a new entry is made (a GGUF loaded from a
temporary directory leaves nothing behind for long). ``LUCIDLM_NO_DERIVED_CACHE=1`` turns the
cache off; deleting ``<home>/derived`` is always safe (it is derived again).
Tests: tests/test_derived_cache.py.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from lucidlm.assets import cache_dir

# Bump when a derived file's layout or meaning changes (what state_from_gguf or read_vocab return,
# how they are stored): every file written before is then derived again.
FORMAT_VERSION = 1
SOURCE_FILE = "source.txt"

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _lucidlm_version() -> str:
    """The installed lucidlm's version (read from its metadata: this layer sits below the package's
    front door, ``lucidlm/__init__.py``, and does not import it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lucidlm")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
_warned: set[str] = set()


def enabled() -> bool:
    """Is the cache on (``LUCIDLM_NO_DERIVED_CACHE`` unset or empty)?"""
    return not os.environ.get("LUCIDLM_NO_DERIVED_CACHE")


def derived_home() -> Path:
    return cache_dir().parent / "derived"  # cache_dir() is <home>/assets


def entry_dir(source: str | os.PathLike) -> Path:
    """The folder of one source file's derived files (the path is resolved, so a symlink and its
    target share one folder)."""
    path = Path(source).resolve()
    digest = hashlib.sha256(str(path).encode("utf-8")).hexdigest()[:12]
    return derived_home() / f"{path.name}-{digest}"


def source_key(source: str | os.PathLike) -> dict[str, int | str]:
    """What a derived file of ``source`` must record to be used (see the module docstring).

    >>> sorted(source_key(__file__))
    ['ctime_ns', 'format', 'lucidlm', 'mtime_ns', 'size', 'source']
    """
    path = Path(source).resolve()
    st = path.stat()
    return {"format": FORMAT_VERSION, "lucidlm": _lucidlm_version(), "source": str(path),
            "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def write_derived(source: str | os.PathLike, name: str, write: Callable[[Path], object]) -> bool:
    """Write the derived file ``name`` of ``source``: ``write(tmp)`` fills a temporary file beside
    it, which then replaces ``entry_dir(source) / name`` at once.

    Returns False, having warned once, when the file cannot be written (the caller goes on
    without a cache); any other error in ``write`` is a bug and propagates.
    """
    folder = entry_dir(source)
    try:
        if not folder.is_dir():
            _forget_entries_without_source()  # the one moment the cache grows: tidy it
            folder.mkdir(parents=True, exist_ok=True)
            (folder / SOURCE_FILE).write_text(str(Path(source).resolve()) + "\n", encoding="utf-8")
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            write(tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; a cache file is plain shared data
            os.replace(tmp, folder / name)
        finally:
            tmp.unlink(missing_ok=True)  # gone after the rename; left over only by a failure
        return True
    except OSError as exc:
        if str(folder) not in _warned:
            _warned.add(str(folder))
            log.warning("lucidlm: cannot cache %s in %s (%s); loading will derive it again each time "
                        "(LUCIDLM_NO_DERIVED_CACHE=1 turns the cache off)", name, folder, exc)
        return False


def _forget_entries_without_source() -> None:
    """Delete the entries whose source file is gone: they can never be used again. (An entry
    without a source.txt may be one being created right now by another process: left alone.)"""
    home = derived_home()
    if not home.is_dir():
        return
    for folder in home.iterdir():
        try:
            source = (folder / SOURCE_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if source and not Path(source).exists():
            shutil.rmtree(folder, ignore_errors=True)
