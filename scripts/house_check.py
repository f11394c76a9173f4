#!/usr/bin/env python3
"""Structure checks for the workspace (issue 18), printed as a report.

- import loops: per crate, the modules (files) that reach each other through
  `crate::`/`super::` paths in non-test code (strongly connected components of
  the module graph; a file's `mod` declarations do not count as imports);
- stage imports: which `pipeline/src/stages/*` modules name another stage;
- long functions: every `fn` in `pipeline/src` longer than the limit.

Usage: python3 scripts/house_check.py [--max-fn-lines 150]
Exits 1 when a loop, or a function over the limit in pipeline/, is found.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CRATES = ["data", "student", "critic", "pipeline"]


def strip_tests_and_comments(text: str) -> str:
    """Drops `#[cfg(test)] mod` items (to the end of the file), comments,
    and the contents of string and char literals, so that only code is
    scanned."""
    m = re.search(r"^\s*#\[cfg\(test\)\]\s*\n\s*mod \w+", text, re.M)
    if m:
        text = text[: m.start()]
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + len(hashes) + 2)
            j = n if end < 0 else end + 1 + len(hashes)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^'\\])'", text[i:])
            if m:
                out.append("' '")
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(src: Path, file: Path) -> tuple:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def resolve(path: list, modules: set) -> tuple | None:
    """The longest prefix of `path` that names a module."""
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in modules:
            return tuple(path[:n])
    return None


def use_paths(code: str):
    """Every `crate::a::b` / `super::a` path in the code, with `use` groups
    expanded one level (`use crate::x::{a, b::c}`)."""
    for m in re.finditer(r"\b((?:crate|super)(?:::\w+)*)::\{([^}]*)\}", code):
        base = m.group(1).split("::")
        for item in m.group(2).split(","):
            item = item.strip().split(" as ")[0]
            if item:
                yield base + item.split("::")
    for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", code):
        yield m.group(1).split("::")


def module_graph(crate: str):
    src = ROOT / crate / "src"
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f): f for f in files}
    graph = {m: set() for m in modules}
    for mod, f in modules.items():
        code = strip_tests_and_comments(f.read_text())
        for path in use_paths(code):
            if path[0] == "crate":
                target = list(path[1:])
            else:
                # `super` names the parent of the module the file defines.
                target, rest = list(mod), list(path)
                while rest and rest[0] == "super":
                    target, rest = target[:-1], rest[1:]
                target += rest
            t = resolve(target, set(modules))
            if t is not None and t != mod:
                graph[mod].add(t)
        # paths into a child module (`arith::Arith`, `self::arith::Arith`);
        # `mod arith;` itself is a declaration, not an import
        body = re.sub(r"\bmod \w+\s*;", "", code)
        for m in re.finditer(r"(?<![\w:])(?:self::)?(\w+)::\w+", body):
            child = mod + (m.group(1),)
            if child in modules:
                graph[mod].add(child)
    return graph


def sccs(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def strip_literals(text: str) -> str:
    """Comments and literals blanked, line breaks kept, tests kept."""
    marker = "\u0000cfg_test\u0000"
    return strip_tests_and_comments(text.replace("#[cfg(test)]", marker)).replace(marker, "")


def long_functions(crate: str, limit: int):
    """Every `fn` whose body, brace to brace, spans more than `limit` lines."""
    out = []
    for f in sorted((ROOT / crate / "src").rglob("*.rs")):
        code = strip_literals(f.read_text())
        for m in re.finditer(r"\bfn (\w+)[^;{]*\{", code):
            depth, j = 0, m.end() - 1
            while j < len(code):
                if code[j] == "{":
                    depth += 1
                elif code[j] == "}":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            start = code.count("\n", 0, m.start()) + 1
            end = code.count("\n", 0, j) + 1
            if end - start + 1 > limit:
                out.append((f.relative_to(ROOT), m.group(1), end - start + 1))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-fn-lines", type=int, default=150)
    args = ap.parse_args()
    bad = False
    print("## import loops (non-test code)")
    for crate in CRATES:
        loops = sccs(module_graph(crate))
        if not loops:
            print(f"- {crate}: none")
        for comp in loops:
            bad = True
            names = ", ".join("::".join(m) or "lib" for m in comp)
            print(f"- {crate}: {len(comp)} modules in a loop: {names}")
    print("\n## stage modules naming another stage (the stages of `STAGES`)")
    graph = module_graph("pipeline")
    registry = (ROOT / "pipeline/src/stages/mod.rs").read_text()
    stages = {("stages", name) for name in re.findall(r"(\w+)::STAGE\b", registry)}
    named = 0
    for s in sorted(stages):
        others = sorted("::".join(t) for t in graph[s] if t in stages)
        if others:
            named += 1
            print(f"- {s[1]} -> {', '.join(o.split('::')[1] for o in others)}")
    if not named:
        print("- no stage names another")
    outside = sorted(
        "::".join(m) for m in graph if m not in stages and m != ("stages",)
        and any(t in stages for t in graph[m])
    )
    print(f"- modules outside stages/ naming a stage: {', '.join(outside) or 'none'}")
    print(f"\n## functions over {args.max_fn_lines} lines")
    for crate in CRATES:
        for path, name, n in long_functions(crate, args.max_fn_lines):
            if crate == "pipeline":
                bad = True
            print(f"- {path}: {name} ({n} lines)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
