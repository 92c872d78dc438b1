"""``python -m simulations.code evaluate`` / ``check-gold``: bad input is refused with a one-line
error naming the file/line/field (exit 2, no traceback); SIGINT and SIGTERM stop an evaluation
cleanly (sandboxed programs killed, sandbox directory removed, exit 130/143, one line)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from simulations.code import sandbox
from simulations.code.data import Example, TestCase, write_sanstype

REPO = Path(__file__).resolve().parents[1]
# Our runs get their own uid range, so that another evaluation running on a shared machine is
# not mistaken for something our runs left behind (sandbox uid = UID_BASE + worker pid).
sandbox.UID_BASE = 3_000_000
os.environ["COMPOSEDFT_SANDBOX_UID_BASE"] = str(sandbox.UID_BASE)   # for CLI subprocesses


def _ours(uid: int) -> bool:
    return sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SPAN


pytestmark = [pytest.mark.gpp, pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")]
H = "#include <bits/stdc++.h>\n#include <unistd.h>\nusing namespace std;\n"


def _cli(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "simulations.code", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def split(tmp_path):
    """A 3-program SANSTYPE split (x -> x + 1) and correct predictions for it."""
    exs = [Example(f"x-{i}", "src", "tgt", (TestCase(f"{i}\n", f"{i + 1}"),)) for i in range(3)]
    write_sanstype(tmp_path / "x", exs)
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": e.id, "code": H + "int main(){int a; cin>>a; cout<<a+1;}"}) + "\n"
                             for e in exs))
    return tmp_path / "x", preds


def _assert_error(r, *needles, rc=2):
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def test_good_input_scores_and_relative_empty_cache_dir_works(split, tmp_path):
    data, preds = split
    r = _cli("evaluate", "--data", data, "--predictions", preds, "--workers", 1,
             "--cache-dir", os.path.relpath(tmp_path / "fresh-cache", REPO), "--json", tmp_path / "s.json")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "s.json").read_text())["ok"] == 3
    shutil.rmtree(REPO / os.path.relpath(tmp_path / "fresh-cache", REPO), ignore_errors=True)


def test_duplicate_ids_are_refused_with_both_lines(split):
    data, preds = split
    lines = preds.read_text().splitlines()
    preds.write_text("\n".join(lines + [lines[1]]) + "\n")
    _assert_error(_cli("evaluate", "--data", data, "--predictions", preds), f"{preds}:4", "duplicate id 'x-1'", "line 2")


def test_split_without_test_cases_is_refused(split):
    data, preds = split
    for ext in (".inp", ".out"):
        data.with_suffix(ext).unlink()
    _assert_error(_cli("evaluate", "--data", data, "--predictions", preds), "no test cases")


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "abc"])
def test_bad_time_limit_is_refused(split, value):
    data, preds = split
    _assert_error(_cli("evaluate", "--data", data, "--predictions", preds, "--time-limit", value), "--time-limit")


def test_unusable_paths_are_refused(split, tmp_path):
    data, preds = split
    _assert_error(_cli("evaluate", "--data", data, "--predictions", tmp_path), "is a directory")
    _assert_error(_cli("evaluate", "--data", data, "--predictions", preds, "--json", tmp_path), "--json", "directory")
    _assert_error(_cli("evaluate", "--data", data, "--predictions", preds, "--json", preds / "s.json"),
                  "--json", "not a directory")
    _assert_error(_cli("evaluate", "--data", data, "--predictions", preds, "--cache-dir", preds), "--cache-dir")
    _assert_error(_cli("evaluate", "--data", data, "--predictions", preds, "--workers", "-2"), "--workers")
    _assert_error(_cli("make-sanstype", "--out", preds), str(preds))


def _sandbox_procs():
    """Live processes of any sandbox uid."""
    return [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit() and _is_sandboxed(d)]


def _default_sigint() -> None:
    """As in a terminal: a test suite started in the background (``cmd &`` in a script) has
    SIGINT ignored, and a Python child keeps an inherited SIG_IGN (it would never see Ctrl-C)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _session(sid: int) -> list[str]:
    """``pid state wchan cmdline`` of the processes in session ``sid`` (diagnostics)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                st = (d / "stat").read_text().rsplit(") ", 1)[1].split()
                if int(st[3]) == sid:
                    out.append(f"{d.name} {st[0]} {(d / 'wchan').read_text()} "
                               f"{(d / 'cmdline').read_bytes()[:80]!r}")
            except (OSError, IndexError):
                pass
    return out


def _is_sandboxed(d: Path) -> bool:
    try:
        return _ours(d.stat().st_uid) and (d / "stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not sandbox.capabilities()["root"], reason="needs root (sandbox uids to look for)")
@pytest.mark.parametrize("sig,rc,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_signal_stops_the_evaluation_cleanly(split, tmp_path, sig, rc, word):
    data, preds = split
    hog = H + "int main(){ if (fork() == 0) { setsid(); sleep(1000); } volatile long x = 0; while (true) x++; }"
    preds.write_text("".join(json.dumps({"id": f"x-{i}", "code": hog + f"// {i}"}) + "\n" for i in range(3)))
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}   # the sandbox directory is created under TMPDIR
    err_path = tmp_path / "stderr.txt"   # a file, not a pipe: the exit is what is waited for
    with open(err_path, "w") as err_f:
        proc = subprocess.Popen([sys.executable, "-m", "simulations.code", "evaluate", "--data", str(data),
                                 "--predictions", str(preds), "--time-limit", "60", "--workers", "2"],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err_f, text=True,
                                start_new_session=True, preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 120
        while len(_sandbox_procs()) < 2 and time.monotonic() < deadline:   # programs are running
            time.sleep(0.2)
        assert _sandbox_procs(), "the evaluation never started its programs"
        # Ctrl-C reaches the whole foreground process group; SIGTERM only the main process.
        (os.killpg if sig == signal.SIGINT else os.kill)(proc.pid, sig)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit 60 s after {sig.name}; its processes: {_session(proc.pid)}; "
                        f"stderr: {err_path.read_text()[-2000:]}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out, err = "", err_path.read_text()
    assert proc.returncode == rc, (out, err)
    assert "Traceback" not in err and err.strip().count("\n") == 0 and word in err, err
    deadline = time.monotonic() + 10   # killed processes may take a moment to be reaped
    while _sandbox_procs() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _sandbox_procs() == []
    assert list(tmp.iterdir()) == []


def test_code_config_refuses_negative_or_non_finite_numbers():
    """Every numeric field of CodeConfig, set negative (or NaN), is refused naming that field."""
    from dataclasses import fields, replace

    from composedft.config import ConfigError
    from simulations.code.config import PRESETS
    base = PRESETS["toy"]
    numeric = [f.name for f in fields(base) if type(getattr(base, f.name)) in (int, float)]
    assert {"eval_workers", "time_limit_s", "direct_steps", "n_labeled", "threads"} <= set(numeric)
    for name in numeric:
        for bad in (-1, float("nan")):
            with pytest.raises(ConfigError, match=f"field '{name}'"):
                replace(base, **{name: type(getattr(base, name))(bad) if bad == -1 else bad})
    with pytest.raises(ConfigError, match="field 'time_limit_s'"):
        replace(base, time_limit_s=0.0)


def test_progress_prints_plain_lines_when_not_a_terminal():
    import io

    from simulations.code.progress import Progress
    buf = io.StringIO()                       # not a tty: periodic plain lines, no bar
    with Progress(4, "programs", every_s=0.0, stream=buf) as bar:
        for passed in (True, False, True, True):
            bar.update(passed)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 5                    # one per update (every_s=0) and one at the end
    assert lines[1].startswith("2/4 programs,") and "pass rate 50.0%" in lines[1]
    assert lines[-1].startswith("4/4 programs,") and "pass rate 75.0%" in lines[-1]
    quiet = io.StringIO()
    with Progress(2, "programs", enabled=False, stream=quiet) as bar:
        bar.update(True)
    assert quiet.getvalue() == ""
