"""``python -m recsys.data download [--data-dir DIR] [--name ml-100k] [--force]``.

The data folder defaults to ``$RECSYS_DATA_DIR``, else the user's cache folder
(``~/.cache/recsys/data``), as ``data.dir`` does in training.
"""

from __future__ import annotations

import logging
import sys

from recsys.cli import ArgumentParser
from recsys.data.download import DATASETS, dataset_dir, default_data_dir, ensure_dataset
from recsys.data.movielens import load_movielens
from recsys.errors import RecsysError


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m recsys.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    download = commands.add_parser("download", help="obtain and verify a MovieLens release")
    download.add_argument("--data-dir", default=default_data_dir(),
                          help="data folder (default: %(default)s: $RECSYS_DATA_DIR, else the "
                               "user's cache folder)")  # fmt: skip
    download.add_argument("--name", default="ml-100k", choices=sorted(DATASETS))
    download.add_argument(
        "--force",
        action="store_true",
        help="fetch again; the old copy is replaced once the new one is "
        "verified, and kept as <name>.damaged-<time> if it did not verify",
    )
    args = parser.parse_args(argv)
    if not str(args.data_dir).strip():  # "" would put the release in the working folder
        parser.error("--data-dir is empty: give a folder")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.force:
            ensure_dataset(args.data_dir, args.name, force=True)
        data = load_movielens(args.data_dir, args.name)  # verifies every file
    except RecsysError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    folder = dataset_dir(args.data_dir, args.name)
    print(
        f"{args.name}: {len(data.ratings):,} ratings, {len(data.users):,} users, "
        f"{len(data.items):,} items in {folder} (every file verified; ratings SHA-256 "
        f"{data.ratings_sha256})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
