"""The study's numbers per language (a section of report.md and `per_language` in report.json): for every
condition, task and module type, each language's held-out retrieval at the synced layer against the source
language (its pairwise corpus, or the N-way group that holds both), its ΔBPB against the reference condition at
equal training tokens, and — for the target languages — the source module's transfer ratio and retained
fraction, chance-corrected first (DESIGN §3). Means over seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from syncmod.study.stats import bpb_curve, delta_bpb


def per_language(cells: list[dict], cfg, out: Path) -> list[dict]:
    """One row per (condition, task, module, language), averaged over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        for lang in cfg.langs:
            groups.setdefault((c["condition"], c["task"], c["module"], lang), []).append(_one(c, lang, cfg, out))
    rows = []
    for (cond, task, module, lang), vals in groups.items():
        row = {"condition": cond, "task": task, "module": module, "lang": lang}
        for key in sorted({k for v in vals for k in v}):
            xs = [v[key] for v in vals if v.get(key) is not None]
            row[key] = xs[0] if xs and isinstance(xs[0], str) else (float(np.mean(xs)) if xs else None)
        rows.append(row)
    return rows


def _one(cell: dict, lang: str, cfg, out: Path) -> dict:
    """The numbers of `lang` in one cell (one seed)."""
    res, lm = cell["results"], cell["lm"]
    layer = (res.get("sync_layers") or [None])[0]
    got: dict = {}
    if layer is not None and lang != cfg.source:
        key = _retrieval_key(lm, layer, cfg.source, lang)
        if key:
            got["retrieval"], got["retrieval_chance"] = lm[key], lm.get(key.replace(f"top1_layer{layer}", "chance"))
            got["retrieval_group"] = key.rsplit("/", 1)[-1] if key.count("/") > 1 else "all"
    run = out / "pretrain" / f"{cell['condition']}-s{cell['seed']}" / "metrics.jsonl"
    ref = out / "pretrain" / f"{cfg.reference}-s{cell['seed']}" / "metrics.jsonl"
    if run.exists() and ref.exists():
        got["delta_bpb"], _ = delta_bpb(bpb_curve(run, [lang]), bpb_curve(ref, [lang]))
    src = next(m for m in res["modules"] if m["lang"] == cfg.source)
    got["score"] = src["scores"][lang]["score"]
    native = next((m for m in res["modules"] if m["lang"] == lang), None)
    if native is not None:
        got["native"] = native["scores"][lang]["score"]
    if lang != cfg.source:
        for key in ("transfer_ratio_chance", "transfer_ratio", "retained_chance", "retained"):
            got[key] = (src.get(key) or {}).get(lang)
    return got


def _retrieval_key(lm: dict, layer: int, a: str, b: str) -> str | None:
    """The final evaluation's retrieval key for the pair (a, b): its own pairwise group if there is one, else
    the smallest N-way group holding both, else the run's single group."""
    prefix = f"retrieval/top1_layer{layer}"
    found = sorted((k for k in lm if k.startswith(prefix + "/") and {a, b} <= set(k.rsplit("/", 1)[-1].split("-"))),
                   key=lambda k: len(k.rsplit("/", 1)[-1].split("-")))
    return found[0] if found else (prefix if prefix in lm else None)


def markdown(rows: list[dict], cfg) -> list[str]:
    """The per-language section of report.md."""
    if not rows:
        return []
    f = _fmt
    lines = ["## Per language", "",
             f"Retrieval: held-out top-1 at the synced layer against `{cfg.source}` (its pairwise corpus, or the "
             "N-way group holding both — then the group's mean over its pairs) / chance. ΔBPB: the language's bits "
             f"per byte minus `{cfg.reference}`'s at equal training tokens. Transfer and retained: of the "
             f"`{cfg.source}` module, **chance-corrected** / raw.", ""]
    for task in sorted({r["task"] for r in rows}):
        lines += [f"### {task}", "", "| condition | module | lang | retrieval (group) / chance | ΔBPB | score | native | "
                  "transfer ratio | retained |", "|---|---|---|---|---|---|---|---|---|"]
        for r in sorted((r for r in rows if r["task"] == task), key=lambda r: (r["module"], r["lang"], r["condition"])):
            retr = (f"{f(r.get('retrieval'), 2)} ({r.get('retrieval_group', '')}) / {f(r.get('retrieval_chance'), 3)}"
                    if r.get("retrieval") is not None else "-")
            lines.append(f"| {r['condition']} | {r['module']} | {r['lang']} | {retr} | {f(r.get('delta_bpb'), 4, True)} | "
                         f"{f(r.get('score'))} | {f(r.get('native'))} | **{f(r.get('transfer_ratio_chance'), 2)}** / "
                         f"{f(r.get('transfer_ratio'), 2)} | **{f(r.get('retained_chance'), 2)}** / {f(r.get('retained'), 2)} |")
        lines.append("")
    return lines


def _fmt(v, digits: int = 3, sign: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"
