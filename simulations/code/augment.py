"""Label-preserving renaming of SANSTYPE pairs: more labeled pairs from the same 1,000 programs.

In SANSTYPE the variable names ``var_0 … var_9`` and the string literals ``"str_0" … "str_9"``
are arbitrary symbols (paper-notes §4.1: drawn uniformly by the generator). Renaming them by one
permutation in the pseudocode *and* the code gives another correct (pseudocode, code) pair, so a
fine-tuning stage can see ``copies`` renamed variants of every labeled pair. This is a symmetry
of the task, not new information about types or syntax: the type of a variable is still decided
by the same statements. It applies to the fine-tuning stages only (Π is trained on 20,000
unlabeled programs already) and to every method alike (``CodeConfig.augment_renames``).

Renaming is one simultaneous substitution (a single regex pass), so ``var_1 -> var_2`` and
``var_2 -> var_1`` swap instead of collapsing.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from composedft.seeding import derive_seed

__all__ = ["N_SYMBOLS", "rename", "random_renaming", "augment_pairs"]

N_SYMBOLS = 10  # var_0..var_9 and "str_0".."str_9" (simulations.code.sanstype's generator)
_SYMBOL = re.compile(r'\bvar_(\d+)\b|"str_(\d+)"')


def rename(text: str, var_perm: Sequence[int], str_perm: Sequence[int]) -> str:
    """``text`` with every ``var_i`` -> ``var_{var_perm[i]}`` and ``"str_j"`` -> ``"str_{str_perm[j]}"``."""
    def sub(m: re.Match) -> str:
        if m.group(1) is not None:
            return f"var_{var_perm[_index(m.group(1), text)]}"
        return f'"str_{str_perm[_index(m.group(2), text)]}"'
    return _SYMBOL.sub(sub, text)


def _index(digits: str, text: str) -> int:
    i = int(digits)
    if i >= N_SYMBOLS:
        raise ValueError(f"symbol index {i} >= {N_SYMBOLS} in {text[:80]!r}: not a SANSTYPE program")
    return i


def random_renaming(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A (variable, string) pair of uniform permutations of ``0..N_SYMBOLS-1``."""
    rng = np.random.default_rng(seed)
    return rng.permutation(N_SYMBOLS), rng.permutation(N_SYMBOLS)


def augment_pairs(srcs: Sequence[str], tgts: Sequence[str], copies: int, seed: int) -> tuple[list[str], list[str]]:
    """The pairs followed by ``copies`` renamed variants of each (copy-major: all of copy 1, then
    all of copy 2, ...). Variant ``c`` of pair ``i`` uses the renaming seeded by ``(seed, i, c)``,
    so the augmented corpus is a pure function of the seed."""
    if len(srcs) != len(tgts):
        raise ValueError(f"{len(srcs)} sources but {len(tgts)} targets")
    if copies < 0:
        raise ValueError(f"copies={copies} must be >= 0")
    out_s, out_t = list(srcs), list(tgts)
    for c in range(1, copies + 1):
        for i, (s, t) in enumerate(zip(srcs, tgts)):
            vp, sp = random_renaming(derive_seed(seed, "rename", i, c))
            out_s.append(rename(s, vp, sp))
            out_t.append(rename(t, vp, sp))
    return out_s, out_t
