"""Where the bases live: `model.placement`.

- `colocated`: every base on every rank, in one DeepSpeed engine; data-parallel over the whole world.
- `language-parallel` (per-language bases): the world is split into one rank group per language, ranks
  `l*k .. l*k+k-1` for language l (k = world size / languages, so on a multi-node hostfile a language's group
  sits on one node when k divides the GPUs per node). A group holds only its base and trains it data-parallel
  inside the group: DeepSpeed gets an `mpu` whose data-parallel group is the language group (gradients are
  averaged and ZeRO shards inside it) and whose model-parallel group is the ranks of the same position in every
  group (the gradient norm for clipping sums over it, so every base is clipped by the norm of all bases, as
  colocated). Asynchronous steps: each group trains on its own language. Synchronous steps: each group runs
  its side of the parallel batch; only the pooled sync-point states cross groups (one autograd all-gather of
  (points x hidden) per part of the batch), never weights. Every rank then computes the same sync loss over
  all pairs, weighted 1/L (the all-gather's backward sums the L·k identical gradients, DeepSpeed divides by k).
  Checkpoints (DeepSpeed writes one `mp_rank_XX` file per language) and the export (one directory per base,
  `bases.json`) keep their format.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from syncmod.data.loader import MixedBatch, ParallelBatch
from syncmod.distributed import LOCAL, comm_device, rank, scope, world_size
from syncmod.errors import InputError
from syncmod.pretrain.config import PretrainConfig
from syncmod.pretrain.objectives import StepContext
from syncmod.pretrain.objectives.losses import sync_loss
from syncmod.pretrain.sync_points import mean_pool, select

PER_LANGUAGE = ("clm/", "ptext/")  # metric prefixes an objective logs once per language


class Colocated:
    """Every base on every rank: the plain step."""

    name = "colocated"
    mpu = None

    def __init__(self, langs: list[str]):
        self.langs = langs
        self.dp_rank, self.dp_world = rank(), world_size()
        self.local_langs = list(langs)  # languages whose monolingual stream this rank reads
        self.only: list[str] | None = None  # bases this rank builds (None: all)
        self.writes_bases = rank() == 0

    def bind(self, engine, hidden: int, vocab: int, sync_layers: list[int]) -> None:
        """After `deepspeed.initialize`: what the step and the evaluation need to know of the engine."""
        self.engine, self.hidden, self.vocab, self.sync_layers = engine, hidden, vocab, sync_layers

    def context(self, **kw: Any) -> StepContext:
        return StepContext(**kw)

    def loss(self, objective, batch, ctx: StepContext) -> torch.Tensor:
        return objective.loss(batch, ctx)

    def eval_forward(self) -> Callable:
        """forward(lang, ids, mask, layers) -> (logits, states) on the CPU, for the held-out diagnostics."""
        engine = self.engine

        def forward(lang, ids, mask, layers):
            logits, states = engine.module(lang, ids.to(engine.device),
                                           None if mask is None else mask.to(engine.device), layers)
            return logits.float().cpu(), {k: v.float().cpu() for k, v in states.items()}
        return forward

    def gather(self, values: dict[str, float]) -> dict[str, float]:
        return values


class LanguageGroups:
    """The `mpu` DeepSpeed is given (the Megatron interface `deepspeed.initialize(mpu=...)` queries): data
    parallel = this rank's language group, model parallel = the ranks at this position across languages."""

    def __init__(self, langs: int, per_lang: int):
        me = rank()
        self.lang, self.pos, self.per_lang, self.langs = me // per_lang, me % per_lang, per_lang, langs
        for lang in range(langs):  # every rank creates every group, in the same order
            ranks = list(range(lang * per_lang, (lang + 1) * per_lang))
            group = dist.new_group(ranks)
            if lang == self.lang:
                self.dp_group, self.dp_ranks = group, ranks
        for pos in range(per_lang):
            ranks = [lang * per_lang + pos for lang in range(langs)]
            group = dist.new_group(ranks)
            if pos == self.pos:
                self.mp_group = group

    def get_data_parallel_group(self):
        return self.dp_group

    def get_data_parallel_rank(self) -> int:
        return self.pos

    def get_data_parallel_world_size(self) -> int:
        return self.per_lang

    def get_data_parallel_group_ranks(self) -> list[int]:
        return self.dp_ranks

    def get_model_parallel_group(self):
        return self.mp_group

    def get_model_parallel_rank(self) -> int:
        return self.lang

    def get_model_parallel_world_size(self) -> int:
        return self.langs


class LanguageParallel(Colocated):
    name = "language-parallel"

    def __init__(self, langs: list[str]):
        super().__init__(langs)
        self.L, self.k = len(langs), world_size() // len(langs)
        self.mpu = LanguageGroups(self.L, self.k)
        self.own = langs[self.mpu.lang]
        self.dp_rank, self.dp_world = self.mpu.pos, self.k
        self.local_langs, self.only = [self.own], [self.own]
        self.writes_bases = self.mpu.pos == 0
        self._cache: dict[int, dict] = {}

    def bind(self, engine, hidden: int, vocab: int, sync_layers: list[int]) -> None:
        """Also: every parameter here belongs to this language's base only, so DeepSpeed counts it in the
        gradient norm on every model-parallel rank (Megatron's `model_parallel` attribute)."""
        super().bind(engine, hidden, vocab, sync_layers)
        self.dtype = next(engine.module.parameters()).dtype
        for p in engine.module.parameters():
            p.model_parallel = True

    def context(self, **kw: Any) -> StepContext:
        return StepContext(**kw, owns=lambda lang: lang == self.own, pair_states=self._pair_states,
                           sync_loss=self._sync_loss)

    def loss(self, objective, batch, ctx: StepContext) -> torch.Tensor:
        """The objective with sums over the language group (CLM normalisation, DeepSpeed's averaging), then
        every language's per-language metrics on every rank (one all-reduce, no host transfer)."""
        self._cache.clear()
        with scope(self.mpu.dp_group):
            loss = objective.loss(batch, ctx)
        self._cache.clear()
        present = self._languages_of(batch)
        own_keys = [p for p in PER_LANGUAGE if p + self.own in ctx.metrics] or ["clm/"]
        table = torch.zeros(len(PER_LANGUAGE), self.L, dtype=torch.float64, device=comm_device())
        for i, prefix in enumerate(PER_LANGUAGE):
            if prefix + self.own in ctx.metrics and self.mpu.pos == 0:
                table[i, self.mpu.lang] = torch.as_tensor(ctx.metrics[prefix + self.own]).to(table)
        dist.all_reduce(table)
        for i, prefix in enumerate(PER_LANGUAGE):
            if prefix in own_keys:
                for j, lang in enumerate(self.langs):
                    if lang in present:
                        ctx.metrics[prefix + lang] = table[i, j]
        return loss

    def _languages_of(self, batch) -> set[str]:
        if isinstance(batch, MixedBatch):
            return {lang for part in batch.parts for lang in part.ids}
        if isinstance(batch, ParallelBatch):
            return set(batch.ids)
        return set(self.langs)  # an asynchronous step: every group trains its language

    def _sync_loss(self, za, zb, *args, **kwargs):
        """The sync loss of full (gathered) pair states, computed alike on every rank, weighted 1/L."""
        with scope(LOCAL):
            loss, stats = sync_loss(za, zb, *args, **kwargs)
        return loss / self.L, stats

    def _pair_states(self, part: ParallelBatch, states: dict, layer: int, a: str, b: str,
                     kind: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Both sides' states at the pair's sync points, over the whole global batch: gathered (with autograd)
        from the ranks that ran each side. The first call for a part gathers every (layer, pair) of it at once."""
        if id(part) not in self._cache:
            self._cache[id(part)] = self._exchange(part, states, kind)
        return self._cache[id(part)][(layer, a, b)]

    def _exchange(self, part: ParallelBatch, states: dict, kind: str) -> dict:
        from torch.distributed.nn.functional import all_gather

        langs = list(part.ids)
        items = [(layer, a, b) for layer in self.sync_layers for i, a in enumerate(langs) for b in langs[i + 1:]]
        mine = []
        for layer, a, b in items:
            if self.own in (a, b):
                mine.append(_side(part, states[self.own][layer], a, b, kind, side=(a, b).index(self.own)))
            else:
                mine.append(torch.zeros(0, self.hidden, dtype=self.dtype, device=self.engine.device))
        counts = torch.tensor([len(z) for z in mine], dtype=torch.long, device=comm_device())
        table = [torch.zeros_like(counts) for _ in range(dist.get_world_size())]
        dist.all_gather(table, counts)  # points per (rank, item): `cut` has data-dependent counts
        table = torch.stack(table).tolist()
        width = max(sum(row) for row in table)
        flat = torch.cat(mine) if mine else torch.zeros(0, self.hidden, dtype=self.dtype, device=self.engine.device)
        flat = torch.cat([flat, flat.new_zeros(width - len(flat), self.hidden)]).to(comm_device())
        if not flat.requires_grad:  # a part without this rank's language (pairwise en-xx corpora): still take part
            flat.requires_grad_(True)  # in the all-gather's backward, or the other ranks would wait for it forever
        gathered = all_gather(flat)  # autograd: the gradient of each rank's rows flows back to it
        out = {}
        for n, (layer, a, b) in enumerate(items):
            sides = []
            for lang in (a, b):
                rows = range(self.langs.index(lang) * self.k, (self.langs.index(lang) + 1) * self.k)
                sides.append(torch.cat([gathered[r][sum(table[r][:n]):sum(table[r][:n + 1])] for r in rows])
                             .to(self.engine.device))
            out[(layer, a, b)] = tuple(sides)
        return out

    def eval_forward(self) -> Callable:
        """Each language's forward runs in its group; what the diagnostics read (logits, or the states when
        layers are asked) is broadcast from the group's first rank, so every rank evaluates alike."""
        engine, vocab = self.engine, self.vocab

        def forward(lang, ids, mask, layers):
            src = self.langs.index(lang) * self.k
            if lang == self.own:
                logits, states = engine.module(lang, ids.to(engine.device),
                                               None if mask is None else mask.to(engine.device), layers)
                wanted = [states[x].float() for x in layers] if layers else [logits.float()]
            else:
                shape = (*ids.shape, self.hidden if layers else vocab)
                wanted = [torch.zeros(shape, device=engine.device) for _ in (layers or [0])]
            wanted = [w.to(comm_device()).contiguous() for w in wanted]
            for w in wanted:
                dist.broadcast(w, src)
            if layers:
                return torch.zeros(0), {x: w.cpu() for x, w in zip(layers, wanted, strict=True)}
            return wanted[0].cpu(), {}
        return forward

    def gather(self, values: dict[str, float]) -> dict[str, float]:
        """Union of every rank's dict (e.g. each base's export check, written by its group's first rank)."""
        parts: list = [None] * dist.get_world_size()
        dist.all_gather_object(parts, values)
        return {k: v for part in parts for k, v in part.items()}


def _side(part: ParallelBatch, h: torch.Tensor, a: str, b: str, kind: str, side: int) -> torch.Tensor:
    """One side's states (side 0: a, 1: b) at the pair's sync points, as `sync_points.pair_states` gives them."""
    if kind == "mean":
        return mean_pool(h, part.mask[(a, b)[side]])
    c = select(part, a, b, kind)
    return h[c[:, 0], c[:, 1 + side]]


def make_placement(cfg: PretrainConfig, langs: list[str]) -> Colocated:
    """The placement of `cfg` (after `check_placement`, once the process group is up)."""
    return LanguageParallel(langs) if cfg.model.placement == "language-parallel" else Colocated(langs)


def check_placement(cfg: PretrainConfig, langs: list[str], world: int, train_meta: dict) -> int:
    """At start: the placement against the config, the data and the world size (one line, exit 2). Returns the
    ranks that train one base data-parallel (the world, or one language's group)."""
    if cfg.model.placement == "colocated":
        return world
    where = "model.placement"
    if cfg.model.topology != "per-language":
        raise InputError.at(where, "language-parallel needs per-language bases, model.topology is 'shared'",
                            "set model.topology=per-language, or model.placement=colocated")
    if cfg.sync.projection:
        raise InputError.at("sync.projection", "a projection shared by all bases cannot be language-parallel",
                            "set sync.projection=false, or model.placement=colocated")
    if world % len(langs):
        raise InputError.at(where, f"language-parallel needs a world size that is a multiple of the {len(langs)} "
                            f"languages {langs}, got {world} ranks",
                            f"launch {len(langs)} x k ranks (e.g. {len(langs) * max(1, world // len(langs))}), "
                            "or use model.placement=colocated")
    return world // len(langs)
