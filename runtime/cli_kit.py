"""What runtime/cli.py hands to the command modules it registers (ops, dlq, templates, …).

Those modules cannot import runtime.cli for its helpers: under `python -m runtime.cli` that
module is `__main__`, and importing it by name would load it a second time with its own state.
So runtime/cli.py builds one `CliHelpers` and each module keeps it in a `Registered`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from runtime.settings import Settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@dataclass(frozen=True)
class CliHelpers:
    settings: Callable[[], Settings]
    in_db: Callable[[Callable[[Any], Any]], Any]
    print_json: Callable[[Any], None]
    say: Callable[[str], None]


class Registered:
    """One module's helpers, set when runtime/cli.py registers the module's commands."""

    def __init__(self) -> None:
        self._helpers: CliHelpers | None = None

    def set(self, helpers: CliHelpers) -> None:
        self._helpers = helpers

    def __call__(self) -> CliHelpers:
        if self._helpers is None:
            raise RuntimeError("command module used before runtime.cli registered it")
        return self._helpers
