"""Sandbox: hostile programs are contained, classified, and leave no processes or files."""
import os
import shutil
from pathlib import Path

import pytest

from simulations.code import sandbox
from simulations.code.data import Example, TestCase
from simulations.code.evaluator import Evaluator

# Our runs get their own uid range, so that another evaluation running on a shared machine is
# not mistaken for something our runs left behind (sandbox uid = UID_BASE + worker pid).
sandbox.UID_BASE = 3_000_000
os.environ["COMPOSEDFT_SANDBOX_UID_BASE"] = str(sandbox.UID_BASE)   # for CLI subprocesses


def _ours(uid: int) -> bool:
    return sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SPAN


pytestmark = [pytest.mark.gpp, pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")]

H = "#include <bits/stdc++.h>\n#include <unistd.h>\n#include <sys/socket.h>\n#include <netinet/in.h>\n" \
    "#include <arpa/inet.h>\nusing namespace std;\n"
MARK = "cft_adversarial_marker"
OUTSIDE = [f"/tmp/{MARK}", f"/var/tmp/{MARK}", f"/dev/shm/{MARK}", f"{Path.cwd()}/{MARK}", f"/root/{MARK}"]
ADVERSARIAL = {
    "infinite_loop": ("int main(){ volatile long x = 0; while (true) x++; }", {"timeout"}),
    "fork_bomb": ("int main(){ while (true) fork(); }", {"timeout", "runtime_error"}),
    "memory_bomb": ("int main(){ vector<char*> v; while (true) { char *p = new char[1 << 24]; "
                    "memset(p, 1, 1 << 24); v.push_back(p); } }", {"runtime_error"}),
    "output_flood": ("int main(){ string s(1 << 16, 'x'); while (true) cout << s; }", {"runtime_error"}),
    "write_outside": ("int main(){ const char *ps[] = {" + ", ".join(f'"{p}"' for p in OUTSIDE + ["../x", "own"])
                      + "}; for (auto p : ps) { FILE *f = fopen(p, \"w\"); if (f) { fputs(\"x\", f); fclose(f); } }"
                      " cout << 1 << endl; }", {"ok"}),
    "lingering_child": ("int main(){ if (fork() == 0) { setsid(); if (fork() == 0) sleep(100); return 0; }"
                        " if (fork() == 0) { close(1); sleep(100); } cout << 1 << endl; }", {"ok"}),
    "stdin_forever": ("int main(){ char b[8]; while (read(0, b, 8) <= 0) {} cout << 1 << endl; }", {"timeout"}),
    "network": ("int main(){ int s = socket(AF_INET, SOCK_STREAM, 0); sockaddr_in a{}; a.sin_family = AF_INET;"
                " a.sin_port = htons(53); inet_pton(AF_INET, \"8.8.8.8\", &a.sin_addr);"
                " cout << (connect(s, (sockaddr*)&a, sizeof a) == 0) << endl; }", {"wrong_answer"}),
}


def _sandbox_procs():
    """Live processes owned by any sandbox uid (UID_BASE + pid)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                st = (d / "stat").read_text()
                if _ours(d.stat().st_uid) and st[st.rfind(")") + 2] != "Z":
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _cleanup():
    for p in OUTSIDE:
        if os.path.exists(p):
            os.unlink(p)


@pytest.mark.parametrize("workers", [2, 1], ids=["pool", "inline"])
def test_adversarial_programs_are_contained(workers):
    _cleanup()
    ev = Evaluator(workers=workers, time_limit_s=1.0, memory_bytes=256 << 20, output_bytes=1 << 20)
    exs = [Example(k, "", "", (TestCase("", "1\n"),)) for k in ADVERSARIAL]
    recs, _ = ev.evaluate({k: H + v[0] for k, v in ADVERSARIAL.items()}, exs)
    for r in recs:
        assert r["status"] in ADVERSARIAL[r["id"]][1], r
    assert _sandbox_procs() == []                                    # nothing outlives a run
    if sandbox.capabilities()["root"]:
        assert [p for p in OUTSIDE if os.path.exists(p)] == []       # no file escaped
    root = sandbox.sandbox_root()
    assert [p for p in root.rglob("*") if p.is_file() and p.name != "prog" and not p.name.startswith("cft-init-")] == []


def test_run_reports_limits_directly(tmp_path):
    src = tmp_path / "p.cpp"
    src.write_text(H + "int main(){ string s; cin >> s; cerr << \"err\"; cout << s << getenv(\"HOME\"); "
                       "return s == \"boom\" ? 7 : 0; }")
    from simulations.code.evaluator import Compiler, default_cache_dir
    binp, msg = Compiler(default_cache_dir()).compile(src.read_text())
    assert binp is not None, msg
    r = sandbox.run(["../prog"], "hello\n", files={"prog": binp})
    assert r.status == "ok" and r.stdout.startswith(b"hello") and r.stderr == b"err"
    assert b"/root" not in r.stdout                                   # scrubbed environment
    r = sandbox.run(["../prog"], "boom\n", files={"prog": binp})
    assert (r.status, r.returncode, r.detail) == ("runtime_error", 7, "exit status 7")
    with pytest.raises(sandbox.SandboxError):
        sandbox.run([str(tmp_path / "does-not-exist")])
