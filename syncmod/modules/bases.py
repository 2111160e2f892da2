"""Finding bases: a syncmod export directory (`bases.json`: one base per language, or one shared), any
Hugging Face causal-LM directory (one base for every language), or an MLflow URI (`runs:/ID/...`,
`models:/NAME@ALIAS`) that resolves to one of those."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from syncmod.errors import InputError


@dataclass
class BaseSet:
    """Where the base for each language lives, and the sync layers they were trained with."""

    root: Path
    paths: dict[str, Path]  # lang -> HF dir ("*" = every language)
    sync_layers: list[int] | None
    topology: str
    run_id: str | None = None  # the pre-training run that produced the bases (MLflow)

    def path(self, lang: str) -> Path:
        if lang in self.paths:
            return self.paths[lang]
        if "*" in self.paths:
            return self.paths["*"]
        raise InputError.at(str(self.root), f"has no base for language {lang!r} (it has {sorted(self.paths)})",
                            "evaluate languages the bases were trained on")


def resolve_uri(spec: str) -> Path:
    """`runs:/...` and `models:/...` through MLflow (downloaded to its cache); paths as they are."""
    if spec.startswith(("runs:/", "models:/")):
        import mlflow

        try:
            return Path(mlflow.artifacts.download_artifacts(spec))
        except Exception as e:  # noqa: BLE001 — MLflow raises many types for a bad URI
            raise InputError.at(spec, f"cannot resolve: {str(e).splitlines()[0][:200]}",
                                "check the run id / model name and MLFLOW_TRACKING_URI") from e
    return Path(spec)


def open_bases(spec: str) -> BaseSet:
    root = resolve_uri(spec)
    if (root / "bases.json").exists():
        meta = json.loads((root / "bases.json").read_text())
        if meta["topology"] == "shared":
            paths = {"*": root / "shared"}
        else:
            paths = {lang: root / lang for lang in meta["bases"]}
        return BaseSet(root, paths, meta.get("sync_layers"), meta["topology"], meta.get("tracking_run_id"))
    if (root / "config.json").exists():
        return BaseSet(root, {"*": root}, None, "shared")
    raise InputError.at(str(root), "not a base: no bases.json (syncmod export) and no config.json (HF model)",
                        "give `<pretrain out>/export` or a Hugging Face model directory")


def load_base(path: Path, device: str = "cpu"):
    """A frozen HF causal LM and its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).to(device)
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise InputError.at(str(path), f"cannot load base: {str(e).splitlines()[0][:200]}",
                            "give a directory written by save_pretrained") from e
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


def architecture(model) -> dict:
    return architecture_of_config(model.config)


def architecture_of_config(c) -> dict:
    return {"model_type": c.model_type, "hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads, "intermediate_size": getattr(c, "intermediate_size", None),
            "vocab_size": c.vocab_size}


def fingerprint(model) -> dict:
    """Architecture + a hash of the weights (names, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().to(torch.float32).cpu().contiguous().numpy().tobytes())
    return {"architecture": architecture(model), "weights_sha256": h.hexdigest()[:32]}
