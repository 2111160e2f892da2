"""Monolingual text: plain text `NAME.xx.txt` (one document per line, language in the name) or JSONL
`{"lang": ..., "text": ...}`. A parallel corpus can also serve as monolingual text of each language."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from syncmod.data.lines import Problems, is_lang_code, read_json_lines, read_lines


def lang_of_text_file(path: Path) -> str | None:
    """`train.en.txt` -> `en`; None when the name carries no language."""
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    parts = name.split(".")
    return parts[-2] if len(parts) >= 3 and is_lang_code(parts[-2]) else None


def read_mono(path: str | Path, problems: Problems, lang: str | None = None) -> Iterator[tuple[str, str]]:
    """Yield (lang, document). `lang` names the language of a plain-text file whose name does not."""
    path = Path(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".jsonl"):
        for where, obj in read_json_lines(path, problems):
            code, text = obj.get("lang"), obj.get("text")
            if not isinstance(code, str) or not is_lang_code(code):
                problems.add(where, f"'lang' must be a language code, got {code!r}", 'add "lang": "en" or similar')
            elif not isinstance(text, str) or not text.strip():
                problems.add(where, "'text' is missing or empty", 'add "text": "..."')
            else:
                yield code, text
        return
    code = lang or lang_of_text_file(path)
    if code is None:
        problems.add(str(path), "cannot tell the language of this text file",
                     "name it NAME.xx.txt (xx = language code) or pass --lang")
        return
    if not is_lang_code(code):
        problems.add(str(path), f"unknown language code format {code!r}", "use codes like en, de, pt-BR")
        return
    for line in read_lines(path, problems):
        if line.text.strip():
            yield code, line.text
