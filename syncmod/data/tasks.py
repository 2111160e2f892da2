"""Task data: JSONL `{"id", "lang", "input", "target"}` (generate) or `{"id", "lang", "text", "label"}`
(classify). A task directory holds `task.json` (name, kind, labels) and `{split}.{lang}.jsonl` files;
test sets are parallel: every language has the same ids."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from syncmod.data.lines import Problems, is_lang_code, read_json_lines

SPLITS = ("train", "dev", "test")
FIELDS = {"generate": ("input", "target"), "classify": ("text", "label")}


@dataclass(frozen=True)
class TaskExample:
    id: str
    lang: str
    text: str  # the input (generate) or the text (classify)
    target: str  # the answer (generate) or the label (classify)


@dataclass
class Task:
    """A task directory, loaded and checked: examples by split and language."""

    name: str
    kind: str
    labels: list[str] | None
    data: dict[str, dict[str, list[TaskExample]]]  # split -> lang -> examples

    @property
    def languages(self) -> list[str]:
        return sorted({lang for split in self.data.values() for lang in split})

    def split(self, split: str, lang: str) -> list[TaskExample]:
        return self.data.get(split, {}).get(lang, [])


def kind_of_row(obj: dict) -> str | None:
    for kind, (a, b) in FIELDS.items():
        if a in obj and b in obj:
            return kind
    return None


def read_task_file(path: Path, problems: Problems, kind: str | None = None,
                   labels: list[str] | None = None) -> list[TaskExample]:
    """Read one task JSONL; checks fields, language codes, labels and duplicate ids per language."""
    out: list[TaskExample] = []
    seen: dict[str, set[str]] = defaultdict(set)
    for where, obj in read_json_lines(path, problems):
        row_kind = kind or kind_of_row(obj)
        if row_kind is None:
            problems.add(where, "not a task example" + ("" if out else f" (keys {sorted(obj)[:6]}): not a task file"),
                         'use {"id","lang","input","target"} or {"id","lang","text","label"}')
            if not out:  # the first line already says this is other data: one line, not one per line
                return out
            continue
        kind = row_kind
        a, b = FIELDS[kind]
        missing = [k for k in ("id", "lang", a, b) if k not in obj]
        if missing:
            problems.add(where, f"missing field {missing[0]!r} for a {kind} task", f"give id, lang, {a}, {b}")
            continue
        ident, lang = str(obj["id"]), obj["lang"]
        if not isinstance(lang, str) or not is_lang_code(lang):
            problems.add(where, f"unknown language code format {lang!r}", "use codes like en, de, pt-BR")
            continue
        wrong = next((k for k in (a, b) if not isinstance(obj[k], str)), None)
        if wrong is not None:
            # a label 1 beside labels "1" would be a second class: every text and label is a JSON string
            problems.add(where, f"{wrong!r} is {json.dumps(obj[wrong])}, not a string",
                         f'write it as a JSON string, e.g. "{wrong}": {json.dumps(str(obj[wrong]))}')
            continue
        if labels is not None and kind == "classify" and obj[b] not in labels:
            problems.add(where, f"label {obj[b]!r} is not in the label set {labels}",
                         "fix the label or add it to task.json 'labels'")
            continue
        if ident in seen[lang]:
            problems.add(where, f"duplicate id {ident!r} in language {lang!r}", "give every example its own id")
            continue
        seen[lang].add(ident)
        out.append(TaskExample(ident, lang, str(obj[a]), str(obj[b])))
    return out


def load_task(path: str | Path, problems: Problems) -> Task | None:
    """Load a task directory (or one task JSONL file) and check it as a whole."""
    path = Path(path)
    if not path.exists():
        problems.add(str(path), "does not exist", "give a task directory (task.json + SPLIT.LANG.jsonl)")
        return None
    if path.is_file():
        rows = read_task_file(path, problems)
        kind = "classify" if rows and path.exists() and _is_classify(path) else "generate"
        data: dict[str, dict[str, list[TaskExample]]] = {"test": defaultdict(list)}
        for r in rows:
            data["test"][r.lang].append(r)
        return Task(path.stem, kind, sorted({r.target for r in rows}) if kind == "classify" else None, data)
    card_path = path / "task.json"
    if not card_path.exists():
        problems.add(str(path), "not a task directory: task.json is missing",
                     'add task.json with {"name": ..., "kind": "generate"|"classify", "labels": [...]}')
        return None
    card = read_task_card(card_path, problems)
    if card is None:
        return None
    kind, labels = card["kind"], card.get("labels")
    data = defaultdict(dict)
    for f in sorted(path.glob("*.jsonl")):
        parts = f.name.split(".")
        if len(parts) != 3 or parts[0] not in SPLITS:
            problems.add(str(f), "task files are named SPLIT.LANG.jsonl", f"rename to e.g. test.en.jsonl; splits: {SPLITS}")
            continue
        split, lang = parts[0], parts[1]
        rows = read_task_file(f, problems, kind, labels)
        wrong = next((r for r in rows if r.lang != lang), None)
        if wrong:
            problems.add(str(f), f"example {wrong.id!r} has lang {wrong.lang!r} in a file for {lang!r}",
                         "put each language in its own file")
            continue
        data[split][lang] = rows
    _check_parallel_ids(path, data.get("test", {}), problems)
    if not data:
        problems.add(str(path), "task directory has no example files",
                     f"add files named SPLIT.LANG.jsonl, e.g. test.en.jsonl; splits: {', '.join(SPLITS)}")
    return Task(card.get("name", path.name), kind, labels, dict(data))


def read_task_card(path: Path, problems: Problems) -> dict | None:
    """task.json: {"name": str, "kind": "generate"|"classify", "labels": [str, ...] (classify)}."""
    try:
        card = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        problems.add(str(path), f"invalid UTF-8 at byte {e.start}", "re-encode task.json as UTF-8")
        return None
    except json.JSONDecodeError as e:
        problems.add(f"{path}:{e.lineno}", f"invalid JSON: {e.msg} at column {e.colno}", "write task.json as valid JSON")
        return None
    except OSError as e:
        problems.add(str(path), f"cannot read: {e.strerror}", "check the file")
        return None
    where = f"{path}:1"
    if not isinstance(card, dict):
        problems.add(where, f"task card must be a JSON object, got {type(card).__name__}",
                     'write {"name": ..., "kind": ..., "labels": [...]}')
        return None
    if card.get("kind") not in FIELDS:
        problems.add(where, f"'kind' must be 'generate' or 'classify', got {card.get('kind')!r}", "fix 'kind'")
        return None
    if not isinstance(card.get("name", ""), str):
        problems.add(where, f"'name' must be a string, got {card['name']!r}", "fix 'name'")
        return None
    labels = card.get("labels")
    if card["kind"] == "classify":
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            problems.add(where, f"a classify task needs 'labels': a list of two or more strings, got {labels!r}",
                         'list the label set in task.json, e.g. "labels": ["yes", "no"]')
            return None
        if len(set(labels)) != len(labels):
            problems.add(where, f"'labels' repeats a label: {labels}", "list each label once")
            return None
    return card


def _is_classify(path: Path) -> bool:
    from syncmod.data.lines import first_json

    obj = first_json(path)
    return obj is not None and kind_of_row(obj) == "classify"


def _check_parallel_ids(path: Path, test: dict[str, list[TaskExample]], problems: Problems) -> None:
    """Every language is scored on the same items: the test ids must match across languages."""
    if len(test) < 2:
        return
    langs = sorted(test)
    ref_lang = "en" if "en" in test else langs[0]
    ref = {r.id for r in test[ref_lang]}
    for lang in langs:
        ids = {r.id for r in test[lang]}
        if ids != ref:
            extra = sorted(ids - ref)[:3]
            lost = sorted(ref - ids)[:3]
            problems.add(str(path / f"test.{lang}.jsonl"),
                         f"test ids differ from {ref_lang}: {len(ids - ref)} extra {extra}, {len(ref - ids)} missing {lost}",
                         "test sets must be parallel: the same ids in every language")
