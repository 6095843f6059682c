"""labscale-data: list, fetch and verify the release files of the data registry.

    labscale-data list [--files]            every dataset: files, size, licence, whether it is cached
    labscale-data fetch [DATASET ...] [--force]   download into the cache (default: every dataset)
    labscale-data verify [DATASET ...]      hash the files labscale reads; exit 1 on a missing or changed file

Files go to ``<LABSCALE_HOME>/data/<dataset>/<path>`` (default ``~/.cache/labscale/data``). ``LABSCALE_DATA_MIRROR``
(a folder or a base URL laid out ``<dataset>/<path>``) replaces the canonical URLs; see
:mod:`labscale.data.registry`. Exit status: 0 on success, 1 when a file is missing or changed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import DataUnavailable, InvalidParameter
from . import registry


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _cached(name: str) -> str:
    files = registry.files(name)
    present = sum((registry.data_home() / name / f.path).is_file() for f in files)
    return "yes" if present == len(files) else "no" if present == 0 else f"partial ({present}/{len(files)})"


def cmd_list(args: argparse.Namespace) -> int:
    rows = []
    for name in registry.datasets():
        entry = registry.dataset(name)
        rows.append((name, str(len(entry.files)), _mb(entry.size), _cached(name), entry.licence))
    header = ("dataset", "files", "size", "cached", "licence")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
        if args.files and row is not header:
            for f in registry.files(row[0]):
                print(f"    {f.path}  ({f.size:,} bytes)")
    total = sum(registry.dataset(n).size for n in registry.datasets())
    n_files = sum(len(registry.files(n)) for n in registry.datasets())
    print(f"{len(rows)} datasets, {n_files} files, {_mb(total)}; cache: {registry.data_home()}")
    mirror = registry.mirror()
    print(f"mirror: {registry.MIRROR_ENV}={mirror}" if mirror else "mirror: none (canonical URLs)")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    failed = 0
    for name in args.dataset or registry.datasets():
        try:
            folder = registry.fetch(name, progress=args.progress, force=args.force, offline=False)
        except DataUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        entry = registry.dataset(name)
        print(f"{name}: {len(entry.files)} files, {_mb(entry.size)}, sha256 checked -> {folder}")
    if os.environ.get(registry.DATA_ENV):
        print(f"note: {registry.DATA_ENV} is set, so labscale reads datasets from there, not from the cache")
    return 1 if failed else 0


def cmd_verify(args: argparse.Namespace) -> int:
    rows = registry.verify(args.dataset or None)
    bad = [r for r in rows if r.status != "ok"]
    for r in bad:
        print(f"{r.status:8} {r.dataset}/{r.file}: {r.detail}")
    names = list(dict.fromkeys(r.dataset for r in rows))
    for name in names:
        mine = [r for r in rows if r.dataset == name]
        counts = {s: sum(r.status == s for r in mine) for s in ("ok", "missing", "mismatch")}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        print(f"{name}: {summary} ({registry.folder(name)})")
    if bad:
        broken = sorted({r.dataset for r in bad})
        mismatched = sorted({r.dataset for r in bad if r.status == "mismatch"})
        fix = f"labscale-data fetch {'--force ' if mismatched else ''}{' '.join(broken)}"
        print(f"{len(bad)} of {len(rows)} files missing or changed; fix: {fix}", file=sys.stderr)
        return 1
    print(f"all {len(rows)} files ok")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="labscale-data", description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="every dataset: files, size, licence, cached?")
    p_list.add_argument("--files", action="store_true", help="list each file too")
    p_list.set_defaults(run=cmd_list)
    p_fetch = sub.add_parser("fetch", help="download datasets into the cache, sha256 checked")
    p_fetch.add_argument("dataset", nargs="*", help="dataset names (default: all)")
    p_fetch.add_argument("--force", action="store_true", help="replace cached files whose sha256 is wrong")
    p_fetch.add_argument("--progress", action="store_true", help="show download progress bars")
    p_fetch.set_defaults(run=cmd_fetch)
    p_verify = sub.add_parser("verify", help="hash the files labscale reads; exit 1 if any is missing or changed")
    p_verify.add_argument("dataset", nargs="*", help="dataset names (default: all)")
    p_verify.set_defaults(run=cmd_verify)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        for name in getattr(args, "dataset", None) or []:  # every name checked before anything is downloaded
            registry.dataset(name)
        return args.run(args)
    except InvalidParameter as exc:
        parser.error(str(exc))  # exits 2
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
