"""Run the CLI in-process and read its output as a person sees it.

The commands print through wasabi, as spaCy's do: coloured, and wrapped at 80 columns. Tests
match phrases, so ``invoke`` gives the output with colour codes removed and every run of
whitespace (line wraps included) turned into one space; ``raw`` keeps the lines as printed,
for tests of the layout itself.
"""
import re
from typing import Any, Optional

from typer.testing import CliRunner

from spacy_crf_ner.cli import _register_commands, app

_register_commands()
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class CliResult:
    """Exit code, exception and the flattened output of one command."""

    def __init__(self, result: Any):
        self.exit_code: int = result.exit_code
        self.exception: Optional[BaseException] = result.exception
        self.raw: str = _ANSI.sub("", result.output)  # as printed, line breaks kept
        self.output: str = " ".join(self.raw.split())

    def __repr__(self) -> str:
        return f"CliResult(exit_code={self.exit_code}, output={self.output!r})"


def invoke(*args: Any) -> CliResult:
    """``python -m spacy_crf_ner ARGS...`` in this process."""
    return CliResult(CliRunner().invoke(app, [str(a) for a in args]))
