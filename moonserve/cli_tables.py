"""Tables the CLI prints, made to fit the terminal: a table with whole cells when it fits, else one
block per row (its first cell as a heading, then `column: value` lines). A cell is never cut, so an
id can always be copied from the screen."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def print_table(console: Console, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max([len(h)] + [len(r[k]) for r in rows]) for k, h in enumerate(headers)]
    # rich's SIMPLE_HEAD box: two spaces between columns, one padding space at each edge
    if sum(widths) + 3 * (len(headers) - 1) + 2 <= console.width:
        table = Table(*headers, box=box.SIMPLE_HEAD, pad_edge=True)
        for column in table.columns:
            column.no_wrap = True
            column.overflow = "fold"
        for r in rows:
            table.add_row(*(escape(c) for c in r))
        console.print(table)
        return
    label = max(len(h) for h in headers[1:]) if len(headers) > 1 else 0
    for i, r in enumerate(rows):
        if i:
            console.print()
        console.print(f"[bold]{escape(r[0])}[/bold]", soft_wrap=True)
        for h, cell in zip(headers[1:], r[1:]):
            console.print(f"  {escape(h)}:{' ' * (label - len(h))} {escape(cell)}", soft_wrap=True, highlight=False)
