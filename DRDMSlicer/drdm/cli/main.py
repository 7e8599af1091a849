"""``drdm`` (and ``python -m drdm``): parse, run the command, and end every failure the user can cause in one
``drdm: error: …`` line with exit status 2 (Ctrl-C: status 130)."""

from __future__ import annotations

import sys

from ..errors import out_of_memory_as_error
from ..sampler import GenerationCancelled
from .flag_words import in_flag_words
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    """Run ``drdm`` with ``argv`` (default: the process's arguments); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    if getattr(args, "count", 1) < 1 or getattr(args, "per_level", 1) < 1:
        parser.error("--count and --per-level must be at least 1")
    if getattr(args, "magnitudes", None) and getattr(args, "levels", None):
        parser.error("--magnitudes and --levels are alternatives: give one of them")
    if args.command == "demo" and args.seed is None:
        args.seed = 0
    try:
        with out_of_memory_as_error():
            return args.func(args)
    except ValueError as error:  # every DRDMError (InputError, CheckpointError, OutOfMemory, ...) is a ValueError
        print(f"drdm: error: {in_flag_words(str(error), args)}", file=sys.stderr)
        return 2
    except (GenerationCancelled, KeyboardInterrupt):
        print("\ndrdm: cancelled; unfinished outputs were removed", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
