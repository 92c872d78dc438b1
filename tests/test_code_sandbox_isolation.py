"""Judge integrity (docs/sandbox.md): a program cannot read the answers, outlive the evaluation,
starve later programs, keep IPC objects, exceed the run's total memory or disk, or leak a
root-only file through the compiler. Each test asserts the verdict *and* that nothing is left
(processes of sandbox uids, SysV IPC objects, compiler temporaries in /tmp), and, where it can,
a control showing the attack works without the sandbox (so the test can fail)."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from simulations.code import sandbox
from simulations.code.data import Example, TestCase
from simulations.code.evaluator import Compiler, Evaluator, default_cache_dir

CAPS = sandbox.capabilities()
# Our runs get their own uid range, so that another evaluation running on a shared machine is
# not mistaken for something our runs left behind (sandbox uid = UID_BASE + worker pid).
sandbox.UID_BASE = 3_000_000
os.environ["COMPOSEDFT_SANDBOX_UID_BASE"] = str(sandbox.UID_BASE)   # for CLI subprocesses


def _ours(uid: int) -> bool:
    return sandbox.UID_BASE <= uid < sandbox.UID_BASE + sandbox.UID_SPAN


pytestmark = [pytest.mark.gpp, pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not on PATH")]
needs_root = pytest.mark.skipif(not CAPS["root"], reason="needs root (sandbox uid switch)")
needs_jail = pytest.mark.skipif(not CAPS["namespaces"],
                                reason="kernel/container refuses mount+pid+ipc+net namespaces or chroot")

H = "#include <bits/stdc++.h>\n#include <unistd.h>\n#include <sys/wait.h>\n#include <sys/ipc.h>\n" \
    "#include <sys/shm.h>\n#include <sys/sem.h>\n#include <sys/msg.h>\n#include <sys/prctl.h>\n" \
    "#include <fcntl.h>\nusing namespace std;\n"


def _ipc() -> dict[str, list[str]]:
    """Lines of /proc/sysvipc/* (host IPC namespace)."""
    return {k: Path(f"/proc/sysvipc/{k}").read_text().splitlines()[1:] for k in ("shm", "sem", "msg")}


def _sandbox_procs() -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if _ours(d.stat().st_uid) and (d / "stat").read_text().split(") ")[1][0] != "Z":
                    out.append(int(d.name))
            except (OSError, IndexError):
                pass
    return out


def _procs_with(marker: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def _tmp_litter() -> set[str]:
    """/tmp entries a run could have left: owned by a sandbox uid, or named by our tests.
    (Root-owned ``cc*`` files of other users' compilers on a shared machine are not ours.)"""
    out = set()
    for e in os.scandir("/tmp"):
        try:
            if e.name.startswith("cft_adv") or _ours(e.stat(follow_symlinks=False).st_uid):
                out.add(e.name)
        except OSError:
            pass
    return out


@pytest.fixture
def clean_state():
    """Snapshot IPC objects and /tmp; after the test assert nothing was added or left running."""
    ipc, tmp = _ipc(), _tmp_litter()
    yield
    assert _sandbox_procs() == []
    assert _ipc() == ipc
    assert _tmp_litter() - tmp == set()


def _evaluate(progs: dict[str, str], output: str = "1\n", workers: int = 1, **kw):
    ev = Evaluator(workers=workers, time_limit_s=kw.pop("time_limit_s", 1.0), **kw)
    exs = [Example(k, "", "", (TestCase("", output),)) for k in progs]
    recs, _ = ev.evaluate({k: H + v for k, v in progs.items()}, exs)
    return {r["id"]: r for r in recs}


@needs_root
@needs_jail
def test_program_cannot_read_answers_predictions_or_repository(tmp_path, clean_state):
    answers = tmp_path / "val.out"
    answers.write_text("SECRET-ANSWER\n")
    reader = ("int main(){ const char *ps[] = {\"%s\", \"%s\", \"/root\", \"/proc/1/cmdline\"};"
              " for (auto p : ps) { FILE *f = fopen(p, \"r\"); if (f) { char b[64] = {0};"
              " if (fgets(b, 63, f)) { cout << b; return 0; } } } cout << \"blind\" << endl; }"
              % (answers, Path(__file__).resolve()))
    # control: the same binary run directly (as root, outside the sandbox) does read the answer
    binp, msg = Compiler(default_cache_dir()).compile(H + reader)
    assert binp is not None, msg
    assert subprocess.run([str(binp)], capture_output=True).stdout == b"SECRET-ANSWER\n"
    rec = _evaluate({"cheat": reader}, output="SECRET-ANSWER\n")["cheat"]
    assert (rec["status"], rec["detail"]) == ("wrong_answer", "expected 'SECRET-ANSWER\\n', got 'blind\\n'")


@needs_root
@needs_jail
def test_setuid_child_neither_elevates_nor_outlives(clean_state):
    marker = "cft_adv_setuid_marker"
    prog = ("int main(){ int p[2]; pipe(p); if (fork() == 0) { dup2(p[0], 0);"
            f" execl(\"/usr/bin/su\", \"su\", \"-c\", \"{marker}\", \"root\", (char*)0); _exit(9); }}"
            " if (fork() == 0) { setsid(); sleep(100); }"   # holds the pipe: su would wait forever
            " cout << prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) << endl; }")
    rec = _evaluate({"su": prog})["su"]
    assert rec["status"] == "ok", rec                    # prints 1: PR_SET_NO_NEW_PRIVS is set
    assert _procs_with(marker) == []                     # su (root-owned if elevated) is gone


@needs_root
def test_orphans_and_zombies_do_not_starve_later_programs(clean_state):
    # 15 orphaned grandchildren per run (they exit at once: zombies unless someone reaps them);
    # then honest programs that need 8 processes each must still fork on the same worker.
    zombies = ("int main(){ for (int i = 0; i < 15; i++) if (fork() == 0) { if (fork() == 0) _exit(0);"
               " _exit(0); } usleep(200000); cout << 1 << endl; }")
    honest = ("int main(){ int ok = 0; for (int i = 0; i < 8; i++) { pid_t c = fork(); if (c == 0) _exit(0);"
              " if (c > 0) { waitpid(c, 0, 0); ok++; } } cout << (ok == 8) << endl; }")
    progs = {"zombies": zombies, **{f"honest{i}": honest + f"// {i}" for i in range(12)}}
    recs = _evaluate(progs, workers=1)
    assert {k: r["status"] for k, r in recs.items()} == {k: "ok" for k in progs}


@needs_root
def test_root_only_file_does_not_leak_through_the_compiler(tmp_path, clean_state):
    secret = Path("/root") / "cft_adv_secret.h"
    secret.write_text("int cft_secret_value = 424242;\n")
    secret.chmod(0o600)
    try:
        inc = f"#include \"{secret}\"\nint main(){{ cout << cft_secret_value << endl; }}"
        incbin = (f"asm(\".section .rodata\\n.global s\\ns: .incbin \\\"{secret}\\\"\\n.byte 0\\n.text\");"
                  " extern const char s[]; int main(){ cout << s; }")
        # control: as root outside the sandbox, g++ reads it
        src = tmp_path / "c.cpp"
        src.write_text(H + inc)
        assert subprocess.run(["g++", str(src), "-o", str(tmp_path / "c")], capture_output=True).returncode == 0
        recs = _evaluate({"include": inc, "incbin": incbin}, output="424242\n")
        for r in recs.values():
            assert r["status"] == "compile_error", r
            assert "424242" not in r["detail"]
    finally:
        secret.unlink()


@needs_root
@needs_jail
def test_sysv_ipc_objects_die_with_the_run(clean_state):
    prog = ("int main(){ int m = shmget(IPC_PRIVATE, 1 << 20, IPC_CREAT | 0600); shmat(m, 0, 0);"
            " int s = semget(IPC_PRIVATE, 1, IPC_CREAT | 0600); int q = msgget(IPC_PRIVATE, IPC_CREAT | 0600);"
            " cout << (m >= 0 && s >= 0 && q >= 0) << endl; }")   # prints 1 only if all three exist
    assert _evaluate({"ipc": prog})["ipc"]["status"] == "ok"


@needs_root
def test_memory_limit_is_per_run_not_per_process(clean_state):
    def forks(n):
        return (f"int main(){{ for (int i = 0; i < {n}; i++) if (fork() == 0) {{ char *p = (char*)malloc(96 << 20);"
                " memset(p, 1, 96 << 20); sleep(3); _exit(0); } while (wait(0) > 0) {} cout << 1 << endl; }")
    recs = _evaluate({"one": forks(1), "eight": forks(8)}, memory_bytes=256 << 20, time_limit_s=2.0)
    assert recs["one"]["status"] == "ok", recs["one"]                  # 96 MB in total: fine
    assert (recs["eight"]["status"], recs["eight"]["detail"]) == ("runtime_error", "memory limit exceeded")


@needs_root
def test_disk_is_capped_in_total_not_per_file(clean_state):
    binp, msg = Compiler(default_cache_dir()).compile(
        H + "int main(){ string b(1 << 20, 'x'); long total = 0; for (int i = 0; i < 64; i++) {"
            " FILE *f = fopen((\"f\" + to_string(i)).c_str(), \"w\"); if (!f) break;"
            " size_t n = fwrite(b.data(), 1, b.size(), f); if (fclose(f) != 0) n = 0; total += n;"
            " if (n < b.size()) break; } cout << total << endl; }")
    assert binp is not None, msg
    lim = sandbox.Limits(time_s=2.0, disk_bytes=8 << 20, output_bytes=2 << 20)
    r = sandbox.run(["../prog"], "", lim, files={"prog": binp})
    if CAPS["namespaces"]:   # a tmpfs of 8 MB: writes fail once it is full
        assert r.status == "ok" and (6 << 20) <= int(r.stdout) <= (8 << 20), (r.status, r.stdout)
    else:                    # fallback: polling stops the run
        assert r.status == "runtime_error"
    r2 = sandbox.run(["/bin/sh", "-c", "ls | wc -l"], "", lim)
    assert r2.stdout == b"0\n"                                          # the directory was emptied


def test_verdict_is_cpu_time_not_wall_time(clean_state):
    binp, msg = Compiler(default_cache_dir()).compile(
        H + "int main(){ usleep(1500000); volatile long x = 0; for (long i = 0; i < 1000; i++) x++;"
            " cout << 1 << endl; }")
    assert binp is not None, msg
    r = sandbox.run(["../prog"], "", sandbox.Limits(time_s=1.0), files={"prog": binp})
    assert r.status == "ok" and r.wall_s > 1.4 and r.cpu_s < 0.5        # slept 1.5 s of wall time
    r = sandbox.run(["/bin/sh", "-c", "sleep 30"], "", sandbox.Limits(time_s=1.0, wall_s=2.0))
    assert r.status == "timeout" and 1.9 < r.wall_s < 10                 # the wall-clock backstop


def test_compiler_limits_are_not_cached_and_leave_no_temporaries(monkeypatch, clean_state):
    from simulations.code import compiler as cc
    # 2^17 distinct template instantiations: several CPU-seconds of g++, far over 0.3 s
    slow = (H + "template<int N, int M> struct T { static const long v = T<N - 1, 2 * M>::v + T<N - 1, 2 * M + 1>::v; };\n"
                "template<int M> struct T<0, M> { static const long v = M % 7; };\n"
                "int main(){ cout << T<17, 0>::v << endl; }")
    c = Compiler(default_cache_dir())
    c.pch_include_dir()
    monkeypatch.setattr(cc, "COMPILE_LIMITS", sandbox.Limits(time_s=0.3, wall_s=20, memory_bytes=2 << 30,
                                                             disk_bytes=64 << 20, nproc=32, nofile=256))
    h = cc.hashlib.sha256((c.key + "\0" + slow).encode()).hexdigest()
    err = c.cache_dir / "bin" / h[:2] / (h + ".err")
    for _ in range(2):   # the second call compiles again: the first verdict was not cached
        binp, msg = c.compile(slow)
        assert binp is None and msg.startswith("compiler stopped: time limit exceeded"), msg
        assert not err.exists() and not err.with_suffix("").exists()


@needs_root
@needs_jail
def test_children_are_gone_the_moment_a_normal_run_returns(tmp_path, clean_state):
    # A normal exit is the path on which sandbox.run no longer scans /proc (the namespace's init
    # was reaped, so its PID namespace is empty): a daemonized grandchild must already be dead
    # when run() returns, not merely killed later by a scan.
    src = H + ("int main(){ if (fork() == 0) { setsid(); if (fork() == 0) { prctl(PR_SET_NAME, \"cft_daemon\");"
               " for (;;) pause(); } _exit(0); } usleep(50000); cout << 1 << endl; }")
    (tmp_path / "d.cpp").write_text(src)   # our own source: built outside the sandbox
    subprocess.run(["g++", "-O0", "-o", str(tmp_path / "d"), str(tmp_path / "d.cpp")], check=True)
    exe = str(tmp_path / "d")
    for _ in range(3):
        r = sandbox.run(["../prog"], "", sandbox.Limits(time_s=1.0), files={"prog": exe})
        assert r.status == "ok" and r.stdout == b"1\n"
        assert _sandbox_procs() == []


def test_bench_sandbox_prints_its_ratio(capsys):
    from simulations.code import bench_sandbox
    assert bench_sandbox.main(["--n", "6"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3].startswith("bare subprocess.run: ") and lines[-2].startswith("sandbox.run (isolated worker): ")
    assert lines[-1].startswith("sandboxed/bare run time: ") and float(lines[-1].split()[-1].rstrip("x")) > 0
