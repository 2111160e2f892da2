"""The `multi-task-tuned` cell: the multi-task merge with its knobs (lambda; density for ties / dare-*) chosen
on the DEV split, then scored on test — the numbers of the chosen merge are test numbers the choice never saw.

For each module type of `merge_types` and each method, every (density, lambda) of the grid is merged (one merge
per task: the same body, each task's head), both tasks are scored on their dev items, and the knobs whose
smaller kept fraction (chance-corrected merged / single-task module, on dev) is largest are kept: the goal is
every task kept, not the mean.
"""

from __future__ import annotations

from syncmod.study import algebra_stats as A


def grid(method: str, lams: list[float], densities: list[float]) -> list[tuple[float, float]]:
    """(density, lambda) pairs tried for `method`: densities only where the method sparsifies."""
    from syncmod.algebra.merge import get_method

    sparse = get_method(method).sparsify is not None
    return [(d, lam) for d in (densities if sparse else [1.0]) for lam in lams]


def choose(kept: dict[tuple[float, float], list[float]]) -> tuple[float, float]:
    """The knobs with the largest smallest kept fraction over the tasks (ties: the first in grid order)."""
    return max(kept, key=lambda k: min(kept[k]))


def multi_task_tuned(ctx) -> list[dict]:
    from syncmod.study import algebra_cells as C

    cfg, src, out = ctx.cfg, ctx.where.cfg.source, []
    for mtype in C._merge_types(cfg):
        mods = C._task_modules(ctx, mtype)
        single = {t: {s: C.items(ctx, t, m, src, split=s) for s in ("dev", "test")} for t, m in mods.items()}
        for method in cfg.methods:
            kept: dict[tuple[float, float], list[float]] = {}
            for knobs in grid(method, cfg.lams, cfg.densities):
                kept[knobs] = []
                for task in mods:
                    got = C.items(ctx, task, _merge(ctx, C, mtype, method, task, mods, knobs), src, split="dev")
                    kept[knobs].append(A.ratio(got, single[task]["dev"], C.chance(ctx, task))["value"])
            best = choose(kept)
            for task in mods:
                c = C.chance(ctx, task)
                got = C.items(ctx, task, _merge(ctx, C, mtype, method, task, mods, best), src)
                out.append({"module": mtype, "method": method, "task": task, "density": best[0], "lambda": best[1],
                            "tried": len(kept), "dev_kept_min": min(kept[best]), "merged": A.score(got, c),
                            "single": A.score(single[task]["test"], c), "kept": A.ratio(got, single[task]["test"], c)})
    return out


def _merge(ctx, C, mtype: str, method: str, task: str, mods: dict[str, str], knobs: tuple[float, float]) -> str:
    density, lam = knobs
    name = f"tuned/{C._tag(mtype)}multi-task-{method}-d{density:g}-l{lam:g}-head-{task}"
    return C.merged(ctx, name, [(d, 1.0) for d in mods.values()], method, head_from=mods[task], knobs=knobs)


def table(rows: list[dict]) -> str:
    out = ["## Multi-task merge, knobs chosen on dev (largest smallest kept fraction), scored on test\n",
           "| condition | module | method | density | λ | dev: smaller kept | task | merged | single-task module "
           "| kept (merged / single) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        dens = "-" if r["density"] == 1.0 and not _sparse(r["method"]) else f"{r['density']:g}"
        out.append(f"| {r['condition']} | {r['module']} | {r['method']} | {dens} | {r['lambda']:g} "
                   f"| {r['dev_kept_min']:.2f} | {r['task']} | {A.fmt(r['merged'])} ({r['merged']['raw']:.3f}) "
                   f"| {A.fmt(r['single'])} ({r['single']['raw']:.3f}) | {A.fmt(r['kept'])} |")
    return "\n".join(out) + "\n"


def _sparse(method: str) -> bool:
    from syncmod.algebra.merge import get_method

    return get_method(method).sparsify is not None

