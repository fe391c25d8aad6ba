"""``lucidlm assets list | fetch | path``: the pinned models and data (``lucidlm.assets``)."""

from __future__ import annotations

import argparse
import sys

from lucidlm.assets import SOURCES, asset_path, cache_dir, fetch, get_asset, is_cached, list_assets


def _human(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [("NAME", "KIND", "FILES", "CACHED", "SIZE", "LICENSE", "SOURCES")]
    for a in list_assets():
        n = sum(is_cached(a, f.key) for f in a.files)
        sources = [f"pypi:{a.pypi.requirement}"] if a.pypi else []
        sources += [f"hub:{r}" for r in sorted({f.hub.repo_id for f in a.files if f.hub})]
        sources += ["url"] if any(f.url for f in a.files) else []
        cached = "yes" if n == len(a.files) else f"{n}/{len(a.files)}" if n else "no"
        kind = "model (pretrained)" if a.kind == "model" else a.kind
        rows.append((a.name, kind, str(len(a.files)), cached, _human(sum(f.size for f in a.files)), a.license,
                     " ".join(sources)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print(f"cache: {cache_dir()}")
    print("models: `lucidlm models` lists the pretrained ones apart from the architectures (random weights)")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    if args.local_path and len(args.names) > 1:
        raise ValueError("--local-path names the files of one asset; fetch one asset at a time with it")
    for name in args.names:
        asset = get_asset(name)
        if not all(is_cached(asset, key) for key in asset.keys):  # pip is quiet: say why we wait
            size = _human(sum(f.size for f in asset.files))
            print(f"lucidlm: fetching {asset.name} ({size}) ...", file=sys.stderr)
        for key, path in fetch(asset, local_path=args.local_path, sources=args.source,
                               wheelhouse=args.wheelhouse).items():
            print(f"{asset.name}\t{key}\t{path}")
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    print(asset_path(args.name, args.key, local_path=args.local_path, sources=args.source,
                     wheelhouse=args.wheelhouse))
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("assets", help="pinned models and data: list, fetch, path")
    sub = parser.add_subparsers(dest="assets_command", metavar="ACTION", required=True)
    list_p = sub.add_parser("list", help="every registered asset, and whether it is cached")
    list_p.set_defaults(func=_cmd_list)
    fetch_p = sub.add_parser("fetch", help="download and verify all files of an asset")
    fetch_p.set_defaults(func=_cmd_fetch)
    path_p = sub.add_parser("path", help="print the cached path of one file, fetching it if needed")
    path_p.set_defaults(func=_cmd_path)
    fetch_p.add_argument("names", nargs="+", metavar="NAME", help="asset name(s) (see `lucidlm assets list`)")
    path_p.add_argument("name", help="asset name (see `lucidlm assets list`)")
    path_p.add_argument("key", nargs="?", help="file key (default: the asset's main file)")
    for p in (fetch_p, path_p):
        p.add_argument("--local-path", help="the file itself, or a directory holding the files by name")
        p.add_argument("--source", action="append", choices=SOURCES,
                       help="a source to try; repeat for an order (default: $LUCIDLM_SOURCES or local,pypi)")
        p.add_argument("--wheelhouse", help="directory of pre-downloaded archives, checked before pip "
                                            "(default: $LUCIDLM_WHEELHOUSE)")
