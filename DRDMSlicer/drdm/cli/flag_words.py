"""Engine messages in the command line's words: the arguments they name become this command's flags."""

from __future__ import annotations

import argparse
import re

FLAG_OF_ARGUMENT = {"ndims": "dims"}  # engine argument names the command line spells otherwise


def in_flag_words(message: str, args: argparse.Namespace) -> str:
    """An engine message in the command line's words: each backquoted argument name (```ndims```, ```out```) that is
    one of this command's options becomes its flag (``--dims``, ``--out``); other marks just lose their quotes."""
    def flag(match: re.Match) -> str:
        name = match.group(1)
        if name in FLAG_OF_ARGUMENT or name in vars(args):
            return "--" + FLAG_OF_ARGUMENT.get(name, name).replace("_", "-")
        return name

    return re.sub(r"`([a-z_]+)`", flag, message)
