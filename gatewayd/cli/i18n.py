"""The CLI's two languages: English and Chinese for every message a person reads.

The language is ``--lang`` on the command line, else the locale ($LC_ALL, $LC_MESSAGES, $LANG
starting with ``zh``). Messages are keys in ``gatewayd.cli.i18n_text``; a key missing in
Chinese falls back to English and a missing key shows itself, so a typo is visible rather than
a crash. Key names, values, ids, paths and commands stay as they are in both languages: they
are what a person searches for and types.

Two kinds of text are not ours and are translated on their way out: click's own messages
(usage errors, prompts' "Error:", help headings: ``install_click``), and the problems of a
configuration (``ConfigError``, written in English by the core and by each plugin's schema:
``say``). A phrase with no translation stays English: a third-party plugin's own words.
"""

from __future__ import annotations

import os
import re
from typing import Any

from gatewayd.cli.i18n_phrases import BROKER
from gatewayd.cli.i18n_text import CLICK, MESSAGES, PHRASES, PROBLEMS, REFUSALS

_lang = ""


def set_lang(lang: str | None) -> None:
    global _lang
    _lang = lang or ""


def lang() -> str:
    if _lang:
        return _lang
    for var in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def t(message: str, /, **values: object) -> str:
    """The message ``message`` (a key of MESSAGES) in the current language, filled in."""
    pair = MESSAGES.get(message)
    if pair is None:
        return message
    text = pair[1] if lang() == "zh" and pair[1] else pair[0]
    return text.format(**values)


# -- phrases written in English elsewhere -------------------------------------------------------

_COMPILED: dict[int, list[tuple[re.Pattern[str], str]]] = {}


def _table(rows: list[tuple[str, str]]) -> list[tuple[re.Pattern[str], str]]:
    key = id(rows)
    if key not in _COMPILED:
        _COMPILED[key] = [(re.compile(rx + r"\Z", re.S), zh) for rx, zh in rows]
    return _COMPILED[key]


def _translate(text: str, rows: list[tuple[str, str]]) -> str | None:
    """The Chinese of ``text`` by the first pattern that matches it whole; its groups are
    translated as expected-phrases themselves (``expected 1..10`` inside ``missing; ...``)."""
    for rx, zh in _table(rows):
        m = rx.match(text)
        if m is not None:
            parts = {k: _inner(k, v) for k, v in m.groupdict().items()}
            return zh.format(**parts)
    return None


def _inner(name: str, value: str | None) -> str:
    """A group's text: as written, or translated itself (xe: expected, xp: problem, xr:
    refusal)."""
    if value is None:
        return ""
    nested = {"xe": expected, "xp": problem, "xr": refused}.get(name[:2])
    return nested(value) if nested else value


def expected(phrase: str) -> str:
    """What a schema expects (``an integer 1..247``), in the current language."""
    if lang() != "zh":
        return phrase
    return _translate(phrase, PHRASES) or phrase


def problem(text: str) -> str:
    """A configuration problem (``missing; expected ...``), in the current language."""
    if lang() != "zh":
        return text
    return _translate(text, PROBLEMS) or _translate(text, PHRASES) or text


def broker_said(text: str) -> str:
    """What the broker check found (``gatewayd.cli.probes``), in the current language."""
    if lang() != "zh":
        return text
    return _translate(text, BROKER) or text


def say(exc: BaseException) -> str:
    """The one line for a GatewayError a person reads; a config error translated."""
    from gatewayd.errors import ConfigError

    cause = getattr(exc, "config_error", None)
    if isinstance(cause, ConfigError):
        exc = cause
    if not isinstance(exc, ConfigError) or lang() != "zh":
        return str(exc)
    where = f"{exc.file}: {exc.path}" if exc.path else exc.file
    text = f"{where}: {problem(exc.expected)}"
    if exc.got is not None:
        from gatewayd.errors import show_value

        text += t("got", value=show_value(exc.got))
    return text


def refused(text: str) -> str:
    """A refusal the daemon sent (English on the wire), in the current language."""
    if lang() != "zh":
        return text
    return _translate(text, REFUSALS) or text


# -- click's own messages -----------------------------------------------------------------------


def _click_gettext(message: str) -> str:
    if lang() == "zh":
        return CLICK.get(message, message)
    return message


def _click_ngettext(singular: str, plural: str, n: int) -> str:
    return _click_gettext(singular if n == 1 else plural)


def install_click() -> None:
    """Route click's gettext calls through our table. click binds ``_`` and ``ngettext`` in
    each module at import; its messages are looked up when they are shown, so the language
    chosen by ``--lang`` applies to them too."""
    import gettext
    import importlib

    for name in ("core", "exceptions", "parser", "types", "formatting", "decorators", "termui"):
        module: Any = importlib.import_module(f"click.{name}")
        if getattr(module, "_", None) is gettext.gettext:
            module._ = _click_gettext
        if getattr(module, "ngettext", None) is gettext.ngettext:
            module.ngettext = _click_ngettext
