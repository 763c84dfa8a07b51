#!/usr/bin/env python3
"""The layers as docs/architecture.md draws them, checked against the code.

docs/architecture.md, "Parts and layering", has a table "| part | links (below it) |": the one map
of who may use whom. This test reads it and fails when
  - a part's sources or public headers include a datapump header of a part it may not reach (the
    table's links, followed transitively: a part may use whatever the parts it links use), or a
    private header of such a part by a path from its own folder (src/rt/x.cpp including
    "transport/remote.hpp": rt/transport lives inside rt's folder but above it), or
  - a part's CMake target links a datapump part its row does not name (or that is not a part),
  - a part in the table has no folder, or a folder under src/ has no row.
So the map, the includes and the CMake files cannot drift apart (issue 16: "One true map").

Usage: layers_test.py SOURCE_DIR
"""
import re
import sys
from pathlib import Path

# A table row's part name -> (its folders under src/, its public header folder under include/datapump/,
# its CMake target names).
PARTS = {
    "base": (["base"], "base", ["datapump_base"]),
    "buffer": (["buffer"], "buffer", ["datapump_buffer"]),
    "cache": (["cache"], "cache", ["datapump_cache"]),
    "io": (["io"], "io", ["datapump_io"]),
    "ipc": (["ipc"], "ipc", ["datapump_ipc"]),
    "http/proto": (["http/proto"], "http/proto", ["datapump_http_proto"]),
    "http/views": (["http/views"], None, ["datapump_http_views"]),  # its header: datapump/http/views.hpp
    "fs": (["fs"], "fs", ["datapump_fs"]),
    "rt": (["rt"], "rt", ["datapump_rt"]),
    "rt/transport": (["rt/transport"], None, ["datapump_rt_transport"]),  # declared by datapump/rt/system.hpp
    "stream": (["stream"], "stream", ["datapump_stream"]),
    "ingest": (["ingest"], "ingest", ["datapump_ingest"]),
    "loan": (["loan"], "loan", ["datapump_loan"]),
    "http/server": (["http/server"], "http", ["datapump_http_server"]),
    "daemon/config": (["daemon/config"], None, ["datapump_daemon_config"]),
    "daemon/logs": (["daemon/logs"], None, ["datapump_daemon_logs"]),
    "daemon/service": (["daemon/service"], None, ["datapump_daemon_service"]),
    "datapumpd": (["daemon"], None, ["datapumpd"]),
    "datapump (cli)": (["cli"], None, ["datapump", "datapump_cli_support"]),
}


def cmake_names(root: Path) -> dict[str, str]:
    """Every CMake name of a part -> the part: its targets (PARTS) and their datapump::X aliases,
    as the tree's own add_library(... ALIAS ...) lines declare them."""
    names = {t: part for part, (_, _, targets) in PARTS.items() for t in targets}
    for cml in (root / "src").rglob("CMakeLists.txt"):
        for alias, target in re.findall(r"add_library\(\s*(\S+)\s+ALIAS\s+(\S+)\s*\)", cml.read_text()):
            if target in names:
                names[alias] = names[target]
    return names


def read_table(doc: Path) -> dict[str, set[str]]:
    text = doc.read_text()
    start = text.index("| part | links (below it) |")
    links: dict[str, set[str]] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = [n.strip() for n in cells[0].split(",")]
        # The parts named in the links cell, in any wording around them (backquoted code is not a link).
        cell = re.sub(r"`[^`]*`", "", cells[1])
        below = {p for p in PARTS if re.search(r"(?<![\w/])" + re.escape(p) + r"(?![\w/])", cell)}
        for name in names:
            links[name] = below
    links.setdefault("base", set())
    return links


def reach(links: dict[str, set[str]], part: str) -> set[str]:
    seen: set[str] = set()
    todo = list(links.get(part, ()))
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(links.get(p, ()))
    return seen


def header_part(include: str) -> str | None:
    # "datapump/http/proto/x.hpp" -> http/proto; "datapump/http/x.hpp" -> http/server
    parts = include.split("/")
    if len(parts) < 3 or parts[0] != "datapump":
        return None
    if parts[1] == "http":
        if parts[2] == "proto":
            return "http/proto"
        return "http/views" if parts[2] == "views.hpp" else "http/server"
    return parts[1] if parts[1] in PARTS else None


def owner(root: Path, f: Path) -> str | None:
    """The part whose src/ folder holds file f: the deepest folder wins (src/rt/transport/x.cpp is
    rt/transport's, not rt's)."""
    best, depth = None, -1
    for part, (dirs, _, _) in PARTS.items():
        for d in dirs:
            folder = root / "src" / d
            if (folder == f.parent or folder in f.parents) and len(folder.parts) > depth:
                if part == "datapumpd" and folder != f.parent:
                    continue  # daemon/ itself, not its subfolders
                best, depth = part, len(folder.parts)
    return best


def files_of(root: Path, part: str) -> list[Path]:
    dirs, inc, _ = PARTS[part]
    out: list[Path] = []
    if part == "http/views":
        out.append(root / "include" / "datapump" / "http" / "views.hpp")
    for d in dirs:
        folder = root / "src" / d
        if part == "datapumpd":
            out += [f for f in folder.glob("*") if f.suffix in (".cpp", ".hpp")]  # daemon/ itself, not its subfolders
        elif folder.is_dir():
            # Not the folders of the parts nested in this one (rt/transport in rt).
            out += [f for f in folder.rglob("*") if f.suffix in (".cpp", ".hpp") and owner(root, f) == part]
    if inc is not None:
        folder = root / "include" / "datapump" / inc
        if part == "http/server":
            out += [f for f in folder.glob("*.hpp") if f.name != "views.hpp"]
        elif folder.is_dir():
            out += [f for f in folder.rglob("*.hpp")]
    return out


def main() -> int:
    root = Path(sys.argv[1]).resolve()
    links = read_table(root / "docs" / "architecture.md")
    names = cmake_names(root)
    bad: list[str] = []
    for part in PARTS:
        if part not in links:
            bad.append(f"docs/architecture.md: no row for part {part!r}")
    for name in links:
        if name not in PARTS:
            bad.append(f"docs/architecture.md: a row for {name!r}, which is no part this test knows")
    for d in sorted(p for p in (root / "src").iterdir() if p.is_dir()):
        if not any(d.name == dirs[0].split("/")[0] for dirs, _, _ in PARTS.values()):
            bad.append(f"src/{d.name}: a folder no row of docs/architecture.md names")
    for part in PARTS:
        allowed = reach(links, part) | {part}
        files = files_of(root, part)
        if not files:
            bad.append(f"{part}: no source files found")
        for f in files:
            for m in re.finditer(r'^#include\s+"(datapump/[^"]+)"', f.read_text(), re.M):
                used = header_part(m.group(1))
                if used is not None and used not in allowed:
                    bad.append(f"{f.relative_to(root)}: includes {m.group(1)} ({used}), which {part} may not "
                               f"use (docs/architecture.md: it reaches {', '.join(sorted(allowed - {part})) or 'nothing'})")
            # A private header by a path from the including file's folder ("transport/remote.hpp").
            for m in re.finditer(r'^#include\s+"([^"]+)"', f.read_text(), re.M):
                target = (f.parent / m.group(1)).resolve()
                used = owner(root, target) if target.is_file() else None
                if used is not None and used not in allowed:
                    bad.append(f"{f.relative_to(root)}: includes {m.group(1)} ({used}'s private header), which "
                               f"{part} may not use (docs/architecture.md: it reaches "
                               f"{', '.join(sorted(allowed - {part})) or 'nothing'})")
        # CMake: the datapump parts its targets link.
        dirs, _, targets = PARTS[part]
        cml = root / "src" / dirs[0] / "CMakeLists.txt"
        if not cml.exists():
            continue
        text = cml.read_text()
        for target in targets:
            for m in re.finditer(r"target_link_libraries\(\s*" + re.escape(target) + r"\s+([^)]*)\)", text):
                for name in m.group(1).split():
                    if name.startswith("datapump") and name not in ("PUBLIC", "PRIVATE", "INTERFACE"):
                        linked = names.get(name)
                        if linked is None:
                            bad.append(f"{cml.relative_to(root)}: {target} links {name}, which is no part")
                        elif linked != part and linked not in links.get(part, set()):
                            bad.append(f"{cml.relative_to(root)}: {target} links {name} ({linked}), "
                                       f"which the row of {part} in docs/architecture.md does not name")
    if bad:
        print("\n".join(bad))
        print(f"layers_test: {len(bad)} finding(s)")
        return 1
    print(f"layers_test: {len(PARTS)} parts; every include and link follows docs/architecture.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
