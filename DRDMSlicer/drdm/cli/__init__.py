"""The ``drdm`` command line (``python -m drdm`` too): :mod:`~drdm.cli.parser` (commands, options, help),
:mod:`~drdm.cli.main` (runs one, errors in one line), the commands in :mod:`~drdm.cli.sample_commands`,
:mod:`~drdm.cli.field_commands`, :mod:`~drdm.cli.model_commands` and :mod:`~drdm.cli.train_command`, each calling the
engine's rooms, as the Python API does.

Every failure the user can cause ends in one ``drdm: error: …`` line and exit status 2; Ctrl-C ends with
status 130. Output folders appear only when complete (built under a temporary name, then renamed).
"""

from .flag_words import in_flag_words
from .main import main
from .parser import build_parser

__all__ = ["build_parser", "in_flag_words", "main"]
