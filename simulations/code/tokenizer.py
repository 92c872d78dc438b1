"""Tokenizers and the vocabulary for the code-translation tasks.

* ``lex_cpp``: a regex C++ lexer in the spirit of the DeepFix ``C_Tokenizer`` the reference used,
  with two fixes that matter for detokenization: numbers are C++ pp-numbers (``1LL``, ``0x1F``,
  ``1e9`` stay one token; the DeepFix regex split ``1LL`` into ``1 LL``, which no longer compiles)
  and ``#include <...>`` keeps its header name whole. Joining the tokens with single spaces gives
  code with the same meaning, because no token boundary is ever removed.
* ``pseudo_tokenize``: words, numbers, quoted strings and single punctuation marks.
* ``Vocab``: ids with the specials ``<pad>=0 <bos>=1 <eos>=2 <unk>=3``: the ``whitespace``
  tokenizer (one id per whitespace token of the training files; kept for comparison).
* ``BPETokenizer``: SentencePiece BPE trained on the training texts only (the paper's
  tokenization: joint source+target, vocab 600 SANSTYPE / 10,000 SPoC, character coverage 1.0),
  same special ids. Identity normalization and no whitespace collapsing, so decoding the ids of a
  text gives the text back exactly (docs/code-pipeline.md §1).

Both expose ``encode_text(str) -> ids`` and ``decode_text(ids) -> str`` (``decode_text`` stops
at the first ``<eos>`` and drops ``<pad>``/``<bos>``).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

__all__ = ["PAD", "BOS", "EOS", "UNK", "SPECIALS", "Vocab", "VocabError", "BPETokenizer", "lex_cpp",
           "pseudo_tokenize", "split_source_punct", "unk_rate"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)

# Longest operators first so that the alternation is greedy in the right way.
_OPS = [">>=", "<<=", "->*", "...", "<=>", "::", "->", "++", "--", "<<", ">>", "<=", ">=", "==", "!=",
        "&&", "||", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", ".*", "##"]
_CPP_TOKEN = re.compile(
    r"""
    (?P<comment>//[^\n]*|/\*(?:[^*]|\*(?!/))*\*/)
  | (?P<include>\#\s*include\s*(?:<[^>\n]*>|"[^"\n]*"))
  | (?P<directive>\#\s*[A-Za-z_]\w*)
  | (?P<string>(?:u8|u|U|L)?R"(?P<delim>[^()\\\s]{0,16})\((?:.|\n)*?\)(?P=delim)"
               |(?:u8|u|U|L)?"(?:\\.|[^"\\\n])*")
  | (?P<char>(?:u8|u|U|L)?'(?:\\.|[^'\\\n])*')
  | (?P<number>\.?[0-9](?:[eEpP][+-]|[0-9A-Za-z_.]|(?<=[0-9A-Fa-f])'(?=[0-9A-Fa-f]))*)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>""" + "|".join(re.escape(o) for o in _OPS) + r"""|[^\sA-Za-z0-9_])
  | (?P<ws>\s+)
    """,
    re.VERBOSE,
)


def lex_cpp(code: str) -> list[str]:
    """Lex C++ source into tokens; whitespace is dropped, comments are kept as tokens.

    ``#include <x>`` becomes the two tokens ``#include`` and ``<x>``. Unterminated literals fall
    through to single-character tokens instead of raising: model outputs are arbitrary.
    """
    out: list[str] = []
    for mo in _CPP_TOKEN.finditer(code):
        kind = mo.lastgroup
        if kind == "ws":
            continue
        if kind == "delim":  # inner group of a raw string: report the whole literal
            kind = "string"
        text = mo.group(0)
        if kind == "include":
            m = re.match(r"#\s*include\s*(.*)", text)
            out += ["#include", m.group(1)]
        elif kind == "directive":
            out.append("#" + text[1:].strip())
        elif kind == "comment" and "\n" in text:
            out.append(" ".join(text.split()))  # a block comment must not carry newlines
        else:
            out.append(text)
    return out


_PSEUDO_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|[A-Za-z_]\w*|\d+(?:\.\d+)?'
                           r'|==|!=|<=|>=|\+\+|--|&&|\|\||<<|>>|[-+*/%]=|[^\sA-Za-z0-9_]')


def pseudo_tokenize(text: str) -> list[str]:
    """Tokenize one line of crowd pseudocode: words, numbers, quoted strings, punctuation.

    Quoted strings keep their inner spaces as one token, so joining on spaces keeps them intact.
    """
    return [t for t in _PSEUDO_TOKEN.findall(text)]


_ATTACHED_PUNCT = re.compile(r"(?<=\S)([;,])")


def split_source_punct(text: str) -> str:
    """SANSTYPE pseudocode with a space before every ``;`` and ``,`` that follows a word.

    The pseudocode writes ``of var_1;`` and (OOD) ``read var_1, var_2;`` where the code writes
    ``var_1 ;``. SentencePiece then encodes one variable as different pieces in the two places
    (``var`` ``_1;`` vs ``var`` ``_1``), and a small model must learn that they are the same name
    before it can match a declaration with its use (docs/code-pipeline.md §9). Splitting the
    punctuation off makes the source use the code's pieces; the tokenizer itself is unchanged.
    SANSTYPE only: its string literals (``"str_k"``) hold no ``;`` or ``,`` to corrupt.
    """
    return _ATTACHED_PUNCT.sub(r" \1", text)


class VocabError(ValueError):
    """A vocabulary file that is missing or malformed; the message names the file."""


class Vocab:
    """Token <-> id map; ids 0..3 are ``<pad> <bos> <eos> <unk>``."""

    def __init__(self, itos: Sequence[str]):
        if tuple(itos[:4]) != SPECIALS:
            raise VocabError(f"the first four tokens must be {SPECIALS}, got {tuple(itos[:4])}")
        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise VocabError("duplicate tokens in vocabulary")
        self.pad, self.bos, self.eos, self.unk = 0, 1, 2, 3

    @classmethod
    def build(cls, token_lists: Iterable[Sequence[str]], min_freq: int = 1) -> "Vocab":
        """Vocabulary of all tokens seen at least ``min_freq`` times, most frequent first
        (ties broken alphabetically, so the ids are deterministic)."""
        counts = Counter(t for toks in token_lists for t in toks)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                      key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, tok: str) -> bool:
        return tok in self.stoi

    kind = "whitespace"

    def encode_text(self, text: str) -> list[int]:
        """Ids of the whitespace tokens of ``text`` (unknown tokens -> ``<unk>``)."""
        return self.encode(text.split())

    def decode_text(self, ids: Iterable[int]) -> str:
        """The tokens of ``ids`` joined by single spaces (see :meth:`decode`)."""
        return " ".join(self.decode(ids))

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens``; unknown tokens map to ``<unk>`` (no bos/eos are added)."""
        return [self.stoi.get(t, self.unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids``: stops at the first ``<eos>``, drops ``<pad>`` and ``<bos>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i in (self.pad, self.bos):
                continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the vocabulary as JSON, atomically."""
        from composedft.io import atomic_write_json  # lazy: composedft.io imports torch
        atomic_write_json(path, {"format": "composedft-vocab-v1", "itos": self.itos})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocab":
        """Load a vocabulary written by ``save``; errors name the file."""
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            itos = obj["itos"]
            if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
                raise TypeError("'itos' must be a list of strings")
            return cls(itos)
        except FileNotFoundError:
            raise VocabError(f"{path}: vocabulary file not found") from None
        except (ValueError, KeyError, TypeError) as e:
            raise VocabError(f"{path}: not a valid vocabulary file ({e})") from None


class BPETokenizer:
    """SentencePiece BPE with ``<pad>=0 <bos>=1 <eos>=2 <unk>=3`` (see the module docstring)."""

    kind = "bpe"
    pad, bos, eos, unk = 0, 1, 2, 3

    def __init__(self, model_proto: bytes, source: str = "<memory>"):
        import sentencepiece as spm
        try:
            self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except (RuntimeError, OSError, TypeError) as err:
            raise VocabError(f"{source}: not a SentencePiece model ({err})") from None
        got = tuple(self.sp.id_to_piece(i) for i in range(min(4, self.sp.get_piece_size())))
        if got != SPECIALS:
            raise VocabError(f"{source}: the first four pieces must be {SPECIALS}, got {got}")
        self.proto = model_proto

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, *, byte_fallback: bool = False) -> "BPETokenizer":
        """Train BPE on ``texts`` (training data only; never test data), deterministically.

        ``byte_fallback`` spells characters never seen in training as UTF-8 byte pieces instead of
        ``<unk>`` (256 of the ``vocab_size`` pieces; used for SPoC, whose test programs contain
        characters its training programs do not).
        """
        import sentencepiece as spm
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(list(texts)), model_writer=buf, model_type="bpe", vocab_size=vocab_size,
                character_coverage=1.0, pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece=PAD, bos_piece=BOS,
                eos_piece=EOS, unk_piece=UNK, normalization_rule_name="identity", remove_extra_whitespaces=False,
                max_sentence_length=1 << 20, byte_fallback=byte_fallback, hard_vocab_limit=False, num_threads=1, input_sentence_size=0,
                shuffle_input_sentence=False, minloglevel=2)
        except RuntimeError as err:
            raise VocabError(f"SentencePiece training failed (vocab_size={vocab_size}): {err}") from None
        return cls(buf.getvalue())

    def __len__(self) -> int:
        return self.sp.get_piece_size()

    def encode_text(self, text: str) -> list[int]:
        """BPE ids of ``text`` (no bos/eos added)."""
        return self.sp.encode(text)

    def decode_text(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` up to the first ``<eos>``, without ``<pad>``/``<bos>``."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                out.append(i if 0 <= i < len(self) else self.unk)
        return self.sp.decode(out)

    def sha256(self) -> str:
        return hashlib.sha256(self.proto).hexdigest()

    def save(self, path: str | os.PathLike) -> None:
        """Write the SentencePiece model, atomically."""
        from composedft.io import atomic_write_bytes  # lazy: composedft.io imports torch
        atomic_write_bytes(path, self.proto)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        """Load a model written by ``save``; errors name the file."""
        path = Path(path)
        try:
            return cls(path.read_bytes(), source=str(path))
        except FileNotFoundError:
            raise VocabError(f"{path}: SentencePiece model not found") from None


def unk_rate(tok, texts: Iterable[str]) -> float:
    """Fraction of the ids of ``texts`` that are ``<unk>`` (0.0 for no text)."""
    n = unk = 0
    for t in texts:
        ids = tok.encode_text(t)
        n += len(ids)
        unk += sum(1 for i in ids if i == tok.unk)
    return unk / n if n else 0.0
