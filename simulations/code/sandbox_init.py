"""The init of every jailed run, in C: built once per evaluation from the source below.

The init of one sandboxed run (docs/sandbox.md §2), exec'd (as root, by an isolated worker)
with the run's limits:

  cft-init JAIL UID STATUS_FD CPU_S AS_BYTES FSIZE_BYTES NPROC NOFILE PROGRAM [ARGS...]

It (A) takes parent-death SIGKILL, enters fresh PID + IPC namespaces and the jail (chroot,
cwd /box), and forks B, the PID namespace's init: B drops to UID (no groups, PR_SET_NO_NEW_PRIVS,
parent-death SIGKILL), forks C, the program (rlimits, then execvp), reaps every process of the
namespace until C is gone, and writes one record per event to STATUS_FD:
  struct { int32 kind; int32 value; double cpu_s; }  kind 0: value = C's wait status,
  cpu_s = CPU time of everything B reaped;  kind 1: exec failed, value = errno.
When B exits the kernel kills whatever is left in the namespace and frees its IPC objects.
Written in C rather than as a Python ``preexec_fn``: forking a Python worker twice per run cost
more than the run, and without a ``preexec_fn`` ``subprocess`` can use ``vfork``.

Built by the evaluating user from this trusted source (never from a submission) into the
sandbox directory (outside every jail).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

__all__ = ["SOURCE", "build_init", "RECORD_SIZE"]

RECORD_SIZE = 16  # struct record: int32 kind, int32 value, double cpu_s (packed)

SOURCE = r"""#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

struct __attribute__((packed)) record { int32_t kind; int32_t value; double cpu_s; };

static void limit(int what, unsigned long long soft, unsigned long long hard) {
    struct rlimit r = {soft, hard};
    if (setrlimit(what, &r) != 0) _exit(125);
}

static void report(int fd, int32_t kind, int32_t value, double cpu) {
    struct record rec = {kind, value, cpu};
    if (write(fd, &rec, sizeof rec) != (ssize_t)sizeof rec) _exit(125);
}

int main(int argc, char **argv) {
    if (argc < 10) return 125;
    uid_t uid = (uid_t)strtoul(argv[2], 0, 10);
    int sfd = atoi(argv[3]);
    unsigned long long cpu = strtoull(argv[4], 0, 10), as = strtoull(argv[5], 0, 10),
        fsize = strtoull(argv[6], 0, 10), nproc = strtoull(argv[7], 0, 10), nofile = strtoull(argv[8], 0, 10);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) || unshare(CLONE_NEWPID | CLONE_NEWIPC)
        || chroot(argv[1]) || chdir("/box")) return 125;
    pid_t b = fork();
    if (b < 0) return 125;
    if (b > 0) {  /* outside the namespace: wait for its init, then leave */
        int st;
        close(sfd);
        while (waitpid(b, &st, 0) < 0 && errno == EINTR) {}
        return 0;
    }
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (setgroups(0, 0) || setgid(uid) || setuid(uid)) _exit(125);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) _exit(125);
    pid_t c = fork();
    if (c < 0) _exit(125);
    if (c == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) || fcntl(sfd, F_SETFD, FD_CLOEXEC)) _exit(125);
        limit(RLIMIT_CPU, cpu, cpu + 1);
        limit(RLIMIT_AS, as, as);
        limit(RLIMIT_FSIZE, fsize, fsize);
        limit(RLIMIT_NPROC, nproc, nproc);
        limit(RLIMIT_NOFILE, nofile, nofile);
        limit(RLIMIT_CORE, 0, 0);
        execvp(argv[9], argv + 9);
        report(sfd, 1, errno, 0.0);
        _exit(127);
    }
    double total = 0.0;
    for (;;) {
        int st;
        struct rusage ru;
        pid_t p = wait4(-1, &st, 0, &ru);
        if (p < 0) {
            if (errno == EINTR) continue;
            _exit(125);
        }
        total += ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + 1e-6 * (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
        if (p == c) {
            report(sfd, 0, st, total);
            _exit(0);
        }
    }
}
"""


def build_init(directory: Path, cc: str = "g++") -> Path:
    """Compile :data:`SOURCE` into ``directory`` (once per source hash); returns the binary."""
    h = hashlib.sha256(SOURCE.encode()).hexdigest()[:16]
    out = directory / f"cft-init-{h}"
    if out.exists():
        return out
    tmp = directory / f".cft-init-{h}.{os.getpid()}.tmp"
    proc = subprocess.run([cc, "-x", "c", "-O2", "-o", str(tmp), "-"], input=SOURCE.encode(),
                          capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"building the sandbox init failed: {proc.stderr.decode(errors='replace')[:2000]}")
    tmp.chmod(0o755)
    tmp.rename(out)
    return out
