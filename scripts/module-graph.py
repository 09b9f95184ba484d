#!/usr/bin/env python3
"""Checks the module structure docs/architecture.md promises, in every crate named:

- no import circle between a crate's modules (a module that uses another, directly or
  through others, is not used back), counting `crate::` and `super::` paths (brace
  groups included) and paths into a module's own children;
- no module reaching up into its crate's root for an item defined there (lib.rs and
  main.rs only declare modules and the entry point);
- every source file starts with a `//!` line saying what it is for.

Comments and `#[cfg(test)] mod tests` are not read. It prints each problem and exits 1.

    python3 scripts/module-graph.py shared atrest etcd custody cli controller tests
"""
import os
import re
import sys


def modules(src):
    """Module path (a tuple) -> file, for the crate's library or binary root."""
    found = {}
    for directory, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, src)[:-3]
            if relative.startswith("bin/"):
                continue
            parts = tuple(relative.split("/"))
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            found[parts] = path
    return found


def code(path):
    """The file's code: no comments, no test module, and `super::` inside an inline
    `mod x { … }` written as `self::` (it names the file's own module there)."""
    text = open(path).read()
    cut = text.find("#[cfg(test)]\nmod tests")
    if cut >= 0:
        text = text[:cut]
    lines, depth = [], None
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("//"):
            continue
        if depth is None and re.match(r"^(pub(\(\w+\))? )?mod \w+ \{", stripped):
            depth = 0
        if depth is not None:
            line = line.replace("super::", "self::")
            depth += line.count("{") - line.count("}")
            if depth <= 0:
                depth = None
        lines.append(line)
    return "\n".join(lines)


def root_items(src):
    items = set()
    for root in ("lib.rs", "main.rs"):
        path = os.path.join(src, root)
        if os.path.exists(path):
            items |= set(re.findall(
                r"^pub(?:\(\w+\))? (?:const|fn|struct|enum|static|type|trait) (\w+)",
                open(path).read(), re.M))
    return items


def circles(edges, nodes):
    """Strongly connected components with more than one module (Tarjan)."""
    graph = {n: set() for n in nodes}
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

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
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def check(crate):
    src = os.path.join(crate, "src")
    mods = modules(src)
    roots = root_items(src)
    edges, problems = set(), []
    for module, path in mods.items():
        if not open(path).read().startswith("//!"):
            problems.append(f"{path}: no `//!` line saying what the module is for")
        text = code(path)

        def target(kind, names):
            base = () if kind == "crate" else module[:-1]
            full = base + tuple(names)
            for n in range(len(full), -1, -1):
                if full[:n] in mods:
                    return full[:n]
            return None

        for use in re.finditer(r"\b(crate|super)((?:::\w+)*)::(\{[^}]*\}|\w+)", text):
            kind = use.group(1)
            path_parts = [p for p in use.group(2).split("::") if p]
            last = use.group(3)
            names = ([x.strip().split("::")[0] for x in last.strip("{}").split(",")]
                     if last.startswith("{") else [last])
            for name in names:
                whole = path_parts + ([name] if name and name != "self" else [])
                to = target(kind, whole)
                if to == () and kind == "crate" and whole and whole[0] in roots:
                    problems.append(f"{path}: reaches up into the crate root for `{whole[0]}`")
                if to is not None and to != module and to != ():
                    edges.add((module, to))
        for child in re.finditer(r"(?<![:\w])(\w+)::", text):
            if module + (child.group(1),) in mods:
                edges.add((module, module + (child.group(1),)))
    for component in circles(edges, list(mods)):
        names = sorted("::".join(m) or "(root)" for m in component)
        problems.append(f"{crate}: an import circle between {', '.join(names)}")
    return problems


def main():
    problems = [p for crate in sys.argv[1:] for p in check(crate)]
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"module graph: {len(sys.argv) - 1} crates, no circle, no reach into a root, every module documented")


if __name__ == "__main__":
    main()
