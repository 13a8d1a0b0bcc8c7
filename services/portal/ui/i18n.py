"""Korean (default) and English: one small catalogue, looked up by key. A missing Korean text falls back to
English, a missing key to the key itself, so a gap shows up on the page rather than as an error."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

LANGS = ("ko", "en")
DEFAULT_LANG = "ko"

#: The catalogue's tables (messages.toml): key -> [Korean, English].
_CATALOGUE = tomllib.loads((Path(__file__).parent / "messages.toml").read_text(encoding="utf-8"))


def _table(name: str) -> dict[str, tuple[str, str]]:
    return {key: (ko, en) for key, (ko, en) in _CATALOGUE[name].items()}


#: The pages' texts, by key.
MESSAGES = _table("messages")
#: Labels of codes the data carries: lifecycle event types, states, roles, ministries, regions, columns.
LABELS = _table("labels")
#: Column headings of the dashboard tables (CSV headers keep the keys).
COLUMNS = _table("columns")


def pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "ko" and pair[0] else pair[1]


def translator(lang: str) -> Callable[..., str]:
    """t(key, **values): the message in `lang` with `{name}` placeholders filled in."""

    def t(key: str, **values: Any) -> str:
        pair = MESSAGES.get(key)
        text = pick(pair, lang) if pair else key
        return text.format(**values) if values else text

    return t


def labeller(lang: str) -> Callable[[Any], str]:
    """label(code): a readable name for a code the data carries (unknown codes are shown as they are)."""

    def label(code: Any) -> str:
        if code is None or code == "":
            return "—"
        pair = LABELS.get(str(code))
        return pick(pair, lang) if pair else str(code)

    return label


def column(key: str, lang: str) -> str:
    pair = COLUMNS.get(key)
    return pick(pair, lang) if pair else key


def normalise(lang: str | None) -> str:
    return lang if lang in LANGS else DEFAULT_LANG
