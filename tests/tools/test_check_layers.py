#!/usr/bin/python3
"""tools/check-layers on a tiny tree with one known upward edge and known cycles.

The tree is built twice: as layer folders (src/low, src/mid, src/high, the
folder is the layer) and flat (everything in src/flat, a map of globs assigns
the files), compiled with the system C compiler into a meson-like build dir.
Both must give exactly the same findings, and so must the flat tree after
--move-script has moved it into folders.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

SOURCE_DIR = os.environ.get("NORN_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CHECKER = os.path.join(SOURCE_DIR, "tools", "check-layers")
CC = os.environ.get("CC", "cc")

# layer -> {file: text}. low/bad.c includes and calls up into high/top.c, and
# top.c calls back: one upward include, one upward call, the layer cycle
# low <-> high and the file group {low/bad.c, high/top.c}. mid/a.c and
# mid/b.c call each other (b through a function table, a data relocation):
# a file group inside one layer, which is no layer violation.
TREE = {
    "low": {
        "util.h": "int util_x(void);\n",
        "util.c": '#include "util.h"\nint util_x(void) { return 1; }\n',
        "bad.h": "int bad_run(void);\nint bad_helper(void);\n",
        "bad.c": '#include "bad.h"\n#include "top.h"\n'
                 "int bad_helper(void) { return 2; }\n"
                 "int bad_run(void) { return top_run(); }\n",
    },
    "mid": {
        "mid.h": "int mid_a(void);\nint mid_b(void);\n",
        "a.c": '#include "mid.h"\nint mid_a(void) { return mid_b(); }\n',
        "b.c": '#include "mid.h"\n'
               "int (*const mid_table[])(void) = { mid_a };\n"
               "int mid_b(void) { return 3; }\n",
    },
    "high": {
        "top.h": "int top_run(void);\n",
        "top.c": '#include "top.h"\n#include "bad.h"\n#include "mid.h"\n'
                 "int top_run(void) { return bad_helper() + mid_a(); }\n",
    },
}

FOLDER_MAP = """\
# The folder is the layer.
include-dirs src/low src/mid src/high
layer low 0
layer mid 1
layer high 2
"""

FLAT_MAP = """\
include-dirs src/flat
layer low 0
    flat/util.[ch] flat/bad.*
layer mid 1
    flat/mid.h flat/a.c
    flat/b.c
layer high 2 uses mid low
    flat/top.*
"""


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def compile_tree(root, include_dirs):
    """Every src/<folder>/*.c into build/src/<folder>/libnorn-<folder>.a.p/, as meson lays it out."""
    src = os.path.join(root, "src")
    for folder in sorted(os.listdir(src)):
        objdir = os.path.join(root, "build", "src", folder, f"libnorn-{folder}.a.p")
        shutil.rmtree(objdir, ignore_errors=True)
        os.makedirs(objdir)
        for name in sorted(os.listdir(os.path.join(src, folder))):
            if name.endswith(".c"):
                subprocess.run([CC, "-c", "-O2", "-g"] + ["-I" + os.path.join(root, d) for d in include_dirs]
                               + [os.path.join(src, folder, name), "-o", os.path.join(objdir, name + ".o")],
                               check=True)


def make_tree(root, flat):
    """Sources under root/src, objects where meson puts them."""
    for layer, files in TREE.items():
        for name, text in files.items():
            write(os.path.join(root, "src", "flat" if flat else layer, name), text)
    compile_tree(root, ["src/flat"] if flat else ["src/" + layer for layer in TREE])


def run(root, mapfile, *extra):
    return subprocess.run([sys.executable, CHECKER, "--root", root, "--map", mapfile,
                           "--build", os.path.join(root, "build")] + list(extra),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)


def assert_findings(label, root, mapfile, path):
    """Exactly the known upward include and call, the cycle high <-> low and the two file groups."""
    r = run(root, mapfile, "--json")
    assert r.returncode == 0, f"{label}: report mode exits 0, got {r.returncode}: {r.stderr}"
    found = json.loads(r.stdout)
    forbidden = sorted((e["kind"], e["src"], e["src_sym"], e["dst"], e["dst_sym"], e["src_layer"], e["dst_layer"])
                       for e in found["forbidden"])
    expected = sorted([
        ("include", path("low", "bad.c"), "2", path("high", "top.h"), None, "low", "high"),
        ("call", path("low", "bad.c"), "bad_run", path("high", "top.c"), "top_run", "low", "high"),
    ])
    assert forbidden == expected, f"{label}: forbidden edges {forbidden}, expected {expected}"
    assert found["layer_cycles"] == [["high", "low"]], f"{label}: layer cycles {found['layer_cycles']}"
    groups = found["file_groups"]
    expected_groups = [sorted([path("high", "top.c"), path("low", "bad.c")]),
                       sorted([path("mid", "a.c"), path("mid", "b.c")])]
    assert sorted(groups) == sorted(expected_groups), f"{label}: file groups {groups}"
    assert found["unassigned"] == [] and found["errors"] == [], f"{label}: {found['unassigned']} {found['errors']}"
    print(f"ok - {label}: 1 upward include, 1 upward call, cycle high<->low, 2 file groups")


def check_move():
    """--move-script turns the flat tree into the folder tree: same findings from the folder map."""
    with tempfile.TemporaryDirectory(prefix="check-layers-") as root:
        make_tree(root, flat=True)
        mapfile = os.path.join(root, "layers.txt")
        write(mapfile, FLAT_MAP)
        subprocess.run(["git", "init", "-q", root], check=True)
        subprocess.run(["git", "-C", root, "add", "src"], check=True)
        r = run(root, mapfile, "--move-script")
        assert r.returncode == 0, r.stderr
        subprocess.run(["sh", "-c", r.stdout], check=True)
        assert not os.path.exists(os.path.join(root, "src", "flat", "bad.c"))
        with open(os.path.join(root, "src", "low", "bad.c")) as f:
            assert '#include "high/top.h"' in f.read().splitlines(), "includes name the folder"
        shutil.rmtree(os.path.join(root, "build"))
        os.rmdir(os.path.join(root, "src", "flat"))
        compile_tree(root, ["src"])
        write(mapfile, FOLDER_MAP)
        assert_findings("moved", root, mapfile, lambda layer, name: f"{layer}/{name}")


def check(flat):
    label = "flat" if flat else "folders"
    with tempfile.TemporaryDirectory(prefix="check-layers-") as root:
        make_tree(root, flat)
        mapfile = os.path.join(root, "layers.txt")
        write(mapfile, FLAT_MAP if flat else FOLDER_MAP)

        def path(layer, name):
            return f"{'flat' if flat else layer}/{name}"

        assert_findings(label, root, mapfile, path)

        # The text report names the pair of files and the symbol.
        r = run(root, mapfile)
        want = f"call    src/{path('low', 'bad.c')}:bad_run -> src/{path('high', 'top.c')}:top_run"
        assert r.returncode == 0 and want in r.stdout, f"{label}: text report lacks '{want}':\n{r.stdout}"

        r = run(root, mapfile, "--enforce")
        assert r.returncode == 1, f"{label}: --enforce exits 1 on violations, got {r.returncode}"
        print(f"ok - {label}: --enforce fails and prints the offending pair")

        # Without the bad file the tree is clean: enforce passes.
        os.unlink(os.path.join(root, "src", path("low", "bad.c")))
        os.unlink(os.path.join(root, "src", path("low", "bad.h")))
        os.unlink(os.path.join(root, "build", "src", "flat" if flat else "low",
                               f"libnorn-{'flat' if flat else 'low'}.a.p", "bad.c.o"))
        # top.c still includes bad.h: the include no longer resolves and is ignored;
        # its object still calls bad_helper, which no object defines any more.
        r = run(root, mapfile, "--enforce", "--json")
        found = json.loads(r.stdout)
        assert r.returncode == 0 and not found["forbidden"] and not found["layer_cycles"], \
            f"{label}: a tree without upward edges passes --enforce: {found}"
        assert found["file_groups"] == [sorted([path("mid", "a.c"), path("mid", "b.c")])], found["file_groups"]
        print(f"ok - {label}: without the upward file --enforce passes; the group inside mid remains")


def check_map_errors():
    with tempfile.TemporaryDirectory(prefix="check-layers-") as root:
        write(os.path.join(root, "src", "low", "x.c"), "int x;\n")
        write(os.path.join(root, "src", "other", "y.c"), "int y;\n")
        mapfile = os.path.join(root, "layers.txt")
        write(mapfile, "layer low 0 uses nowhere\n")
        r = run(root, mapfile, "--no-calls")
        assert r.returncode == 2 and "unknown layer 'nowhere'" in r.stderr, r.stderr
        write(mapfile, "layer low 0\n")
        r = run(root, mapfile, "--no-calls", "--enforce")
        assert r.returncode == 1 and "src/other/y.c belongs to no layer" in r.stderr, r.stderr
        r = run(root, mapfile, "--no-calls")
        assert r.returncode == 0, "report mode only warns about a file no layer owns"
        print("ok - map errors: unknown layer exits 2, a file no layer owns fails --enforce")


if __name__ == "__main__":
    check(flat=False)
    check(flat=True)
    check_move()
    check_map_errors()
