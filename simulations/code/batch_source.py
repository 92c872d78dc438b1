"""Many programs in one translation unit, and the checks that make that safe (docs/sandbox.md §8).

A program ``P`` is *batchable* when compiling it inside ``namespace _Cft_bNNNN { ... }`` of a
shared translation unit provably gives the same compile verdict and the same process behaviour
as compiling it alone. :func:`prepare` refuses (returns None, the program is compiled alone as
before) whenever that cannot be checked cheaply:

* the source must start with ``#include <bits/stdc++.h>`` and carry no other preprocessor
  directive than ``#include`` of a header that is a verified no-op after it (``#define`` would
  leak into the next program; another include would change what the others see);
* no ``namespace`` (but ``using namespace std;``), ``extern``, ``asm``, attributes, ``goto``,
  ``throw``, ``typeid``, ``assert``, ``__LINE__``/``__func__``-style names (their text or the
  stderr of a failing run would name the wrapper), no leading ``::`` (it would leave the wrapper);
* ``main`` appears once, as ``int main()``/``int main(void)`` at file scope; it is renamed
  ``_Cft_main`` and ``return 0;`` is appended to its body (what falling off ``main`` means);
* no name the program may declare at file scope is declared at file scope or in ``std`` by the
  headers (:func:`declared_names` over-approximates both sides): in a namespace such a name would
  *hide* the library's instead of clashing or overloading with it, which can change a compile
  verdict (``int count;`` is ambiguous alone) or an overload choice (a user ``pow``).

What the compiled batch still has to show (no dynamic initialisation, little static data per
program) is checked on its assembly by :func:`analyse_asm`.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

__all__ = ["PREFIX", "ENTRY", "STDCXX", "lex", "declared_names", "header_scope_names", "prepare",
           "assemble", "analyse_asm"]

PREFIX = "_Cft_b"          # namespace of program i: _Cft_b0007 (fixed width: unambiguous when mangled)
ENTRY = "_Cft_main"
TABLE = "_Cft_entries"
STDCXX = "bits/stdc++.h"

_TOKEN = re.compile(r"""
    (?P<comment>//[^\n]*|/\*(?:[^*]|\*(?!/))*\*/)
  | (?P<include>\#[ \t]*include[ \t]*<[^>\n]*>)
  | (?P<hash>\#)
  | (?P<string>(?:u8|u|U|L)?R"(?P<delim>[^()\\\s]{0,16})\((?:.|\n)*?\)(?P=delim)"|(?:u8|u|U|L)?"(?:\\.|[^"\\\n])*")
  | (?P<char>(?:u8|u|U|L)?'(?:\\.|[^'\\\n])*')
  | (?P<number>\.?[0-9](?:[eEpP][+-]|[0-9A-Za-z_.]|(?<=[0-9A-Fa-f])'(?=[0-9A-Fa-f]))*)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>>>=|<<=|->\*|\.\.\.|::|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^]=|\.\*|[-+*/%&|^~!=<>?:;,.(){}\[\]])
  | (?P<ws>\s+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
_HEADER_TOKEN = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|[A-Za-z_]\w*|::|->|[{};.]')
_DIGRAPH = re.compile(r"<:|:>|<%|%>|%:")

KEYWORDS = frozenset("""alignas alignof and and_eq asm auto bitand bitor bool break case catch char char16_t
char32_t class compl const constexpr const_cast continue decltype default delete do double dynamic_cast
else enum explicit export extern false float for friend goto if inline int long mutable namespace new
noexcept not not_eq nullptr operator or or_eq private protected public register reinterpret_cast return
short signed sizeof static static_assert static_cast struct switch template this thread_local throw true
try typedef typeid typename union unsigned using virtual void volatile wchar_t while xor xor_eq __int128
__typeof__ __typeof typeof __restrict __restrict__ __extension__ __inline __inline__ __signed__ __const
__volatile__ __alignof__ __label__ __attribute__ __attribute __asm__ __asm __thread __decltype""".split())
# Names whose use makes wrapping observable or unsafe (module docstring).
FORBIDDEN = frozenset("""namespace extern asm __asm__ __asm __attribute__ __attribute __declspec goto throw typeid
thread_local __thread _Pragma assert __LINE__ __FILE__ __BASE_FILE__ __func__ __FUNCTION__ __PRETTY_FUNCTION__
__COUNTER__ __DATE__ __TIME__ __TIMESTAMP__ __INCLUDE_LEVEL__""".split())
_TAG = {"struct", "class", "union", "enum"}


def _tokens(src: str) -> list[tuple[str, str, int]]:
    out = []
    for m in _TOKEN.finditer(src):
        kind = "string" if m.lastgroup == "delim" else m.lastgroup
        if kind not in ("ws", "comment"):
            out.append((kind, m.group(0), m.start()))
    return out


def lex(src: str) -> list[tuple[str, str, int]] | None:
    """(kind, text, offset) of every token but whitespace and comments; None when the source has
    something this lexer does not model (a line splice, a digraph, a stray character)."""
    if "\\\n" in src or "\\\r" in src or "\0" in src or _DIGRAPH.search(src):
        return None
    out = _tokens(src)
    return None if any(k == "other" for k, _, _ in out) else out


def _is_name(t: str) -> bool:
    return bool(t) and (t[0].isalpha() or t[0] == "_") and t not in KEYWORDS


def declared_names(toks: Sequence[str]) -> set[str] | None:
    """Over-approximation of the names a translation unit declares at file scope (tokens of a
    program without directives). Function, class and initializer bodies are skipped; enumerator
    lists are kept (unscoped enumerators live in the enclosing scope). A name counts unless it is
    plainly a use: qualified (``a::x``, ``a.x``), followed by ``<``/``::``/a name/``*``/``&`` (a
    type or template in a declaration), inside ``<...>``/``[...]``, in an initializer, or a
    function parameter. Returns None on unbalanced brackets."""
    out: set[str] = set()
    depth = paren = square = angle = 0
    init = False
    enum_depth = None
    stmt_start = 0
    for i, t in enumerate(toks):
        prev = toks[i - 1] if i else ""
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        if t == "{":
            if depth == 0 and "enum" in toks[stmt_start:i]:
                enum_depth = 1
            depth += 1
            continue
        if t == "}":
            depth -= 1
            if depth < 0:
                return None
            if depth == 0:
                enum_depth = None
                stmt_start = i + 1
            continue
        if depth > 0:
            if enum_depth is not None and depth == enum_depth and _is_name(t):
                out.add(t)
            continue
        if t == "(":
            paren += 1
        elif t == ")":
            paren -= 1
        elif t == "[":
            square += 1
        elif t == "]":
            square -= 1
        elif t == "<" and (_is_name(prev) or prev == "template") and not init and not square:
            angle += 1
        elif t in (">", ">>") and angle:
            angle = max(0, angle - len(t))
        elif t == "=" and not paren and not square and not angle:
            init = True
        elif t in (",", ";") and not paren and not square and not angle:
            init = False
            if t == ";":
                stmt_start, angle = i + 1, 0
        if min(paren, square) < 0:
            return None
        if not _is_name(t):
            continue
        if toks[stmt_start:stmt_start + 2] == ["using", "namespace"]:
            continue   # the directive names a namespace, it declares nothing
        if toks[stmt_start:stmt_start + 1] == ["using"] and nxt == ";":
            out.add(t)   # using-declaration: std::x becomes a file-scope name
        elif init or square or angle:
            continue
        elif prev in _TAG:
            out.add(t)
        elif prev in ("::", ".", "->") or nxt in ("<", "::", "*", "&", "&&", "...") or _is_name(nxt) or nxt in KEYWORDS:
            continue
        elif paren and not (prev in ("(", "*") and nxt == ")"):
            continue   # a parameter (or an argument); ``(x)`` / ``(*fp)`` may be a declarator
        else:
            out.add(t)
    return out if depth == paren == square == 0 else None


def header_scope_names(preprocessed: str) -> frozenset[str]:
    """Every identifier at file scope or directly in ``std`` (and its inline namespaces,
    ``extern "C"`` blocks and enumerator lists) of preprocessed header text, except members named
    through a qualifier: a superset of the names the headers declare there."""
    toks = _HEADER_TOKEN.findall(preprocessed)   # fast: headers are megabytes, their numbers don't matter
    stack: list[bool] = []
    out: set[str] = set()
    stmt: list[str] = []
    for i, t in enumerate(toks):
        opaque = not all(stack)
        if t == "{":
            tr = False
            if "namespace" in stmt:
                k = len(stmt) - 1 - stmt[::-1].index("namespace")
                name = stmt[k + 1] if k + 1 < len(stmt) and _is_name(stmt[k + 1]) else None
                tr = name in (None, "std") or (k > 0 and stmt[k - 1] == "inline")
            elif "extern" in stmt or "enum" in stmt:
                tr = True
            stack.append(tr)
            stmt = []
        elif t == "}":
            if stack:
                stack.pop()
            stmt = []
        elif t == ";":
            if not opaque and stmt[:1] == ["using"] and stmt and _is_name(stmt[-1]):
                out.add(stmt[-1])
            stmt = []
        else:
            stmt.append(t)
            if not opaque and _is_name(t) and (i == 0 or toks[i - 1] not in ("::", ".", "->")):
                out.add(t)
    return frozenset(out)


def _alone_on_line(src: str, start: int, end: int) -> bool:
    """Is src[start:end] a directive by itself on its line? (Extra tokens after ``#include <x>``
    are ignored by g++: removing the include must not turn them into code.)"""
    head = src[src.rfind("\n", 0, start) + 1:start]
    stop = src.find("\n", end)
    tail = src[end:stop if stop >= 0 else len(src)]
    return not head.strip() and re.fullmatch(r"[ \t\r]*(//.*)?", tail) is not None


def prepare(src: str, header_names: frozenset[str], noop_headers: Iterable[str] = ()) -> str | None:
    """The program's text to put inside its namespace, or None if it must be compiled alone."""
    if "_Cft_" in src:
        return None
    lexed = lex(src)
    if not lexed or lexed[0][0] != "include" or not lexed[0][1].endswith(f"<{STDCXX}>"):
        return None
    if not all(_alone_on_line(src, off, off + len(text)) for kind, text, off in lexed if kind == "include"):
        return None
    allowed = set(noop_headers) | {STDCXX}
    drop: list[tuple[int, int]] = [(lexed[0][2], lexed[0][2] + len(lexed[0][1]))]
    toks: list[tuple[str, str, int]] = []
    for kind, text, off in lexed[1:]:
        if kind == "include":
            if text[text.index("<") + 1:-1] not in allowed:
                return None
            drop.append((off, off + len(text)))
        elif kind == "hash" or text in FORBIDDEN and (kind == "name") and text != "namespace":
            return None
        else:
            toks.append((kind, text, off))
    words = [t for _, t, _ in toks]
    for i, t in enumerate(words):
        if t == "namespace" and words[i - 1:i + 3] != ["using", "namespace", "std", ";"]:
            return None
        if t == "::" and not (i and (_is_name(words[i - 1]) or words[i - 1] == ">")):
            return None
        if t == "[" and i + 1 < len(words) and words[i + 1] == "[":
            return None   # [[attribute]]
    if words.count("main") != 1 or not words or words[-1] not in ("}", ";"):
        return None
    m = words.index("main")
    sig = words[m - 1:m + 3] == ["int", "main", "(", ")"] or words[m - 1:m + 4] == ["int", "main", "(", "void", ")"]
    brace = m + (3 if words[m + 2] == ")" else 4)
    if not sig or m < 1 or (m >= 2 and words[m - 2] not in (";", "}")) or brace >= len(words) or words[brace] != "{":
        return None
    depth, close = 0, None
    for j in range(brace, len(words)):
        depth += {"{": 1, "}": -1}.get(words[j], 0)
        if depth == 0:
            close = j
            break
    if close is None or words[close - 1] == ":" or words[:brace].count("{") != words[:brace].count("}"):
        return None
    names = declared_names(words)
    if names is None or (names - {"main"}) & header_names:
        return None
    edits = sorted(drop + [(toks[m][2], toks[m][2] + 4, ENTRY), (toks[close][2], toks[close][2], "return 0; ")])
    out, pos = [], drop[0][1]
    for e in edits[1:]:
        out += [src[pos:e[0]], e[2] if len(e) == 3 else ""]
        pos = e[1]
    return "".join(out) + src[pos:]


# Dispatcher: ``main`` jumps (no call, no frame) to the entry named by argv[1], so the program's
# main runs on exactly the stack it would have alone, and returns straight to libc.
_DISPATCH = r"""
    .pushsection .text
    .globl main
    .type main, @function
main:
    endbr64
    movq 8(%rsi), %r8
    xorl %eax, %eax
1:  movzbl (%r8), %ecx
    testl %ecx, %ecx
    je 2f
    imull $10, %eax, %eax
    leal -48(%rax,%rcx), %eax
    incq %r8
    jmp 1b
2:  leaq _Cft_entries(%rip), %rcx
    jmp *(%rcx,%rax,8)
    .size main, .-main
    .popsection
"""


def assemble(bodies: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The batch translation unit and, per program, its 1-based line range in it. Program ``i``
    runs as ``prog i``."""
    lines = [f"#include <{STDCXX}>"]
    ranges = []
    for i, body in enumerate(bodies):
        start = len(lines) + 1
        lines += [f"namespace {PREFIX}{i:04d} {{", *body.split("\n"), "}"]
        ranges.append((start, len(lines)))
    entries = ", ".join(f"&{PREFIX}{i:04d}::{ENTRY}" for i in range(len(bodies)))
    lines += [f'extern "C" __attribute__((visibility("hidden"))) int (* const {TABLE}[])() = {{{entries}}};',
              "asm(R\"CFT(" + _DISPATCH + ")CFT\");", ""]
    return "\n".join(lines), ranges


_IDX = re.compile(PREFIX + r"(\d{4})")
_INIT_SECTIONS = (".init_array", ".preinit_array", ".fini_array", ".ctors", ".dtors")


def analyse_asm(asm: str, n: int) -> tuple[set[int], list[int]] | None:
    """(programs with dynamic initialisation or registered destructors, static bytes per program)
    from the batch's assembly; None if something runs at start-up that we cannot attribute.

    Every dynamic initialiser and every destructor registration names its variable, so the code
    reachable from ``.init_array`` names the programs that run code before ``main``."""
    funcs: dict[str, list[str]] = {}
    entries: list[str] = []
    static = [0] * n
    section, cur, is_func = ".text", None, set()
    for line in asm.splitlines():
        s = line.strip()
        if cur is not None:
            funcs[cur].append(s)
            if s.startswith(".size") and s.endswith(f", .-{cur}"):
                cur = None
            continue
        if s.startswith(".section"):
            section = s.split()[1].rstrip(",")
        elif s in (".text", ".data", ".bss"):
            section = s
        elif s.startswith(".quad") and section.startswith(_INIT_SECTIONS):
            entries.append(s.split()[1])
        elif s.startswith(".type") and s.endswith("@function"):
            is_func.add(re.split(r"[\s,]+", s)[1])
        elif s.endswith(":") and s[:-1] in is_func:
            cur = s[:-1]
            funcs[cur] = []
        elif s.startswith((".size", ".comm")):
            parts = re.split(r"[\s,]+", s)
            m = _IDX.search(parts[1]) if len(parts) > 2 else None
            if m and parts[2].isdigit() and int(m.group(1)) < n:
                static[int(m.group(1))] += int(parts[2])
    if any(not e.startswith("_GLOBAL__sub_I_") for e in entries):
        return None
    impure: set[int] = set()
    todo, seen = list(entries), set()
    while todo:
        f = todo.pop()
        if f in seen or f not in funcs:
            if f not in funcs and f in entries:
                return None
            continue
        seen.add(f)
        for s in funcs[f]:
            if s.startswith(".") or s.endswith(":"):
                continue   # directives and labels; the entry's own name carries the first symbol's
            for sym in re.findall(r"[A-Za-z_][\w.$]*", s.split(None, 1)[1] if len(s.split(None, 1)) > 1 else ""):
                m = _IDX.search(sym)
                if m and not sym.startswith("_GLOBAL__sub_I_"):
                    impure.add(int(m.group(1)))
                elif sym in funcs:
                    todo.append(sym)
    return impure, static
