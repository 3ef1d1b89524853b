#!/usr/bin/env python3
"""Checks tm-mutate's trivial compiler equivalence (ctest mutation.tce): on a two-variant fixture
library built in a "release" tree and in an "asan" tree (whose extra define, like ASan's
annotations, compiles code that release leaves out), a mutant the compiler proves equivalent is
`identical`, a mutant that changes release code runs the release tiers, a mutant that changes
only the second tree's code runs the sanitizer tiers, and a mutant that does not compile is
reported so. Needs cmake, ninja, a C++ compiler and objcopy; a few seconds. Also checks which
earlier results a run keeps when the suite or src/ changed (read_results, killer_gone)."""
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mutate import runner  # noqa: E402

# Two library variants of one source, as src/ builds tinymalloc_prefixed and tinymalloc_static.
CMAKE = """cmake_minimum_required(VERSION 3.20)
project(tce CXX)
add_library(tinymalloc_prefixed STATIC f.cc)
add_library(tinymalloc_static STATIC f.cc)
target_compile_definitions(tinymalloc_static PRIVATE VARIANT=1)
"""

SOURCE = """#include <cstddef>
#if defined(EXTRA)
void extra_hook(std::size_t n);
#define HOOK(n) extra_hook(n)
#else
#define HOOK(n) ((void)(n))
#endif
unsigned positive(unsigned x) { return x > 0 ? 7u : 9u; }
int add(int a) { return a + 1; }
void hooked(std::size_t n) { HOOK(n + 1); }
"""


def mutant(original, replacement, nth=0):
    """A mutant of SOURCE in tm-mutate's form: the nth occurrence of original replaced."""
    offset = -1
    for _ in range(nth + 1):
        offset = SOURCE.index(original, offset + 1)
    return {"id": f"fixture-{original}-{replacement}", "file": "f.cc", "line": SOURCE.count("\n", 0, offset) + 1,
            "offset": offset, "length": len(original), "original": original, "replacement": replacement}


def check_reuse(expect):
    """Earlier results kept across a change of the suite or of other files of src/: kills
    (unless their test is gone), timeouts and compiler verdicts of an unchanged mutated file;
    survivors, and results of a changed file, are dropped."""
    loader = importlib.machinery.SourceFileLoader(
        "tm_mutate", os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tm-mutate"))
    spec = importlib.util.spec_from_loader("tm_mutate", loader)
    tm = importlib.util.module_from_spec(spec)
    loader.exec_module(tm)
    base = {"file": "src/a.cc", "file_hash": "f", "code_hash": "c", "suite_hash": "old"}
    rows = [
        dict(base, id="a", status="killed", killer="unit: Pool.StillThere"),
        dict(base, id="b", status="killed", killer="unit: Pool.Removed"),
        dict(base, id="c", status="survived", killer=None),
        dict(base, id="d", status="identical", killer=None),
        dict(base, id="e", status="killed", killer="unit: Pool.StillThere", file_hash="edited"),
        dict(base, id="f", status="survived", killer=None, suite_hash="new"),
        dict(base, id="g", status="timeout", killer="unit (over 40 s)", code_hash="other"),
        dict(base, id="h", status="survived", killer=None, code_hash="other", suite_hash="new"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "results.jsonl")
        with open(path, "w") as f:
            f.write("".join(json.dumps(r) + "\n" for r in rows))
        kept = tm.read_results(path, "c", "new", {"src/a.cc": "f"})
    expect(sorted(kept) == ["a", "b", "d", "f", "g"], f"results kept across changes: {sorted(kept)}")
    text = "TEST_F(Pool, StillThere) {}"
    gone = sorted(i for i, r in kept.items() if tm.killer_gone(r, text))
    expect(gone == ["b"], f"kills whose test is gone: {gone}")


def main():
    missing = [t for t in ("cmake", "ninja", "objcopy") if shutil.which(t) is None]
    if missing:
        print(f"test_runner: needs {', '.join(missing)}")
        return 1
    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)

    with tempfile.TemporaryDirectory() as work:
        job = runner.Job(work, work, 0, 2)
        os.makedirs(job.dir)
        with open(os.path.join(job.dir, "CMakeLists.txt"), "w") as f:
            f.write(CMAKE)
        path = os.path.join(job.dir, "f.cc")
        with open(path, "w") as f:
            f.write(SOURCE)
        for build_dir, flags in ((job.release, "-O2 -g"), (job.asan, "-O2 -g -DEXTRA")):
            subprocess.run(["cmake", "-S", job.dir, "-B", build_dir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
                            f"-DCMAKE_CXX_FLAGS_RELEASE={flags}", "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON"],
                           check=True, stdout=subprocess.DEVNULL)
        expect(len(job.objects_of(job.release, "f.cc")) == 2, "both variants' objects found in compile_commands.json")
        expect(job.objects_of(job.release, "missing.h") == [], "a file without objects (a header) has none")

        prepared = []
        job.prepare_asan = lambda *args: prepared.append(True)
        cases = [
            # unsigned x > 0 and x >= 1 are one test for the compiler: the same object code.
            (mutant("x > 0", "x >= 1"), {"status": "identical"}),
            # A different constant changes release code: the release tiers decide.
            (mutant("a + 1", "a + 2"), ("release", runner.TIERS)),
            # The hook's argument exists only where EXTRA is defined (as ASan's annotations do).
            (mutant("n + 1", "n + 2"), ("asan", runner.SANITIZER_TIERS)),
            (mutant("a + 1", "a + "), {"status": "did-not-compile"}),
        ]
        for m, want in cases:
            applied = SOURCE[:m["offset"]] + m["replacement"] + SOURCE[m["offset"] + m["length"]:]
            with open(path, "w") as f:
                f.write(applied)
            prepared.clear()
            result = {}
            got = job._tiers_for(m, path, SOURCE, result)
            if isinstance(want, dict):
                expect(isinstance(got, dict) and got.get("status") == want["status"],
                       f"{m['original']!r} -> {m['replacement']!r}: {want['status']}, got {got}")
            else:
                expect(got == want, f"{m['original']!r} -> {m['replacement']!r}: tiers {want[0]}, got "
                                    f"{got if isinstance(got, dict) else got[0]}")
                expect(bool(prepared) == (want[0] == "asan"),
                       f"{m['original']!r} -> {m['replacement']!r}: the sanitizer tree prepared only for its tiers")
            with open(path) as f:
                expect(f.read() == applied, f"{m['original']!r} -> {m['replacement']!r}: the mutant is in place after")
        # Without the sanitizer tier a release-identical mutant is reported, not run.
        job.sanitizer_tier = False
        m = mutant("n + 1", "n + 2")
        with open(path, "w") as f:
            f.write(SOURCE[:m["offset"]] + m["replacement"] + SOURCE[m["offset"] + m["length"]:])
        got = job._tiers_for(m, path, SOURCE, {})
        expect(isinstance(got, dict) and got.get("status") == "release-identical",
               f"--no-sanitizer-tier: release-identical, got {got}")
    check_reuse(expect)
    if failures:
        for f in failures:
            print(f"FAIL: {f}")
        return 1
    print(f"test_runner: {len(cases) + 1} mutants classified as expected by their object code; "
          "results kept across changes as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
