"""`tierkit preview`: validate a stack, plan it, and list what its Pulumi program would register."""

from __future__ import annotations

import json
import shutil
from typing import Annotated

import typer
from rich.table import Table

from tierkit.commands.validate import summary
from tierkit.console import console, err_console, print_json
from tierkit.errors import TierkitError
from tierkit.spec import project_root

MOCKS_NOTE = ("from Pulumi's mock runtime: nothing ran and nothing was created; lookups got placeholders "
              "in parentheses, and ids, addresses and command outputs are known only after a real `up`")
CELL = 60


def _cell(value: object) -> str:
    if isinstance(value, float) and value.is_integer():  # Pulumi carries numbers as floats
        value = int(value)
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= CELL else text[: CELL - 3] + "..."


def preview_command(
    stack: Annotated[str, typer.Option("--stack", help="Stack name: reads stacks/Pulumi.NAME.yaml.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan and every resource with its inputs as JSON (secret values masked).")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Then run `pulumi preview --diff` against the stack's state (needs the Pulumi CLI on PATH and the backend's credentials).")] = False,
) -> None:
    """Validate, plan, and list the resources the stack's Pulumi program would register (for CI).

    Runs the real program under Pulumi's mock runtime in preview mode: no command runs, no cloud
    is asked, nothing is created. Prints the plan's summary and a table of resources (type, name,
    parent, the settings that matter: instance type, storage, IMDSv2, ports, targets, commands).
    Exits 2 on a bad spec, 1 when the program fails under the mocks.
    """
    from tierkit.preview import preview

    root = project_root()
    result = preview(root, stack)
    if diff:
        found = shutil.which("pulumi")
        if found is None:
            raise TierkitError("--diff: pulumi is not on PATH; install the Pulumi CLI, or drop --diff")
    if as_json:
        print_json({**result.to_json(), "summary": summary(result.spec, result.plan), "note": MOCKS_NOTE})
    else:
        console.print(f"ok: {summary(result.spec, result.plan)}", markup=False, soft_wrap=True)
        table = Table(title=f"stack {stack}: {len(result.resources)} resources the program would register",
                      title_justify="left")
        for column in ("type", "name", "parent"):
            table.add_column(column, no_wrap=True)
        table.add_column("settings", overflow="fold")
        for r in result.resources:
            settings = [f"{k}={_cell(v)}" for k, v in r.key_inputs().items()]
            if r.ignore_changes:
                settings.append(f"ignore_changes={','.join(r.ignore_changes)}")
            table.add_row(r.type, r.name, r.parent, "\n".join(settings))
        console.print(table)
        console.print(f"exports: {', '.join(result.exports)}", markup=False, soft_wrap=True)
        console.print(f"note: {MOCKS_NOTE}", markup=False, soft_wrap=True)
    if diff:
        from tierkit.pulumi_cli import PulumiCli

        PulumiCli(found, root, stack, lambda line: err_console.print(line, markup=False, soft_wrap=True)).preview()


def register(app: typer.Typer) -> None:
    app.command("preview")(preview_command)
