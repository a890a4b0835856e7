"""``faxctl bench``: measure this machine against bare Celery baselines."""

from __future__ import annotations

from typing import Annotated

import typer

from dispatcher.cli._app import app, console, err_console, fail

__all__ = ["bench"]


@app.command()
def bench(
    as_json: Annotated[bool, typer.Option("--json", help="Print results as JSON.")] = False,
    quick: Annotated[bool, typer.Option(help="Small sizes: a first look, not a result.")] = False,
    markdown: Annotated[bool, typer.Option(help="Print the table as Markdown.")] = False,
) -> None:
    """Run every measurement on a throwaway embedded stack and print ours, baseline, ratio."""
    try:
        from dispatcher.bench.report import print_table, to_json, to_markdown
        from dispatcher.bench.runner import Sizes, run
    except ModuleNotFoundError as exc:  # an install without the bench extra
        raise fail(f"faxctl bench needs {exc.name}: pip install 'fax-dispatcher[bench]'") from None

    sizes = Sizes.quick() if quick else Sizes()
    quiet = as_json or markdown
    with err_console.status("benchmarking...") as status:
        results = run(sizes, lambda step: None if quiet else status.update(f"{step}..."))
    if as_json:
        print(to_json(results))
    elif markdown:
        print(to_markdown(results), end="")
    else:
        print_table(results, console)
