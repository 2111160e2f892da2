"""Mapped transfer inside a study: the source-language module of a type, moved onto every target base by maps
fitted on parallel unlabelled text (`syncmod.modules.mapping`), each mapped module scored on its own target.

The cell it returns is the plain evaluation with the source module's target scores replaced by the mapped
modules' scores (natives and floors unchanged), so the report reads it like any module type, as `<type>-mapped`.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from syncmod.io import write_json


def mapped_results(where, bases, task, task_dir: Path, res: dict, source_module: str, mtype: str, edir: Path) -> dict:
    """The evaluation `res` of `mtype` with its source module's target cells scored after mapped transfer."""
    from syncmod.evaluation.transfer import transfer_matrix
    from syncmod.modules.mapping import TransferConfig, map_module

    cfg = where.cfg
    done = edir / "mapped-results.json"
    if done.exists():
        return json.loads(done.read_text())
    from syncmod.errors import InputError

    worlds = [where.world / "parallel" / "valid.jsonl", task_dir.parent.parent / "parallel" / "valid.jsonl"]
    parallel = cfg.mapped_parallel or next((str(p) for p in worlds if p.exists()), None)
    if parallel is None:
        raise InputError.at("mapped_parallel", "no parallel text to fit the maps on", "give mapped_parallel: FILE")
    out = copy.deepcopy(res)
    src = next(m for m in out["modules"] if m["lang"] == cfg.source)
    fits = {}
    for t in [x for x in cfg.langs if x != cfg.source]:
        mdir = Path(source_module).parent / f"{mtype}-mapped-{t}"
        if not (mdir / "card.json").exists():
            map_module(TransferConfig(module=source_module, base=str(bases.root), lang=t, parallel=str(parallel),
                                      out=str(mdir), units=500))
        cell = transfer_matrix(bases, task, [str(mdir)], [t], max_items=cfg.max_items)
        src["scores"][t] = cell["modules"][0]["scores"][t]
        fits[t] = json.loads((mdir / "card.json").read_text())["mapped"]["sites"]
    out["mapped"] = fits
    write_json(done, out)
    return out
