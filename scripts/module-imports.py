#!/usr/bin/env python3
"""Lists what each module of a crate's src/ imports from the rest of the crate, and its cycles.

Usage: scripts/module-imports.py [SRC_DIR]   (default: host/src)

A module is a file (`a.rs`, `a/mod.rs`; inline modules belong to their file; `main.rs`, the
binary's root, is another crate and left out). Its imports are the `crate::…`, `super::…` and `self::…` paths in its code (`use` lines and paths written inline;
comments and the trailing `#[cfg(test)] mod tests` are left out), and `child::…` paths through a
child module it declares with `mod child;`. Each path is resolved to the deepest module it
names. Prints one line per module (`module -> imported, …`), then every cycle (a group of
modules that import each other, directly or through others), and exits 1 if there is one.
"""

import os
import re
import sys


def module_name(src, path):
    rel = os.path.relpath(path, src)[: -len(".rs")]
    parts = rel.split(os.sep)
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts == ["lib"]:
        return "crate"
    return "::".join(["crate"] + parts)


def code_of(text):
    """The file's code without comments, string literals and its trailing test module."""
    m = re.search(r"#\[cfg\(test\)\]\s*mod tests\b", text)
    if m:
        text = text[: m.start()]
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def expand_use(body):
    """`a::{b, c::{d, e}}` -> [`a::b`, `a::c::d`, `a::c::e`] (paths only, renames dropped)."""
    body = re.sub(r"\s+", "", body)
    m = re.match(r"^(.*?)\{(.*)\}$", body)
    if not m:
        return [body.split("as")[0] if "as" in body and "::" in body else body]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    out = []
    for item in filter(None, items):
        for p in expand_use(item):
            out.append(prefix + p if p != "self" else prefix.rstrip(":"))
    return out


def resolve(path, here, modules, children):
    parts = path.split("::")
    base = here.split("::")
    if parts[0] == "crate":
        cur = ["crate"]
        parts = parts[1:]
    elif parts[0] in ("super", "self"):
        cur = base[:]
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                cur = cur[:-1]
            parts = parts[1:]
    elif parts[0] in children.get(here, ()):
        cur = base[:]
    else:
        return None
    best = "::".join(cur)
    for p in parts:
        cur.append(p)
        name = "::".join(cur)
        if name in modules:
            best = name
        else:
            break
    return best if best in modules else None


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "host/src"
    files = {}
    for root, _, names in os.walk(src):
        for n in names:
            if n.endswith(".rs") and not (root == src and n == "main.rs"):
                p = os.path.join(root, n)
                files[module_name(src, p)] = p
    modules = set(files)
    children = {}
    codes = {}
    for mod, p in files.items():
        with open(p, encoding="utf-8") as f:
            code = code_of(f.read())
        codes[mod] = code
        children[mod] = set(re.findall(r"\bmod\s+([a-z_][a-z0-9_]*)\s*;", code))
    edges = {}
    for mod, code in codes.items():
        paths = []
        for body in re.findall(r"\buse\s+([^;]+);", code):
            paths.extend(expand_use(body))
        paths.extend(re.findall(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", code))
        for child in children[mod]:
            paths.extend(re.findall(r"(?<![\w:])(" + child + r"(?:::\w+)+)", code))
        targets = set()
        for path in paths:
            t = resolve(path, mod, modules, children)
            if t and t != mod and not mod.startswith(t + "::") and t != "crate":
                targets.add(t)
        edges[mod] = targets
    for mod in sorted(edges):
        print(f"{mod} -> {', '.join(sorted(edges[mod])) or '(nothing)'}")

    # Tarjan's strongly connected components.
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

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
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    if sccs:
        print()
        for comp in sccs:
            print("cycle: " + " <-> ".join(comp))
        return 1
    print("\nno cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
