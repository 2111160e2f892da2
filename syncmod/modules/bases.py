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
    """Open and check every base a spec names (config, weights, tokenizer) before any of them is loaded."""
    root = resolve_uri(spec)
    if not root.exists():
        raise InputError.at(str(root), "does not exist", "give `<pretrain out>/export` or a Hugging Face model directory")
    if not root.is_dir():
        raise InputError.at(str(root), "is a file, not a base directory",
                            "give `<pretrain out>/export` or a Hugging Face model directory")
    if (root / "bases.json").exists():
        bases = _read_bases_json(root)
    elif (root / "config.json").exists() and not _is_run_dir(root):
        bases = BaseSet(root, {"*": root}, None, "shared")
    elif _is_run_dir(root):
        export = root / "export"
        hint = f"use {export}" if (export / "bases.json").exists() else \
            f"{export} is not written yet: let the run finish (or resume it), then use {export}"
        raise InputError.at(str(root), "this is a pre-training run directory, not its export", hint)
    else:
        raise InputError.at(str(root), "not a base: no bases.json (syncmod export) and no config.json (HF model)",
                            "give `<pretrain out>/export` or a Hugging Face model directory")
    for path in dict.fromkeys(bases.paths.values()):
        check_base_dir(path)
    return bases


def _is_run_dir(root: Path) -> bool:
    return (root / "export").is_dir() or (root / "checkpoints").is_dir() or (root / "metrics.jsonl").exists()


def _read_bases_json(root: Path) -> BaseSet:
    path = root / "bases.json"
    fix = "re-export the bases (the export was interrupted or edited): rerun or resume the pre-training run"
    try:
        meta = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as e:
        raise InputError.at(f"{path}:{e.lineno}", f"invalid JSON: {e.msg} at column {e.colno}", fix) from None
    except (UnicodeDecodeError, OSError) as e:
        raise InputError.at(str(path), f"cannot read: {e}", fix) from None
    if not isinstance(meta, dict):
        raise InputError.at(str(path), f"must be a JSON object, got {type(meta).__name__}", fix)
    topology, names, layers = meta.get("topology"), meta.get("bases"), meta.get("sync_layers")
    if topology not in ("shared", "per-language"):
        raise InputError.at(str(path), f"'topology' must be 'shared' or 'per-language', got {topology!r}", fix)
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise InputError.at(str(path), f"'bases' must be a non-empty list of base names, got {names!r}", fix)
    if layers is not None and not (isinstance(layers, list) and all(type(x) is int for x in layers)):
        raise InputError.at(str(path), f"'sync_layers' must be a list of layer numbers, got {layers!r}", fix)
    run_id = meta.get("tracking_run_id")
    paths = {"*": root / "shared"} if topology == "shared" else {name: root / name for name in names}
    return BaseSet(root, paths, layers, topology, run_id if isinstance(run_id, str) else None)


def check_base_dir(path: Path) -> None:
    """A base directory must load: its config parses, its safetensors are complete and hold every weight the
    config's model has, in the right shape, and it has a tokenizer. Reads headers only (no weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fix = "re-export the base, or give a directory written by save_pretrained"
    if not path.is_dir():
        raise InputError.at(str(path), "base directory is missing", fix)
    if not (path / "config.json").exists():
        raise InputError.at(str(path / "config.json"), "base config is missing", fix)
    try:
        config = AutoConfig.from_pretrained(str(path))
        with torch.device("meta"):  # the model's tensor names and shapes, without allocating them
            model = AutoModelForCausalLM.from_config(config)
        want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        tied = set(getattr(model, "_tied_weights_keys", None) or ())
    except Exception as e:  # noqa: BLE001 — transformers raises many types for a bad or unknown config
        raise InputError.at(str(path / "config.json"), f"not a causal-LM config: {_first_line(e)}", fix) from None
    have = _safetensors_shapes(path, fix)
    missing = [k for k in want if k not in have and k not in tied]
    if missing:
        raise InputError.at(str(path), f"weights lack {len(missing)} tensors of the model, e.g. {missing[0]!r}", fix)
    wrong = next((k for k in want if k in have and have[k] != want[k]), None)
    if wrong:
        raise InputError.at(str(path), f"weight {wrong!r} has shape {list(have[wrong])}, the config needs "
                            f"{list(want[wrong])}", fix)
    if not (path / "tokenizer_config.json").exists():
        raise InputError.at(str(path), "base has no tokenizer (tokenizer_config.json)",
                            "save the tokenizer beside the model (tokenizer.save_pretrained)")


def _safetensors_shapes(path: Path, fix: str) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the weights (one file or a sharded index); a truncated file is refused here."""
    from safetensors import SafetensorError, safe_open

    index = path / "model.safetensors.index.json"
    try:
        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() \
            else ["model.safetensors"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise InputError.at(str(index), f"unreadable weight index: {e}", fix) from None
    shapes: dict[str, tuple[int, ...]] = {}
    for name in files:
        file = path / name
        if not file.exists():
            found = "" if index.exists() or not list(path.glob("*.bin")) else " (only pickle .bin weights, not loaded)"
            raise InputError.at(str(file), "weights file is missing" + found, fix)
        try:
            with safe_open(str(file), "pt") as f:
                shapes.update({k: tuple(f.get_slice(k).get_shape()) for k in f.keys()})
        except (SafetensorError, OSError) as e:
            raise InputError.at(str(file), f"weights file is truncated or corrupt ({_first_line(e)})", fix) from None
    return shapes


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def load_base(path: Path, device: str = "cpu"):
    """A frozen HF causal LM and its tokenizer."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model, info = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32, output_loading_info=True)
        tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError, SafetensorError) as e:
        raise InputError.at(str(path), f"cannot load base: {_first_line(e)}",
                            "give a directory written by save_pretrained") from e
    bad = [*info.get("missing_keys", ()), *info.get("mismatched_keys", ())]
    if bad:  # transformers would fill them with random values: a different model under the same name
        raise InputError.at(str(path), f"base weights lack or misshape {len(bad)} tensors, e.g. {bad[0]}",
                            "re-export the base")
    model = model.to(device)
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
