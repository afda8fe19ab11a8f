"""The options several commands share."""

from __future__ import annotations

from typing import Annotated

import typer

DbOption = Annotated[
    str, typer.Option("--db", envvar="EHRBRIDGE_DB", help="sqlite:///file.db or postgresql://...")
]
WorkspaceOption = Annotated[
    str, typer.Option("--workspace", "-w", envvar="EHRBRIDGE_WORKSPACE", help="the tenant")
]
