#!/usr/bin/env python3
"""Prints the import graph of the crate's modules under src/ and its circles.

Every `crate::...`, `super::...` and `self::...` path in a module's source (in `use` lines and in
code, tests included) is resolved to the longest module it names; an edge goes from the file that
writes the path to that module's file. A circle is a strongly connected set of two or more
modules. Usage:

    python3 scripts/module_graph.py            # file-level edges, then circles
    python3 scripts/module_graph.py --folders  # the same with each folder of src/ as one node
    python3 scripts/module_graph.py --quiet    # circles only
    python3 scripts/module_graph.py --strict   # count a child's paths to its ancestors too
    python3 scripts/module_graph.py --no-tests # leave out unit tests (tests.rs, #[cfg(test)] mod)

Exits 1 when there is a circle, so CI or a hook can call it. By default a path from a module to
one of its own ancestors (a child of a folder using the items its `mod.rs` shares with the
folder, the ordinary Rust scoping) is not an edge: a folder's `mod.rs` declares and uses its
children, and they see what it keeps for them. `--strict` counts those too.
"""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
STRICT = "--strict" in sys.argv
NO_TESTS = "--no-tests" in sys.argv
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def module_files():
    """Maps a module path ("lsq::pace") to its file, for every .rs file under src/."""
    mods = {}
    for dirpath, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), ROOT)
            parts = rel[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts == ["lib"]:
                parts = []
            if parts == ["main"]:
                continue  # the binary is not a module of the library
            mods["::".join(parts)] = rel
    return mods


def strip(src):
    """Drops comments and the contents of string and char literals, keeping line structure."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if src.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif src.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "r" and re.match(r'r#*"', src[i:i + 10]) and not IDENT.match(src[i - 1:i] or " "):
            m = re.match(r'r(#*)"', src[i:])
            end = '"' + m.group(1)
            j = src.find(end, i + len(m.group(0)))
            i = n if j < 0 else j + len(end)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append('""')
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x..'", src[i:i + 12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'|'\\x..'", src[i:i + 12])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_tree(text, i):
    """Parses a path tree at text[i:] (`a::b::{c, d::e}`): returns (list of paths, end)."""
    paths, prefix = [], []
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if text.startswith("{", i):
            i += 1
            while True:
                while i < len(text) and text[i] in " \t\r\n,":
                    i += 1
                if text.startswith("}", i):
                    return paths + [prefix] if not paths and not prefix else paths, i + 1
                sub, i = parse_tree(text, i)
                paths.extend(prefix + s for s in sub)
        m = IDENT.match(text, i)
        if not m:
            return paths + [prefix], i
        prefix.append(m.group(0))
        i = m.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if text.startswith("::", i):
            i += 2
            continue
        return paths + [prefix], i


def resolve(mods, base, path):
    """The longest module named by `base + path`, or None."""
    full = base + path
    for k in range(len(full), -1, -1):
        key = "::".join(full[:k])
        if key in mods:
            return key
    return None


def inline_depths(text):
    """For each `mod name {` block of the file, its (start, end) offsets."""
    blocks = []
    for m in re.finditer(r"\bmod\s+[A-Za-z_][A-Za-z0-9_]*\s*\{", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        blocks.append((m.start(), i))
    return blocks


def edges_of(mods, mod, text):
    out = set()
    me = mod.split("::") if mod else []
    blocks = inline_depths(text)
    children = {k.split("::")[-1] for k in mods if k and k.split("::")[:-1] == me}
    pattern = r"(?<![:\w])(crate|super|self%s)\s*::" % "".join("|" + c for c in sorted(children))
    for m in re.finditer(pattern, text):
        kind = m.group(1)
        inline = sum(1 for a, b in blocks if a <= m.start() < b)
        for path in parse_tree(text, m.end())[0]:
            if kind == "crate":
                base = []
            elif kind == "self":
                base = me
            elif kind != "super":
                if inline:
                    continue  # a name inside an inline module: not this file's child
                base, path = me, [kind] + path
            else:
                ups = 1
                while path and path[0] == "super":
                    ups, path = ups + 1, path[1:]
                ups -= inline  # the first supers leave the inline modules of this file
                if ups <= 0:
                    continue
                base = me[:-ups] if ups <= len(me) else []
            target = resolve(mods, base, path)
            if target is None or target == mod or target == "":
                continue
            if not STRICT and me[: len(target.split("::"))] == target.split("::"):
                continue  # an ancestor of this module
            out.add(target)
    return out


def without_tests(text):
    """The text with its `#[cfg(test)] mod name { ... }` blocks left out."""
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*mod\s+[A-Za-z_][A-Za-z0-9_]*\s*\{", text)
        if not m:
            return text
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        text = text[: m.start()] + text[i:]


def folder(mod):
    return mod.split("::")[0]


def sccs(nodes, edges):
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
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
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return comps


def main():
    folders = "--folders" in sys.argv
    quiet = "--quiet" in sys.argv
    mods = module_files()
    edges = {}
    for mod, rel in mods.items():
        if mod == "":
            continue
        if NO_TESTS and "tests" in mod.split("::"):
            continue
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            text = strip(f.read())
        if NO_TESTS:
            text = without_tests(text)
        targets = edges_of(mods, mod, text)
        if folders:
            src = folder(mod)
            edges.setdefault(src, set()).update(folder(t) for t in targets if folder(t) != src)
        else:
            edges.setdefault(mod, set()).update(targets)
    if not quiet:
        for v in sorted(edges):
            print(f"{v or 'lib'} -> {', '.join(sorted(edges[v])) or '(nothing)'}")
        print()
    comps = sccs(edges.keys(), edges)
    if not comps:
        print(f"no circles among {len(edges)} {'folders' if folders else 'modules'}")
        return 0
    for comp in comps:
        print("circle: " + " <-> ".join(comp))
        inner = {v: sorted(w for w in edges[v] if w in comp) for v in comp}
        for v in comp:
            print(f"    {v} -> {', '.join(inner[v])}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
