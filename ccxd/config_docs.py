"""The settings as documentation: each ``Config`` field with its section, default and docstring.

Read from the source of :mod:`ccxd.config` (attribute docstrings and the ``# Section``
comments of the ``Config`` class), so the commented default config that ``ccxctl init``
writes and the checks on ``man/ccxd.toml.5`` never drift from the Struct.
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any

import msgspec

from ccxd import config

__all__ = ["FieldDoc", "default_config_text", "field_docs", "man_entry", "toml_value"]


class FieldDoc(msgspec.Struct, frozen=True):
    """One setting: where it is grouped, its default and what it does."""

    name: str
    section: str
    default: Any
    doc: str


def field_docs() -> list[FieldDoc]:
    """Every ``Config`` field in declaration order."""
    source = inspect.getsource(config)
    lines = source.splitlines()
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Config")
    defaults = {f.name: f.default for f in msgspec.structs.fields(config.Config)}
    docs: list[FieldDoc] = []
    section = ""
    body = cls.body
    for i, node in enumerate(body):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        # The nearest "# Section" comment after a blank line names the field's group;
        # the title ends at a colon or parenthesis ("# Claude jobs: limits …").
        above = lines[: node.lineno - 1]
        for n in range(len(above) - 1, 0, -1):
            m = re.match(r"^    # ([^:(]+)", above[n])
            if m and not above[n - 1].strip():
                section = m.group(1).strip()
                break
            if above[n].startswith("class Config"):
                break
        doc = ""
        nxt = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            doc = " ".join(nxt.value.value.split())
        name = node.target.id
        default = defaults[name]
        if default is msgspec.NODEFAULT:
            default = None
        docs.append(FieldDoc(name=name, section=section, default=default, doc=doc))
    return docs


def toml_value(value: object) -> str:
    """``value`` as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return msgspec.json.encode(value).decode()


def _plain(doc: str) -> str:
    return doc.replace("``", "")


def default_config_text() -> str:
    """A config file with every setting commented out at its default, grouped and explained."""
    out = [
        "# ccxd configuration: see ccxd.toml(5) or `ccxd --print-config`.",
        "# Every setting is optional; each is shown commented out at its default.",
        "# Uncomment a line to change it; `systemctl --user reload ccxd` (SIGHUP) applies",
        "# the settings that can change while running, others need a restart.",
        "# CCXD_<KEY> environment variables override this file.",
    ]
    section = None
    for f in field_docs():
        if f.section != section:
            section = f.section
            out += ["", f"# --- {section} ---"]
        out.append("")
        out += [f"# {line}" for line in _wrap(_plain(f.doc), 76)]
        if f.default is None:
            out.append(f"# {f.name} = ...   (unset by default)")
        else:
            out.append(f"#{f.name} = {toml_value(f.default)}")
    return "\n".join(out) + "\n"


def man_entry(f: FieldDoc) -> str:
    """The roff lines that document ``f`` in man/ccxd.toml.5."""
    default = "unset" if f.default is None else toml_value(f.default)
    doc = _roff(_plain(f.doc))
    return f".TP\n.B {f.name}\n{doc}\nDefault: \\fB{_roff(default)}\\fR.\n"


def _roff(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    # Man pages are ASCII; groff reads anything else as Latin-1 unless preconv runs.
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    return "\\&" + text if text.startswith((".", "'")) else text


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        lines.append(current)
    return lines or [""]


def man_keys_section() -> str:
    """The whole KEYS section of man/ccxd.toml.5, one ``.SS`` per group of settings."""
    out = [".SH KEYS\n"]
    section = None
    for f in field_docs():
        if f.section != section:
            section = f.section
            out.append(f".SS {section}\n")
        out.append(man_entry(f))
    return "".join(out)


def _rewrite_man_page(path: str) -> None:
    """Replace the KEYS section of ``path`` (``python -m ccxd.config_docs man/ccxd.toml.5``)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start = text.index(".SH KEYS\n")
    end = text.index("\n.SH ", start + 1) + 1
    with open(path, "w", encoding="utf-8") as f:
        f.write(text[:start] + man_keys_section() + text[end:])


if __name__ == "__main__":
    import sys

    _rewrite_man_page(sys.argv[1])
