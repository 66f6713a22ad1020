"""The terminal fpar prints to: rich, with its markup off.

What fpar prints (paths, class and user names, messages quoting them) comes from users' files,
and rich would read `[/x]` or `[bold]` in a folder name as a tag: an exception for one, a wrong
path printed for the other. So every console fpar makes reads no markup, and the few styled
words are rich `Text` (`labelled`), which is never parsed.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.text import Text


def make_console(**options: Any) -> Console:
    """A rich console that prints strings as they are (no markup)."""
    return Console(markup=False, **options)


def labelled(label: str, style: str, text: str = "") -> Text:
    """`label` in `style`, then `text` as it is: "error: <message>"."""
    return Text.assemble((label, style), f" {text}" if text else "")
