#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Checks the direction of every #include "..." in src/, include/ and bpf/, so the layout by
# pipeline stage (ARCHITECTURE.md) stays what the libraries in CMakeLists.txt link:
#   - a room of src/ includes only itself and the rooms below it (ROOMS, lowest first);
#   - tcptrack.skel.h (generated) belongs to datapath: only datapath and above include it;
#   - include/ (the ABI shared with the kernel side) includes only include/; bpf/ includes
#     include/ and bpf/ only (nothing from src/); src/ includes nothing from bpf/;
#   - every quoted include resolves to a file under src/, include/ or bpf/
#     (except the generated tcptrack.skel.h and vmlinux.h; <...> is not checked);
#   - every file of src/ sits in a known room (not src/ itself, not an unknown directory);
#   - no include cycle: a .cpp counts as its .hpp's implementation, so a.hpp -> b.hpp plus
#     b.cpp -> a.hpp is a cycle between the components a and b.
# Usage: check_includes.py [SOURCE_DIR]; prints one line per violation, exits 1 if any.
import re
import sys
from pathlib import Path

# The room order, lowest first: the one place it is written down besides ARCHITECTURE.md
# (CMakeLists.txt's libraries follow it; keep the three in step).
ROOMS = ["sys", "config", "attach", "datapath", "report", "enrich", "output", "app"]
SKELETON_ROOM = "datapath"  # tcptrack.skel.h counts as part of this room
GENERATED = {"tcptrack.skel.h", "vmlinux.h"}
TREES = ("src", "include", "bpf")
EXTENSIONS = {".c", ".h", ".cpp", ".hpp"}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')


def room_of(rel):
    """'src/report/frame.hpp' -> 'report'; None outside src/ or directly in src/."""
    parts = rel.split("/")
    return parts[1] if parts[0] == "src" and len(parts) > 2 else None


def resolve(root, includer, name):
    """The including file's directory first, then the three trees (-I src, include, bpf)."""
    for base in [(root / includer).parent] + [root / t for t in TREES]:
        p = (base / name).resolve()
        if p.is_file() and p.is_relative_to(root):
            return p.relative_to(root).as_posix()
    return None


def check(root):
    root = Path(root).resolve()
    errors, edges = [], {}
    files = sorted(p for t in TREES if (root / t).is_dir() for p in (root / t).rglob("*")
                   if p.is_file() and p.suffix in EXTENSIONS)
    for path in files:
        rel = path.relative_to(root).as_posix()
        tree, room = rel.split("/")[0], room_of(rel)
        if tree == "src" and room is None:
            errors.append(f"{rel}: directly under src/, not in a room ({', '.join(ROOMS)})")
        elif room is not None and room not in ROOMS:
            errors.append(f"{rel}: room '{room}' is not in the known list ({', '.join(ROOMS)})")
        who = room or tree
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            m = INCLUDE_RE.match(line)
            if not m:
                continue
            name, at = m.group(1), f"{rel}:{lineno}"
            if name in GENERATED:
                if name == "tcptrack.skel.h" and not (
                        room in ROOMS and ROOMS.index(room) >= ROOMS.index(SKELETON_ROOM)):
                    errors.append(f"{at}: {who} includes {name} "
                                  f"(the skeleton belongs to {SKELETON_ROOM}, above {who})")
                continue
            target = resolve(root, rel, name)
            if target is None:
                errors.append(f"{at}: {who} includes {name}, "
                              f"which is not a file under {', '.join(TREES)}")
                continue
            edges.setdefault(component(rel), set()).add(component(target))
            ttree, troom = target.split("/")[0], room_of(target)
            if tree in ("bpf", "include") and ttree == "src":
                errors.append(f"{at}: {tree}/ includes {target} (src/ is user space)")
            elif tree == "include" and ttree == "bpf":
                errors.append(f"{at}: include/ includes {target} (the shared ABI is below bpf/)")
            elif tree == "src" and ttree == "bpf":
                errors.append(f"{at}: {who} includes {target} (bpf/ is kernel code)")
            elif room in ROOMS and troom in ROOMS and ROOMS.index(troom) > ROOMS.index(room):
                shown = target[len("src/"):]
                errors.append(f"{at}: {room} includes {shown} ({troom} is above {room})")
    errors += [f"include cycle: {' -> '.join(c)}" for c in cycles(edges)]
    return errors


def component(rel):
    """A header and its implementation are one node: src/a/x.hpp and src/a/x.cpp -> src/a/x."""
    return rel.rsplit(".", 1)[0]


def cycles(edges):
    """One cycle per strongly connected component with more than one node (or a self-loop)."""
    found, state, stack = [], {}, []

    def visit(n):  # depth-first; a back edge to a node on the stack closes a cycle
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if m == n:
                continue  # x.cpp including x.hpp
            if state.get(m) == 1:
                cyc = stack[stack.index(m):] + [m]
                if not any(set(cyc) == set(c) for c in found):
                    found.append(cyc)
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n)
    return found


def main():
    errors = check(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2])
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
