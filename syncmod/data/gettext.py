"""Import gettext catalogs (`.po` / `.mo`) as en-XX parallel JSONL: human-translated UI strings that
every Linux machine carries (e.g. /usr/share/locale). Read with `polib`; no second parser here."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from syncmod.data.lines import is_lang_code
from syncmod.errors import InputError
from syncmod.io import write_jsonl

log = logging.getLogger(__name__)
_ACCEL = re.compile(r"(?<![_&~])[_&~](?=[^\W_])")  # menu accelerators: _File, ö_ffnen, &Open, ~Save


def strip_accelerators(src: str, tgt: str) -> tuple[str, str]:
    """Remove one accelerator marker from each side when both sides carry exactly one of the same kind
    (so identifiers such as `file_name` or entities such as `&amp;` on one side only are left alone)."""
    ms, mt = list(_ACCEL.finditer(src)), list(_ACCEL.finditer(tgt))
    if len(ms) == 1 and len(mt) == 1 and ms[0].group() == mt[0].group() and not re.search(r"&\w+;", src + tgt):
        return src[:ms[0].start()] + src[ms[0].end():], tgt[:mt[0].start()] + tgt[mt[0].end():]
    return src, tgt


def catalog_language(path: Path) -> str | None:
    """`.../de_DE/LC_MESSAGES/x.mo` -> `de`; `po/de.po` -> `de`; None when neither names a language."""
    name = path.parent.parent.name if path.parent.name == "LC_MESSAGES" else path.stem
    if "@" in name or "." in name:  # variants (sr@latin) and legacy charset copies are skipped
        return None
    code = name.split("_")[0].lower()
    return code if is_lang_code(code) else None


def _entries(path: Path) -> Iterator[tuple[str, str]]:
    import polib

    try:
        cat = polib.mofile(str(path)) if path.suffix == ".mo" else polib.pofile(str(path))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        log.warning("skipping %s: %s", path, e)
        return
    for e in cat:
        if e.obsolete or "fuzzy" in e.flags:
            continue
        src = e.msgid
        tgt = e.msgstr or (e.msgstr_plural.get(0) if e.msgstr_plural else "")
        if src and tgt:
            yield src, tgt


def import_gettext(roots: list[str | Path], lang: str, out: str | Path, source_lang: str = "en") -> int:
    """Pairs (msgid, msgstr) of every catalog in `lang` under `roots`, deduplicated by msgid."""
    if not is_lang_code(lang):
        raise InputError.at("--lang", f"unknown language code format {lang!r}", "use e.g. de, fr, pt")
    files = sorted(p for root in roots for p in Path(root).rglob("*") if p.suffix in (".po", ".mo"))
    files = [p for p in files if catalog_language(p) == lang]
    if not files:
        raise InputError.at(str(roots[0]), f"no .po/.mo catalogs for language {lang!r}",
                            "point at a locale directory such as /usr/share/locale")
    seen: set[str] = set()

    def rows() -> Iterator[dict]:
        for p in files:
            domain = p.stem if p.parent.name == "LC_MESSAGES" else p.parent.name
            for src, tgt in _entries(p):
                src_c, tgt_c = (x.strip() for x in strip_accelerators(src, tgt))
                if src_c in seen or not src_c or not tgt_c or src_c == tgt_c or not re.search(r"[^\W\d_]", src_c):
                    continue
                seen.add(src_c)
                yield {source_lang: src_c, lang: tgt_c, "source": domain}

    n = write_jsonl(out, rows())
    log.info("imported %d %s-%s pairs from %d catalogs -> %s", n, source_lang, lang, len(files), out)
    return n
