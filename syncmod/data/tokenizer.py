"""Train the study's tokenizer over all its languages and save it so `AutoTokenizer` loads it.

SentencePiece (unigram, default) or `tokenizers` byte-level BPE. Both are lossless: SentencePiece runs
with identity normalisation and byte fallback, BPE is byte-level. Special tokens: `<s>`, `</s>`,
`<unk>`, `<pad>`, `<sync>`, `<sep>` and one `<lang_xx>` tag per language.
"""

from __future__ import annotations

import logging
import random
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from syncmod.io import atomic_dir

log = logging.getLogger(__name__)
SYNC, SEP, PAD = "<sync>", "<sep>", "<pad>"


def lang_tag(lang: str) -> str:
    return f"<lang_{lang}>"


def special_tokens(languages: Iterable[str]) -> list[str]:
    return [SYNC, SEP, *(lang_tag(lang) for lang in sorted(languages))]


def train_tokenizer(texts: Iterable[str], languages: Iterable[str], out_dir: str | Path, kind: str = "sentencepiece",
                    vocab_size: int = 4000, max_sentences: int = 400_000, seed: int = 0,
                    sp_model: str = "bpe") -> Path:
    """Train on `texts` (reservoir-sampled to `max_sentences`), save to `out_dir`, return it.

    `sp_model` is SentencePiece's algorithm, `bpe` or `unigram`. On the synthetic world (a few hundred
    distinct words) unigram stops at ~240 pieces and splits even "the"; BPE learns whole words.
    """
    rng = random.Random(seed)
    sample: list[str] = []
    for i, t in enumerate(texts):  # reservoir sampling: bounded memory, uniform over the corpus
        if len(sample) < max_sentences:
            sample.append(t)
        elif (j := rng.randrange(i + 1)) < max_sentences:
            sample[j] = t
    if not sample:
        from syncmod.errors import InputError

        raise InputError.at("tokenizer", "no text to train on", "give corpora with text")
    specials = special_tokens(languages)
    with atomic_dir(out_dir) as tmp:
        if kind == "sentencepiece":
            tok = _sentencepiece(sample, specials, vocab_size, tmp, sp_model)
        elif kind == "bpe":
            tok = _bpe(sample, specials, vocab_size)
        else:
            raise ValueError(f"unknown tokenizer kind {kind!r}")
        tok.save_pretrained(tmp)
    log.info("trained %s tokenizer (%d pieces) on %d texts -> %s", kind, len(tok), len(sample), out_dir)
    return Path(out_dir)


def _sentencepiece(sample: list[str], specials: list[str], vocab_size: int, tmp: Path, model_type: str):
    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as work:
        corpus = Path(work) / "corpus.txt"
        corpus.write_text("\n".join(s.replace("\n", " ") for s in sample) + "\n", encoding="utf-8")
        try:
            _train_sp(spm, corpus, tmp, model_type, vocab_size, specials, len(sample))
        except RuntimeError as e:
            needed = re.search(r"(\d+) vs (\d+)", str(e)) if "smaller than required_chars" in str(e) else None
            if needed is None:
                raise
            from syncmod.errors import InputError

            raise InputError.at("--vocab-size", f"{vocab_size} is smaller than the {needed.group(2)} characters and "
                                "special pieces the corpus needs", f"use --vocab-size {int(needed.group(2)) * 2} or "
                                "more") from None
        (tmp / "tokenizer.vocab").unlink(missing_ok=True)
    return _wrap(tmp / "tokenizer.model", specials, model_type)


def _train_sp(spm, corpus: Path, tmp: Path, model_type: str, vocab_size: int, specials: list[str], n: int) -> None:
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(tmp / "tokenizer"), model_type=model_type, vocab_size=vocab_size,
        character_coverage=1.0, byte_fallback=True, normalization_rule_name="identity",
        remove_extra_whitespaces=False, split_digits=True, user_defined_symbols=specials,
        unk_id=0, bos_id=1, eos_id=2, pad_id=3, pad_piece=PAD, hard_vocab_limit=False,
        minloglevel=2, num_threads=2, input_sentence_size=n, shuffle_input_sentence=False)


def _wrap(model_file: Path, specials: list[str], model_type: str):
    """A fast tokenizer that segments exactly like the SentencePiece model and round-trips every string.

    Unigram: the `tokenizers` Unigram model built from SentencePiece's pieces and scores (transformers 5's
    `LlamaTokenizer` would re-express it as BPE and split pieces into characters). BPE: transformers'
    Llama converter, which is SentencePiece BPE. Both then get a normaliser that always prepends "▁"
    (Metaspace's "always" skips text that already starts with a space, losing it on decode).
    """
    import sentencepiece as spm
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import LlamaTokenizer, PreTrainedTokenizerFast

    common = dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token=PAD,
                  additional_special_tokens=specials)
    if model_type == "unigram":
        sp = spm.SentencePieceProcessor(model_file=str(model_file))
        vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
        tok = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer(models.Unigram(vocab, unk_id=sp.unk_id(), byte_fallback=True)), **common)
    else:
        slow = LlamaTokenizer.from_pretrained(str(model_file.parent), legacy=False, add_bos_token=False,
                                              add_eos_token=False)
        tok = PreTrainedTokenizerFast(tokenizer_object=slow.backend_tokenizer, **common)
    backend = tok.backend_tokenizer
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    backend.post_processor = None
    return tok


def _bpe(sample: list[str], specials: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", PAD, *specials],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(sample, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token=PAD, additional_special_tokens=specials)


def load_tokenizer(path: str | Path):
    """Load a tokenizer directory saved by `syncmod data tokenizer` (tokenizer.json + tokenizer_config.json)
    and check it has the special tokens syncmod writes (a tokenizer without them would map them to <unk>)."""
    import json

    from transformers import AutoTokenizer

    from syncmod.errors import InputError

    path = Path(path)
    fix = "train one with `syncmod data tokenizer` (or `syncmod data prepare`), or copy the whole directory again"
    if not path.is_dir():
        raise InputError.at(str(path), "tokenizer directory does not exist" if not path.exists() else
                            "is a file, not a tokenizer directory", fix)
    config = path / "tokenizer_config.json"
    if not config.exists():
        raise InputError.at(str(path), "not a tokenizer directory (no tokenizer_config.json)", fix)
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise InputError.at(str(config), f"unreadable tokenizer config: {e}", fix) from None
    if not (path / "tokenizer.json").exists():
        raise InputError.at(str(path / "tokenizer.json"), "the tokenizer's model file is missing", fix)
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 — transformers and tokenizers raise many types for a damaged file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError.at(str(path / "tokenizer.json"), f"cannot load the tokenizer: {first}", fix) from None
    vocab = tok.get_vocab()
    # a checkpoint's tokenizer (data prepare --tokenizer) is used as is: it pads with its own pad or eos
    required = () if (path / "syncmod_tokenizer.json").exists() else (PAD, SYNC, SEP)
    missing = [t for t in required if t not in vocab]
    if missing or tok.eos_token_id is None or tok.pad_token_id is None:
        raise InputError.at(str(path), f"not a syncmod tokenizer: no {(missing or ['eos' if tok.eos_token_id is None else 'pad'])[0]} token", fix)
    return tok
