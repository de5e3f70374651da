#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Calls between the files of one folder run one way (docs/architecture.md,
"What may include what"): for core/, tools/*, common/* and every plugin, the
graph "file A calls a function file B defines" has no cycle but the recursions
the architecture page documents, listed in ALLOWED. A new cycle fails with the
files and the functions that close it. TAP output."""
import os
import re
import sys

# Each entry: a folder and the set of files one documented recursion joins.
ALLOWED = {
    ("core", frozenset({"node.c", "layered.c"})),
    ("core", frozenset({"req.c", "queue.c"})),
    # A cluster a qcow2 image lacks is read from its backing image, which may
    # be a qcow2 image read by the same code.
    ("plugins/qcow2", frozenset({"read.c", "below.c"})),
}

COMMENT_OR_STRING = re.compile(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'',
                               re.S)
# A definition at the start of a line, not static: type words, the name, the
# parameters, then the body's brace (on the same or the next line).
DEFINITION = re.compile(r'^(?!static\b)[A-Za-z_][\w \*]*?\b(\w+)\(([^;{}()]|\([^()]*\))*\)\s*\{',
                        re.M)


def source(path):
    with open(path, encoding="utf-8") as f:
        return COMMENT_OR_STRING.sub("", f.read())


def graph(folder):
    files = sorted(f for f in os.listdir(folder) if f.endswith(".c") and not f.startswith("test-"))
    text = {f: source(os.path.join(folder, f)) for f in files}
    defined = {}
    for f in files:
        for m in DEFINITION.finditer(text[f]):
            defined.setdefault(m.group(1), f)
    calls = {f: {} for f in files}
    for f in files:
        # A struct, union or enum tag, or a member, is not a call even when
        # it shares a function's name (struct qcow2_free).
        bare = re.sub(r"\b(?:struct|union|enum)\s+\w+|(?:\.|->)\s*\w+", " ", text[f])
        words = set(re.findall(r"\b\w+\b", bare))
        for name, g in defined.items():
            if g != f and name in words:
                calls[f].setdefault(g, []).append(name)
    return calls


def cycles(calls):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in calls[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in calls:
        if v not in index:
            visit(v)
    return out


def folders(root):
    yield "core"
    for top in ("common", "plugins", "tools"):
        for d in sorted(os.listdir(os.path.join(root, top))):
            path = os.path.join(top, d)
            if os.path.isdir(os.path.join(root, path)):
                yield path
                for sub in sorted(os.listdir(os.path.join(root, path))):
                    if os.path.isdir(os.path.join(root, path, sub)):
                        yield os.path.join(path, sub)


def main():
    root = os.environ.get("DISKCORE_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..")
    n = fails = 0
    for folder in folders(root):
        calls = graph(os.path.join(root, folder))
        if len(calls) < 2:
            continue
        n += 1
        bad = [c for c in cycles(calls) if (folder, c) not in ALLOWED]
        if not bad:
            print(f"ok {n} - {folder}: calls between files run one way")
            continue
        fails += 1
        print(f"not ok {n} - {folder}: calls between files form a cycle")
        for comp in bad:
            for a in sorted(comp):
                for b, names in sorted(calls[a].items()):
                    if b in comp:
                        print(f"#   {a} -> {b}: {' '.join(sorted(names))}")
    # The allowed recursions must still exist: a stale entry hides nothing
    # but says something untrue about the code.
    for folder, comp in sorted(ALLOWED, key=lambda e: (e[0], sorted(e[1]))):
        n += 1
        found = comp in cycles(graph(os.path.join(root, folder)))
        print(f"{'ok' if found else 'not ok'} {n} - {folder}: the documented "
              f"recursion {' <-> '.join(sorted(comp))} is still there")
        fails += not found
    print(f"1..{n}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
