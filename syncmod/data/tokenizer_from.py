"""A data root's tokenizer taken from a checkpoint (`syncmod data prepare --tokenizer DIR`) instead of trained.

The checkpoint's tokenizer is used as is: its ids and segmentation do not change. The only tokens added are
the `<lang_xx>` tags the shards start every sequence with (appended after its vocabulary, so the continued
model's embedding grows by one row per language). A tokenizer without a padding token pads with its end of
sequence (padded positions are masked everywhere). `syncmod_tokenizer.json` records the source and what was
added; `<sync>` / `<sep>` are added by the pre-training run only when its objective uses them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from syncmod.data.tokenizer import lang_tag
from syncmod.errors import InputError
from syncmod.io import atomic_dir

RECORD = "syncmod_tokenizer.json"


def from_checkpoint(spec: str, languages: Iterable[str], out_dir: str | Path) -> Path:
    """Save the tokenizer of checkpoint `spec` (a directory or `hf:NAME`) with the language tags to `out_dir`."""
    from transformers import AutoTokenizer

    from syncmod.pretrain.init_from import resolve

    path = resolve(spec)
    where = f"--tokenizer {spec}"
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 — transformers raises many types for a missing or broken tokenizer
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise InputError.at(where, f"cannot load the checkpoint's tokenizer: {first}",
                            "save it beside the model (tokenizer.save_pretrained)") from None
    if not getattr(tok, "is_fast", False):
        raise InputError.at(where, "has no fast tokenizer (tokenizer.json)", "convert it with transformers and save it")
    if tok.eos_token_id is None:
        raise InputError.at(where, "the tokenizer has no end-of-sequence token", "set eos_token and save it again")
    before = len(tok)
    tags = [lang_tag(lang) for lang in sorted(languages) if lang_tag(lang) not in tok.get_vocab()]
    tok.add_special_tokens({"additional_special_tokens": tags}, replace_extra_special_tokens=False)
    pad = "own"
    if tok.pad_token_id is None:
        tok.pad_token, pad = tok.eos_token, "eos"
    with atomic_dir(out_dir) as tmp:
        tok.save_pretrained(tmp)
        (tmp / RECORD).write_text(json.dumps({"source": spec, "checkpoint_tokens": before, "added": tags,
                                              "pad": pad}, indent=2))
    return Path(out_dir)


def is_from_checkpoint(path: str | Path) -> bool:
    return (Path(path) / RECORD).exists()
