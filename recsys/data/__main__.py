"""``python -m recsys.data download [--data-dir DIR] [--name ml-100k] [--force]``."""

from __future__ import annotations

import argparse
import logging
import sys

from recsys.data.download import DATASETS, ensure_dataset
from recsys.data.movielens import load_movielens
from recsys.errors import RecsysError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.data")
    commands = parser.add_subparsers(dest="command", required=True)
    download = commands.add_parser("download", help="obtain and verify a MovieLens release")
    download.add_argument("--data-dir", default="data", help="data folder (default: data)")
    download.add_argument("--name", default="ml-100k", choices=sorted(DATASETS))
    download.add_argument("--force", action="store_true", help="fetch again and replace")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        folder = ensure_dataset(args.data_dir, args.name, force=args.force)
        data = load_movielens(args.data_dir, args.name, download=False)
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"{args.name}: {len(data.ratings):,} ratings, {len(data.users):,} users, "
        f"{len(data.items):,} items in {folder} (ratings SHA-256 {data.ratings_sha256}, verified)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
