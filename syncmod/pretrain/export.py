"""Export: every base of a run as a Hugging Face model (`save_pretrained`) plus the tokenizer, checked by
reloading it with `AutoModelForCausalLM` and comparing logits with the engine's on a probe batch."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from syncmod.distributed import rank
from syncmod.io import atomic_write
from syncmod.pretrain.init_from import save_base


def export(engine, directory: Path, tokenizer, special: dict[str, int], sync_layers: list[int],
           run_id: str | None = None, placement=None) -> dict[str, float]:
    """Each base as an HF model (`save_pretrained`) + the tokenizer; ZeRO-3 weights are gathered first.

    The engine's logits on a fixed probe batch are saved beside each base (`probe.safetensors`), and the
    exported model, reloaded with `AutoModelForCausalLM`, must reproduce them: returns the max |diff|.
    Under `language-parallel` (`placement`) each group's first rank writes its base; rank 0 writes `bases.json`.
    """
    import deepspeed
    from safetensors.torch import save_file
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = engine.module
    writes = rank() == 0 if placement is None else placement.writes_bases
    generator = torch.Generator().manual_seed(0)
    probe = torch.randint(10, special["vocab"], (2, 16), generator=generator)
    diffs = {}
    engine.eval()
    for name in model.held:  # language-parallel: this rank's base
        lang = name if name != "shared" else model.languages[0]
        base = model.base(lang)
        with torch.no_grad():
            logits = model(lang, probe.to(engine.device), None, [])[0].float().cpu()
        params = list(base.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=engine.zero_optimization_stage() == 3):
            if writes:
                target, tmp = directory / name, directory / f".{name}.tmp"
                with _written_here(base):
                    save_base(base, tmp, name)  # a LoRA base (model.lora_rank) merged into its weights
                tokenizer.save_pretrained(tmp)
                save_file({"input_ids": probe, "logits": logits}, str(tmp / "probe.safetensors"))
                if target.exists():
                    import shutil

                    shutil.rmtree(target)
                os.replace(tmp, target)
        if writes:
            diffs[name] = _reload_diff(directory / name, probe, logits)
    engine.train()
    if placement is not None:
        diffs = placement.gather(diffs)
    if rank() == 0:
        with atomic_write(directory / "bases.json") as f:
            json.dump({"bases": list(model.names), "languages": model.languages, "topology": model.config.topology,
                       "sync_layers": sync_layers, "probe_max_abs_diff": diffs, "tracking_run_id": run_id,
                       **({"init": model.init_record} if model.init_record else {})}, f, indent=2)
        worst = max(diffs.values())
        fp32 = next(model.parameters()).dtype == torch.float32  # bf16 engines differ by rounding; recorded only
        if fp32 and worst > 1e-3:
            raise RuntimeError(f"exported bases do not reproduce the engine's logits (max |diff| {worst:.3g})")
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
    return diffs


@contextlib.contextmanager
def _written_here(base) -> Iterator[None]:
    """transformers writes only on global rank 0 once torch.distributed is up; here the export decides (under
    language-parallel each group's first rank writes its base). A LoRA base saves through its inner model."""
    models = {id(m): m for m in (base, base.get_base_model() if hasattr(base, "get_base_model") else base)}
    for m in models.values():
        m.should_save_on_this_rank = lambda is_main_process: True
    try:
        yield
    finally:
        for m in models.values():
            del m.should_save_on_this_rank


def _reload_diff(path: Path, probe: torch.Tensor, logits: torch.Tensor) -> float:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(path), torch_dtype=torch.float32)
    with torch.no_grad():
        return float((hf(input_ids=probe).logits.float() - logits).abs().max())
