#!/usr/bin/env python3
"""Checks tm-mutate's mutation points on a small C++ file with one construct per operator and
every context that must be skipped (ctest mutation.discover)."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mutate import discover  # noqa: E402

FIXTURE = r"""#include <atomic>
#include <cstddef>
#define TM_PLANT_IF(n) (0 == (n))
#define TWICE(x) ((x) * 2)
namespace demo {
constexpr std::size_t kLimit = 64;  // outside a function: never mutated
std::atomic<int> g_counter{0};
std::size_t align_up(std::size_t v, std::size_t a) { return (v + a - 1) & ~(a - 1); }
std::size_t align_down(std::size_t v, std::size_t a) { return v & ~(a - 1); }
void report_misuse(const char* what, const void* p, const char* detail);
void poison(const void* p, std::size_t n);
int copy(int dst, int src) { return dst - src; }
bool less(int a, int b) {
  // a comment with a < b, never mutated
  return a < b;
}
int* nothing(int* p) { return p; }
std::size_t body(std::size_t n, bool flag, unsigned s) {
  std::size_t total = 0;
  if (n == 3 && flag) total += 5;
  while (n > 1) n = n >> s;
  g_counter.store(7, std::memory_order_relaxed);
  ++total;
  total = align_up(total, 16);
  if (TM_PLANT_IF(4)) total = 0;
  if (n != 2) report_misuse("bad", &n, n < 9 ? "small" : "large");
  total = TWICE(total + 1);
  poison(&total, n - 1);
  return total + static_cast<std::size_t>(copy(1, 2));
}
void tm_test_reset_demo(int* p) { *p = 0; }
}  // namespace demo
"""


def main():
    clang = shutil.which("clang++-14") or shutil.which("clang++")
    if not clang:
        print("test_discover: clang++-14 not found", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "demo.cc"), "w") as f:
            f.write(FIXTURE)
        ms = discover.discover(d, "demo.cc", clang, ["-std=c++20"])
    failures = []

    def expect(cond, what):
        if not cond:
            failures.append(what)

    def find(op, original=None, replacement=None, function=None):
        return [m for m in ms if m["operator"] == op and (original is None or m["original"] == original)
                and (replacement is None or m["replacement"] == replacement)
                and (function is None or m["function"] == function)]

    lines = FIXTURE.splitlines()

    def line_of(snippet):
        return FIXTURE[:FIXTURE.index(snippet)].count("\n") + 1

    const_line, comment_line = line_of("constexpr std::size_t kLimit"), line_of("// a comment")
    plant_line, report_line = line_of("if (TM_PLANT_IF(4))"), line_of("report_misuse(\"bad\"")
    for m in ms:
        # every mutant replaces exactly the text it names, at its line
        start = sum(len(x) + 1 for x in lines[:m["line"] - 1])
        expect(FIXTURE[m["offset"]:m["offset"] + m["length"]] == m["original"], f"offset of {m}")
        expect(start <= m["offset"] < start + len(lines[m["line"] - 1]) + 1, f"line of {m}")
        expect(m["function"] is not None, f"function of {m}")
        expect(m["line"] != const_line, f"a constant outside functions was mutated: {m}")
        expect(m["line"] != comment_line, f"a comment was mutated: {m}")
        expect(m["function"] != "tm_test_reset_demo", f"a test hook was mutated: {m}")
        expect(not (m["line"] == report_line and m["offset"] > FIXTURE.index("report_misuse(\"bad\"")),
               f"a report's argument was mutated: {m}")
        expect(not (m["line"] == plant_line and m["col"] < 22), f"the planted-bug switch was mutated: {m}")
    expect(not [m for m in ms if m["line"] == line_of("poison(&total")],
           "a sanitizer annotation was mutated")
    expect(find("ror", "<", "<=", "less"), "ror < -> <= in less")
    expect(find("ror", "==", "!=", "body"), "ror == -> !=")
    expect(find("ror", ">", ">=", "body"), "ror > -> >=")
    expect(find("ror", "!=", "==", "body"), "ror != -> == (the condition of the report call)")
    expect(find("lcr", "&&", "||", "body"), "lcr && -> ||")
    expect(find("aor", "+=", "-=", "body"), "aor += -> -=")
    expect(find("aor", "-", "+", "copy"), "aor - -> + in copy")
    expect(find("aor", "+", "-", "body"), "aor + -> - (in a macro's argument, where it is spelled)")
    expect(find("neg", "n == 3 && flag", "!(n == 3 && flag)"), "neg of an if condition")
    expect(find("neg", "n > 1", "!(n > 1)"), "neg of a while condition")
    expect(find("shift", "s", "(s + 1)") and find("shift", "s", "(s - 1)"), "shift >> s -> >> (s + 1), (s - 1)")
    expect(find("sdl", "total = 0", "(void)0"), "sdl of an if's single-statement body")
    expect(find("cbr", "5", "(5 + 1)") and find("cbr", "5", "(5 - 1)"), "cbr on 5")
    expect(find("align", "align_up", "align_down", "body"), "align_up -> align_down")
    expect(find("sdl", "g_counter.store(7, std::memory_order_relaxed)", "(void)0"), "sdl of an atomic store")
    expect(find("sdl", "++total", "(void)0"), "sdl of ++")
    expect(find("sdl", "total += 5", "(void)0"), "sdl of +=")
    expect(find("swap", "1, 2", "2, 1"), "swap of same-type arguments")
    expect(not find("swap", function="align_up"), "no swap in align_up's body")
    expect(find("ret", "a < b", "true", "less") and find("ret", "a < b", "false", "less"), "ret of a bool")
    expect(find("ret", "p", "nullptr", "nothing"), "ret of a pointer")
    ids = [m["id"] for m in ms]
    expect(len(ids) == len(set(ids)), "mutant ids are unique")
    for m in ms:
        text = discover.apply(FIXTURE, m)
        expect(text != FIXTURE, f"mutant changes nothing: {m}")
    if failures:
        for f in failures:
            print(f"FAIL: {f}")
        print(f"{len(ms)} mutants:")
        for m in ms:
            print(f"  {m['line']}:{m['col']} {m['function']} {m['operator']} {m['original']!r} -> {m['replacement']!r}")
        return 1
    print(f"test_discover: {len(ms)} mutants, every operator and every skipped context as expected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
