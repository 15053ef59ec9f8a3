#!/usr/bin/env python3
"""Import cycles among the top-level modules of the workspace's crates.

    scripts/check-layers.py CRATE_DIR...            fails (exit 1) on a cycle
    scripts/check-layers.py --report CRATE_DIR...   prints the cycles, exit 0

A top-level module is a file or folder directly under `src/` (`lib.rs`,
`main.rs` and the binaries' roots are the top and import whatever they
like). Module A imports B when any non-test file of A names `crate::B`
(in a `use`, a `use crate::{B, ...}` group or a path; comments, docs'
links included, do not count). Test code (`tests.rs`
files, `#[cfg(test)] mod ... { }` blocks, the files of `#[cfg(test)] mod
name;` such as a test fake, and the same under
`#[cfg(any(test, feature = "testing"))]`) is left out: tests may reach across.
The rule it guards is docs/architecture.md's: layers point one way.
"""

import os
import re
import sys

ROOTS = {"lib.rs", "main.rs"}

# Test code: `#[cfg(test)]`, or `#[cfg(any(test, feature = "testing"))]`
# (test support that the crate's integration tests reach through the
# `testing` feature: the fake engine, the store contract, `test_internals`).
TEST_CFG = r'#\[cfg\((?:test|any\(test,\s*feature\s*=\s*"testing"\))\)\]'


def strip_tests(text):
    """`text` without `#[cfg(test)]` items (a module block or a `mod x;` line)."""
    out, i = [], 0
    marker = re.compile(TEST_CFG + r"\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*([;{])")
    while True:
        m = marker.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i : m.start()])
        if m.group(3) == ";":
            i = m.end()
            continue
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j


def group_names(text, start):
    """The first names inside the brace group that opens at `start`."""
    names, depth, token = [], 0, ""
    for ch in text[start:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                token = ""
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                names.append(token.strip())
                break
        if depth == 1:
            if ch == ",":
                names.append(token.strip())
                token = ""
            else:
                token += ch
    return [re.match(r"\w+", n).group(0) for n in names if re.match(r"\w+", n)]


def referenced(text):
    found = set(re.findall(r"\bcrate::(\w+)", text))
    for m in re.finditer(r"\bcrate::\{", text):
        found.update(group_names(text, m.end() - 1))
    return found


def modules(src):
    """Top-level module -> the files that make it."""
    mods = {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry in ROOTS or entry == "bin":
            continue
        if entry.endswith(".rs"):
            mods.setdefault(entry[:-3], []).append(path)
        elif os.path.isdir(path):
            for dirpath, _, files in os.walk(path):
                for f in files:
                    if f.endswith(".rs"):
                        mods.setdefault(entry, []).append(os.path.join(dirpath, f))
    return mods


TEST_MOD = re.compile(TEST_CFG + r"\s*(pub(\([^)]*\))?\s+)?mod\s+(\w+)\s*;")


def test_only(files):
    """The files of `#[cfg(test)] mod name;` declarations (a test fake, a
    tests folder): compiled for tests only, so test code too."""
    out = set()
    for f in files:
        with open(f, encoding="utf-8") as fh:
            text = re.sub(r"//.*", "", fh.read())
        base, name = os.path.dirname(f), os.path.basename(f)
        here = base if name in ("mod.rs", "lib.rs", "main.rs") else os.path.join(base, name[:-3])
        for m in TEST_MOD.finditer(text):
            out.add(os.path.join(here, m.group(3) + ".rs"))
            out.add(os.path.join(here, m.group(3)) + os.sep)
    return out


def graph(src):
    mods = modules(src)
    edges = {m: set() for m in mods}
    skip = test_only([f for files in mods.values() for f in files])
    for m, files in mods.items():
        for f in files:
            if os.path.basename(f) == "tests.rs" or f.endswith("/tests/mod.rs"):
                continue
            if f in skip or any(d.endswith(os.sep) and f.startswith(d) for d in skip):
                continue
            with open(f, encoding="utf-8") as fh:
                # Comments (docs' links included) import nothing.
                text = strip_tests(re.sub(r"//.*", "", fh.read()))
            edges[m].update(n for n in referenced(text) if n in mods and n != m)
    return edges


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(argv):
    report = "--report" in argv
    crates = [a for a in argv if a != "--report"]
    failed = False
    for crate in crates:
        edges = graph(os.path.join(crate, "src"))
        for comp in cycles(edges):
            inner = [f"{a} -> {b}" for a in comp for b in sorted(edges[a]) if b in comp]
            print(f"{crate}: import cycle among {len(comp)} top-level modules: {', '.join(comp)}")
            print(f"  imports inside it: {'; '.join(inner)}")
            failed = True
    if failed and not report:
        print("layers must point one way (docs/architecture.md, 'Layers'): move what both sides need into a lower module")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
