"""SPoC DrRepair-style corruptions (the SANSTYPE ones are tested with the generator)."""
import shutil

import numpy as np
import pytest

from simulations.code.corrupt import SPOC_KINDS, SPOC_PROBS, corrupt_spoc, corrupt_spoc_once, split_tgt_lines
from simulations.code.data import default_data_dir, load_spoc, tgt_to_code
from simulations.code.evaluator import Evaluator

DATA = default_data_dir()
TGT = ("int main ( ) { $ ~ int n , m , k = 0 ; $ ~ string s ; $ ~ cin >> n >> m >> s ; $ "
       "~ for ( int i = 0 ; i < n ; i ++ ) { $ ~ ~ if ( s [ i ] == 'a' ) k = max ( k , i + m ) ; $ ~ } $ "
       "~ while ( k > 0 ) k -= 2 ; $ ~ m = n + k ; $ ~ cout << \"ans\" << m << endl ; $ ~ return 0 ; $ }")


def test_kind_frequencies_follow_drrepair():
    rng = np.random.default_rng(0)
    lines = split_tgt_lines(TGT)
    n = 4000
    counts = dict.fromkeys(SPOC_KINDS, 0)
    for _ in range(n):
        kind, li, new = corrupt_spoc_once(lines, rng)
        counts[kind] += 1
        assert sum(a != b for a, b in zip(lines, new)) == 1 and new[li] != lines[li]
    for k, p in zip(SPOC_KINDS, SPOC_PROBS):  # binomial s.e. <= 0.008; allow 4 s.e.
        assert abs(counts[k] / n - p) < 0.03, (k, counts[k] / n, p)


@pytest.mark.gpp
@pytest.mark.data
@pytest.mark.skipif(DATA is None or shutil.which("g++") is None, reason="needs ../shared/data and g++")
def test_kept_corruptions_fail_to_compile():
    ev = Evaluator(workers=1)
    rng = np.random.default_rng(1)
    exs = load_spoc(DATA / "spoc" / "train-eval.tsv")[:6]
    for e in exs:
        res = corrupt_spoc(e.tgt, rng, ev.compiler)
        assert res is not None
        bad, kind = res
        assert kind in SPOC_KINDS and bad != e.tgt
        assert not ev.compiler.syntax_ok(tgt_to_code(bad))
    assert ev.compiler.syntax_ok(tgt_to_code(exs[0].tgt))
