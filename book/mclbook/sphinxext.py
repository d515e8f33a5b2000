"""A small Sphinx extension for the book's HTML (listed in ``_config.yml``'s ``extra_extensions``).

Sphinx 7.4 writes an inline script that an extension adds after the builder starts (sphinx-thebe's and
sphinx-togglebutton's settings) twice into every page: once as registered (file name ``None``) and once
again from its registry when the pages are prepared (file name ``""``), so the two copies do not compare
equal. The second ``const THEBE_JS_URL`` then fails in the reader's browser ("Identifier 'THEBE_JS_URL'
has already been declared"). This extension drops such repeats from each page's scripts.
"""

from __future__ import annotations

from typing import Any


def _script_key(script: Any) -> tuple:
    attributes = getattr(script, "attributes", {})
    return (getattr(script, "filename", None) or "", tuple(sorted(attributes.items())))


def drop_repeated_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Keep the first of each script (same file name, or same inline body, and same attributes)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", drop_repeated_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
