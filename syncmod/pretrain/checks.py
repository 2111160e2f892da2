"""Start-up checks of a pre-training config: every mistake a user can make, as one clear line, before
any model is built (DESIGN §5: errors say what, where, and how to fix)."""

from __future__ import annotations

import json
from pathlib import Path

from syncmod.config import one_of, require
from syncmod.data.shards import Shards, pair_graph, parallel_languages
from syncmod.errors import InputError
from syncmod.pretrain.config import PretrainConfig
from syncmod.pretrain.model import PRESETS
from syncmod.pretrain.objectives import OBJECTIVES
from syncmod.pretrain.objectives.losses import LOSSES
from syncmod.pretrain.sync_points import KINDS


def check_fields(cfg: PretrainConfig) -> None:
    """Choices from the registries and checks across sections; `PretrainConfig.__post_init__` runs them, so
    a YAML or command-line mistake names its line or option (Literal choices and ranges: the dataclasses)."""
    one_of("sync.objective", cfg.sync.objective, [*OBJECTIVES, "none"])
    require(cfg.sync.objective != "clm", "sync.objective", "'clm' runs on asynchronous steps", "use 'none' for clm-only")
    one_of("sync.loss", cfg.sync.loss, LOSSES)
    one_of("sync.kind", cfg.sync.kind, KINDS)
    one_of("model.preset", cfg.model.preset, PRESETS)
    layers = cfg.model.dims()[0]
    for layer in cfg.sync.resolved_layers(layers):
        require(1 <= layer <= layers, "sync.layers", f"sync layer {layer} is out of range for a {layers}-layer base",
                f"use layers between 1 and {layers}")
    hidden = cfg.model.dims()[1]
    require(not cfg.sync.dims or cfg.sync.dims <= hidden, "sync.dims", f"{cfg.sync.dims} is above the hidden size {hidden}",
            f"sync at most {hidden} coordinates")
    require(cfg.train.seq_len <= cfg.model.max_seq_len, "train.seq_len",
            f"{cfg.train.seq_len} is above model.max_seq_len {cfg.model.max_seq_len}",
            "lower train.seq_len or raise model.max_seq_len")


def check_config(cfg: PretrainConfig, world_size: int) -> None:
    check_fields(cfg)
    if cfg.model.init_from:
        from syncmod.pretrain.init_from import check

        check(cfg)
    t = cfg.train
    micro = t.micro_batch(world_size)
    if micro < 1 or t.batch_size % (micro * world_size):
        raise InputError.at("train.batch_size", f"global batch {t.batch_size} is not a multiple of micro batch "
                            f"{micro} x world size {world_size}",
                            "make batch_size = micro_batch_size x ranks x accumulation steps")


def check_data(cfg: PretrainConfig) -> tuple[dict, dict]:
    """Both shard metas (train, valid); errors when the data cannot serve this config."""
    root = Path(cfg.data.root)
    metas = []
    for part in ("tokenizer/tokenizer_config.json", "train/meta.json", "valid/meta.json"):
        if not (root / part).exists():
            raise InputError.at(str(root / part), "missing prepared data",
                                "run `syncmod data prepare --world DIR --out ROOT` (or with corpora) first")
    for part in ("train", "valid"):
        metas.append(Shards.open(root / part).meta)  # also checks every shard file's size against its index
    train, valid = metas
    if cfg.model.init_from:
        from syncmod.pretrain.init_from import check_tokenizer

        check_tokenizer(cfg)
    langs = languages(cfg, train)
    if cfg.sync.objective != "none":
        # every language must be paired with another chosen one by some corpus (N-way, or pairwise en-xx)
        have = {lang for pair in pair_graph(train) if set(pair) <= set(langs) for lang in pair}
        if len(langs) < 2 or not set(langs) <= have:
            raise InputError.at("data.languages", f"synchronous steps need parallel data in {langs}, "
                                f"the shards have {sorted(have)}", "prepare parallel data, or set sync.objective=none")
    if "A" in cfg.schedule.pattern or cfg.sync.objective == "none":
        missing = [lang for lang in langs if lang not in train["mono"]]
        if missing:
            raise InputError.at("data.root", f"no monolingual training text for {missing}",
                                "add monolingual corpora, or set schedule.pattern=S")
    if cfg.sync.pivot and cfg.sync.pivot not in langs:
        raise InputError.at("sync.pivot", f"pivot {cfg.sync.pivot!r} is not a training language {langs}", "pick one")
    return train, valid


def languages(cfg: PretrainConfig, train_meta: dict) -> list[str]:
    available = parallel_languages(train_meta) or sorted(train_meta["mono"])
    if cfg.data.languages:
        unknown = [lang for lang in cfg.data.languages if lang not in available and lang not in train_meta["mono"]]
        if unknown:
            raise InputError.at("data.languages", f"{unknown} not in the prepared data ({available})",
                                "choose languages the data has")
        return list(cfg.data.languages)
    return list(available)


def resolve_deepspeed(cfg: PretrainConfig, world_size: int, bf16: bool) -> dict:
    """The DeepSpeed config dict: from `train.deepspeed` JSON if given ("auto" filled in), else built."""
    t = cfg.train
    values = {"train_batch_size": t.batch_size, "train_micro_batch_size_per_gpu": t.micro_batch(world_size),
              "gradient_accumulation_steps": t.accumulation(world_size),
              "gradient_clipping": t.grad_clip, "zero_optimization.stage": t.zero_stage, "bf16.enabled": bf16}
    ds: dict = {"zero_allow_untested_optimizer": True, "steps_per_print": 10**9, "wall_clock_breakdown": False}
    where = "train"
    if t.deepspeed:
        where = t.deepspeed
        try:
            ds = {**ds, **json.loads(Path(t.deepspeed).read_text())}
        except FileNotFoundError as e:
            raise InputError.at(t.deepspeed, "DeepSpeed config not found", "check --deepspeed") from e
        except json.JSONDecodeError as e:
            raise InputError.at(f"{t.deepspeed}:{e.lineno}", f"invalid JSON: {e.msg}", "fix the file") from e
        for key in ("optimizer", "scheduler"):
            if key in ds:
                raise InputError.at(t.deepspeed, f"has an '{key}' section; syncmod passes its own AdamW and schedule",
                                    f"remove '{key}' and set train.lr / train.warmup_steps")
    for dotted, value in values.items():
        node, *rest = dotted.split(".")
        if rest:
            sub = ds.setdefault(node, {})
            if sub.get(rest[0], "auto") == "auto":
                sub[rest[0]] = value
        elif ds.get(node, "auto") == "auto":
            ds[node] = value
    unresolved = [k for k, v in _walk(ds) if v == "auto"]
    if unresolved:
        raise InputError.at(where, f"unresolved \"auto\" value for {unresolved[0]}", "give a number in the JSON")
    if ds["train_batch_size"] != ds["train_micro_batch_size_per_gpu"] * ds["gradient_accumulation_steps"] * world_size:
        raise InputError.at(where, f"train_batch_size {ds['train_batch_size']} != micro "
                            f"{ds['train_micro_batch_size_per_gpu']} x accumulation {ds['gradient_accumulation_steps']} "
                            f"x world size {world_size}", "make the batch sizes consistent")
    return ds


def _walk(d: dict, prefix: str = ""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _walk(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v
