"""`syncmod demo` (= `make demo`): a small study on the synthetic world, end to end, on a laptop CPU.

world -> tokenizer + shards -> per-language bases pre-trained with `sync` and, as the control, `independent`
(never synchronised) -> an adapter module for `event-class` at the sync layer, trained in every language ->
every module evaluated on every language's base -> the headline table: per condition, the source score, the
target scores, the transfer ratio, the cross-base retained fraction, and the LM cost of syncing (ΔBPB).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """The demo study. Defaults finish in about ten minutes on a 2-core CPU."""

    out: str = "runs/demo"
    """Everything goes here (world, data, bases, modules, evaluations, report)."""
    seed: int = 0
    """Seed of the world and of every run."""
    steps: int = 800
    """Pre-training steps of the sync condition."""
    pattern: str = "SSSA"
    """Step pattern of the sync condition (S synchronous, A asynchronous)."""
    lam: float = 4.0
    """λ of the sync loss."""
    hidden: int = 128
    """Hidden size of the 4-layer bases (the `small` preset has 256)."""
    lr: float = 3e-3
    """Pre-training learning rate."""
    module: str = "adapter"
    """Module type trained in every language."""
    finetune_steps: int = 200
    """Module training steps."""


def run(cfg: DemoConfig) -> dict:
    from syncmod.bases import open_bases
    from syncmod.data.lines import Problems
    from syncmod.data.prepare import prepare
    from syncmod.data.synth.world import WorldConfig, generate
    from syncmod.data.tasks import load_task
    from syncmod.engine import train
    from syncmod.evaluation import report
    from syncmod.evaluation.transfer import transfer_matrix
    from syncmod.finetune import FinetuneConfig, finetune
    from syncmod.modules.base import ModuleConfig
    from syncmod.train_config import PretrainConfig

    out = Path(cfg.out)
    t0 = time.perf_counter()
    world = out / "world"
    if not (world / "world.json").exists():
        generate(WorldConfig(seed=cfg.seed), world)
    data = out / "data"
    if not (data / "valid" / "meta.json").exists():
        prepare(data, [str(world / "parallel/train.jsonl")], sorted(str(p) for p in (world / "mono").glob("train.*.txt")),
                [str(world / "parallel/valid.jsonl")], sorted(str(p) for p in (world / "mono").glob("valid.*.txt")),
                vocab_size=2000)
    langs = ["en", "xa", "xb", "xc"]
    n_async = sum(c == "A" for c in (cfg.pattern * cfg.steps)[: cfg.steps])
    conditions = {"sync": ("sync", cfg.steps), "independent": ("none", max(1, n_async))}
    final, tables = {}, {}
    for name, (objective, steps) in conditions.items():
        pc = PretrainConfig(out=str(out / "pretrain" / name))
        pc.data.root = str(data)
        pc.model.preset, pc.model.hidden = "small", cfg.hidden
        pc.sync.objective, pc.sync.lam = objective, cfg.lam
        pc.schedule.pattern = cfg.pattern
        pc.train.steps, pc.train.lr, pc.train.seed, pc.train.warmup_steps = steps, cfg.lr, cfg.seed, 40
        pc.eval.every, pc.checkpoint.every = 0, 0
        pc.tracking.experiment = "syncmod-demo"
        if not (Path(pc.out) / "export" / "bases.json").exists():
            log.info("pre-training %s (%d steps)", name, steps)
            final[name] = train(pc)
        else:
            final[name] = _last_eval(Path(pc.out))
        bases = Path(pc.out) / "export"
        modules = []
        for lang in langs:
            fc = FinetuneConfig(out=str(out / "modules" / name / f"{cfg.module}-{lang}"), base=str(bases),
                                task=str(world / "tasks/event-class"), lang=lang, module=ModuleConfig(type=cfg.module))
            fc.train.steps, fc.train.seed, fc.module.rank = cfg.finetune_steps, cfg.seed, 32
            fc.tracking.experiment = "syncmod-demo"
            if not (Path(fc.out) / "card.json").exists():
                finetune(fc)
            modules.append(fc.out)
        task = load_task(world / "tasks/event-class", Problems())
        results = transfer_matrix(open_bases(str(bases)), task, modules, langs)
        report.write(results, out / "eval" / name)
        tables[name] = results
    summary = headline(tables, final, langs)
    (out / "report.md").write_text(summary["markdown"])
    (out / "report.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "markdown"}, indent=2))
    summary["seconds"] = time.perf_counter() - t0
    return summary


def _last_eval(out: Path) -> dict:
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return next(r for r in reversed(rows) if r["kind"] == "eval")


def headline(tables: dict, final: dict, langs: list[str]) -> dict:
    rows = {}
    ref_bpb = np.mean([final["independent"][f"bpb/{t}"] for t in langs])
    for name, res in tables.items():
        en = next(m for m in res["modules"] if m["lang"] == "en")
        targets = [t for t in langs if t != "en"]
        layer = (res.get("sync_layers") or [2])[0]
        rows[name] = {"source": en["scores"]["en"]["score"],
                      "targets": {t: en["scores"][t]["score"] for t in targets},
                      "transfer_ratio": float(np.mean([en["transfer_ratio"][t] for t in targets])),
                      "retained": float(np.mean([en["retained"][t] for t in targets if t in en["retained"]])),
                      "delta_bpb": float(np.mean([final[name][f"bpb/{t}"] for t in langs]) - ref_bpb),
                      "retrieval_sync_layer": final[name].get(f"retrieval/top1_layer{layer}"),
                      "floor": float(np.mean([res["floor"][t]["score"] for t in langs]))}
    lines = ["| condition | source (en) | " + " | ".join(f"en→{t}" for t in langs[1:]) +
             " | transfer ratio | retained | ΔBPB vs independent | retrieval@sync layer |",
             "|---|---|" + "---|" * (len(langs) - 1) + "---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['source']:.3f} | " + " | ".join(f"{r['targets'][t]:.3f}" for t in langs[1:]) +
                     f" | {r['transfer_ratio']:.2f} | {r['retained']:.2f} | {r['delta_bpb']:+.4f} | "
                     f"{r['retrieval_sync_layer'] if r['retrieval_sync_layer'] is not None else float('nan'):.3f} |")
    md = ("### syncmod demo: event-class adapter modules trained in en, moved to every other language's base\n\n"
          + "\n".join(lines) + "\n\nChance is 0.20 (5 labels). Retained = score on the target base / score of the "
          "same module type trained natively there.\n")
    return {"rows": rows, "markdown": md}


def main(argv: list[str]) -> int:
    from syncmod.config import parse

    cfg, _ = parse(DemoConfig, argv, "syncmod demo")
    summary = run(cfg)
    print(summary["markdown"])
    print(f"demo finished in {summary['seconds'] / 60:.1f} min; report: {Path(cfg.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    from syncmod.cli import main as cli_main

    sys.exit(cli_main(["demo", *sys.argv[1:]]))
