#!/usr/bin/python3
"""Runs a real program twice, without and with LD_PRELOAD=libtinymalloc.so, and compares.

    realprog.py --lib <libtinymalloc.so> --work <dir> <test> [--src <dir>]

Tests: python (a subset of CPython's own test suite with PYTHONMALLOC=malloc), sqlite3 (an
in-memory database of 400k rows), gcc (compile, assemble, link and run a C program), gxx
(the same for a template-heavy C++ program), perl (a 500k-key hash workload) and threads
(GNU sort, xz and zstd with 2 threads each). See tests/realprog/CMakeLists.txt.

This driver itself never runs under the preload (ctest starts it with /usr/bin/python3 and it
removes LD_PRELOAD from the environment of the baseline runs). For every step it:
  * runs the program without the preload, then with LD_PRELOAD=<lib>;
  * requires both exit statuses to be 0 (a signal or a `tinymalloc: ...` abort fails the test,
    with the preloaded run's stderr and a command line that reproduces it);
  * compares stdout and stderr byte for byte (python: the per-test results) and shows a diff;
  * checks that the preloaded processes really loaded libtinymalloc: every process writes
    the dynamic loader's `LD_DEBUG=libs` trace to <work>/lddebug/ (not to its stderr), and the
    trace must show libtinymalloc's initialiser; a separate probe also checks that malloc()
    returns blocks that tm_owns() recognises.

TINYMALLOC_OPTIONS, when set in the environment, is passed to the preloaded runs only.
Exit status: 0 on success, 1 on any failure, 77 (ctest SKIP_RETURN_CODE) when the program
under test is not installed (ci/install-deps installs it).
"""

import argparse
import difflib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

SKIP = 77

# The programs under test: Debian's, not whatever a PATH (pyenv, ...) would find first.
PYTHON = "/usr/bin/python3.11"
SQLITE3 = "/usr/bin/sqlite3"
GCC = "/usr/bin/gcc"
GXX = "/usr/bin/g++"
PERL = "/usr/bin/perl"
SORT = "/usr/bin/sort"
XZ = "/usr/bin/xz"
ZSTD = "/usr/bin/zstd"

# CPython test modules: deterministic, allocation-heavy, no network or other resources, each
# passing without the preload on Debian 12's python3.11 (libpython3.11-testsuite). With
# PYTHONMALLOC=malloc every object allocation of the interpreter goes to malloc/free. Left out
# for time (together ~70 s per run on the 2-core CI machine): test_weakref, test_gc,
# test_threading (also timing-sensitive under load), test_email, test_tarfile, test_compile,
# test_statistics, test_bz2, test_io, test_queue.
PYTHON_TESTS = """
test_list test_tuple test_dict test_dictviews test_set test_userdict test_userlist
test_userstring test_ordered_dict test_collections test_deque test_heapq test_bisect test_sort
test_unicode test_string test_format test_fstring test_bytes test_memoryview test_buffer
test_array test_struct test_slice test_long test_float test_fractions test_decimal test_random
test_itertools test_functools test_operator test_copy test_pickle test_marshal test_json
test_csv test_re test_textwrap test_difflib test_codecs test_base64 test_binascii test_hashlib
test_zlib test_gzip test_grammar test_ast test_tokenize test_xml_etree test_xml_etree_c
test_enum test_dataclasses test_typing test_configparser test_pprint test_datetime test_html
test_htmlparser test_ctypes test_mmap test_thread test_threading_local
""".split()

# Python's regrtest console: "0:00:03 load avg: 1.23 [ 4/70] test_dict" and friends.
REGRTEST_PREFIX = re.compile(r"^\d+:\d\d:\d\d (load avg: [\d.]+ )?")
REGRTEST_PROGRESS = re.compile(r"^\[\s*\d+/\d+(?:/\d+)?\] (\S+)(?: (\w+))?")
REGRTEST_SUMMARY = re.compile(r"^(== Tests result: .*|Tests result: .*|\d+ tests? (OK|failed|skipped).*|"
                              r"All \d+ tests OK\.|\d+ tests? .*(omitted|altered|run no tests).*)$")


class Failure(Exception):
    pass


def log(msg=""):
    print(msg, flush=True)


class Result:
    def __init__(self, variant, argv, stdin_path, cwd, env_shown, rc, stdout, stderr, seconds):
        self.variant = variant
        self.argv = argv
        self.stdin_path = stdin_path
        self.cwd = cwd
        self.env_shown = env_shown
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds

    def status(self):
        if self.rc is None:
            return "timed out"
        if self.rc < 0:
            try:
                name = signal.Signals(-self.rc).name
            except ValueError:
                name = "signal %d" % -self.rc
            return "killed by %s" % name
        return "exit status %d" % self.rc

    def command_line(self):
        env = " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in self.env_shown.items())
        redirect = " < " + shlex.quote(self.stdin_path) if self.stdin_path else ""
        return "cd %s && %s%s%s" % (shlex.quote(self.cwd), env + " " if env else "", shlex.join(self.argv), redirect)


class Driver:
    def __init__(self, lib, work, src):
        self.lib = os.path.realpath(lib)
        self.work = os.path.abspath(work)
        self.src = os.path.abspath(src)
        self.timings = []  # (step, plain seconds, preload seconds)
        self.lddebug_seq = 0

    # ---- running --------------------------------------------------------------------------

    def base_env(self, extra):
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("LD_DEBUG") or k in ("LD_PRELOAD", "TINYMALLOC_OPTIONS", "MALLOC_CHECK_",
                                                  "MALLOC_PERTURB_", "GLIBC_TUNABLES"):
                del env[k]
        env.update({"LC_ALL": "C", "LANG": "C", "TZ": "UTC"})
        env.update(extra)
        return env

    def run(self, variant, argv, cwd, extra_env, timeout, stdin_path=None):
        """Runs argv once; variant is 'plain' or 'preload'."""
        env = self.base_env(extra_env)
        shown = dict(extra_env)
        if variant == "preload":
            env["LD_PRELOAD"] = self.lib
            shown["LD_PRELOAD"] = self.lib
            if os.environ.get("TINYMALLOC_OPTIONS"):
                env["TINYMALLOC_OPTIONS"] = os.environ["TINYMALLOC_OPTIONS"]
                shown["TINYMALLOC_OPTIONS"] = env["TINYMALLOC_OPTIONS"]
            # The loader's trace goes to <prefix>.<pid> files, one per process, never to the
            # program's own stderr.
            self.lddebug_seq += 1
            prefix = os.path.join(self.work, "lddebug", "run%d" % self.lddebug_seq)
            env["LD_DEBUG"] = "libs"
            env["LD_DEBUG_OUTPUT"] = prefix
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        start = time.monotonic()
        # A session of its own, so that a timeout kills the whole tree (cc1, regrtest's workers),
        # not only the direct child whose descendants would keep the pipes open.
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            rc = None
            err += b"\n[realprog: timed out after %ds; process group killed]\n" % timeout
        finally:
            if stdin_path:
                stdin.close()
        seconds = time.monotonic() - start
        res = Result(variant, argv, stdin_path, cwd, shown, rc, out, err, seconds)
        if variant == "preload":
            res.lddebug_prefix = prefix
        return res

    def check_loaded(self, res, min_processes):
        """The preloaded run's processes must all have run libtinymalloc's initialiser."""
        d, base = os.path.split(res.lddebug_prefix)
        files = sorted(f for f in os.listdir(d) if f.startswith(base + "."))
        init_re = re.compile(r"calling init: (\S+)")
        with_tm, without_tm = [], []
        for f in files:
            with open(os.path.join(d, f), errors="replace") as fh:
                inits = init_re.findall(fh.read())
            if not inits:
                continue  # a process that exec'd before running any initialiser
            if any(os.path.realpath(x) == self.lib for x in inits):
                with_tm.append(f)
            else:
                without_tm.append(f)
        if without_tm or len(with_tm) < min_processes:
            raise Failure("the preloaded run did not load %s in every process: %d did, %d did not (%s); "
                          "loader traces in %s" % (self.lib, len(with_tm), len(without_tm),
                                                   ", ".join(without_tm[:5]) or "-", d))
        return len(with_tm)

    def probe(self):
        """malloc() in a preloaded process must return blocks that tm_owns() recognises."""
        code = ("import ctypes; c = ctypes.CDLL(None); c.malloc.restype = ctypes.c_void_p; "
                "c.malloc.argtypes = [ctypes.c_size_t]; c.tm_owns.argtypes = [ctypes.c_void_p]; "
                "c.free.argtypes = [ctypes.c_void_p]; "
                "ps = [c.malloc(n) for n in (16, 4000, 100000, 3 << 20)]; "
                "print(' '.join(str(c.tm_owns(p)) for p in ps)); [c.free(p) for p in ps]")
        res = self.run("preload", [sys.executable, "-c", code], self.work, {}, 60)
        if res.rc != 0:
            self.report_crash(res)
            raise Failure("probe: a short python process failed under LD_PRELOAD=%s (%s)" % (self.lib, res.status()))
        if res.stdout.strip() != b"1 1 1 1":
            raise Failure("probe: malloc() under LD_PRELOAD=%s is not tinymalloc's (tm_owns gave %r)" %
                          (self.lib, res.stdout.strip().decode(errors="replace")))
        self.check_loaded(res, 1)
        log("probe: malloc() under the preload returns tinymalloc blocks (tm_owns = 1 for 16 B .. 3 MiB)")

    # ---- comparing ------------------------------------------------------------------------

    def report_crash(self, res):
        log("---- %s run failed: %s after %.1fs" % (res.variant, res.status(), res.seconds))
        log("reproduce: " + res.command_line())
        err = res.stderr.decode(errors="replace")
        out = res.stdout.decode(errors="replace")
        # regrtest relays its workers' stderr to its stdout: look in both.
        tm_lines = [l for l in (err + "\n" + out).splitlines() if "tinymalloc" in l]
        if tm_lines:
            log("tinymalloc messages:")
            for l in tm_lines[:20]:
                log("  " + l)
        tail = err[-20000:]
        log("---- stderr (%d bytes%s):" % (len(err), ", last 20000" if len(err) > len(tail) else ""))
        log(tail)
        log("---- stdout (last 4000 of %d bytes):" % len(out))
        log(out[-4000:])
        if res.variant == "preload" and res.rc is not None and res.rc < 0:
            log("---- backtrace: cd %s && gdb -q -batch -ex 'set exec-wrapper env LD_PRELOAD=%s' -ex 'run%s' -ex bt "
                "--args %s" % (shlex.quote(res.cwd), self.lib, " < " + res.stdin_path if res.stdin_path else "",
                               shlex.join(res.argv)))
        log("----")

    def diff(self, what, a, b, limit=200):
        if len(a) + len(b) > (2 << 20) or b"\0" in a[:65536] or b"\0" in b[:65536]:
            # Large or binary (xz output, a 9 MB sort): difflib would take minutes. Show the
            # first difference with a little context instead.
            first = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
            log("%s: %d bytes (plain) vs %d bytes (LD_PRELOAD); first difference at offset %d" %
                (what, len(a), len(b), first))
            lo = max(0, first - 80)
            log("  plain:      %r" % a[lo:first + 80])
            log("  LD_PRELOAD: %r" % b[lo:first + 80])
            return
        a_lines = a.decode(errors="replace").splitlines(keepends=True)
        b_lines = b.decode(errors="replace").splitlines(keepends=True)
        d = list(difflib.unified_diff(a_lines, b_lines, "%s (plain)" % what, "%s (LD_PRELOAD)" % what))
        log("".join(d[:limit]).rstrip("\n"))
        if len(d) > limit:
            log("... (%d more diff lines)" % (len(d) - limit))

    def save(self, name, res):
        for stream in ("stdout", "stderr"):
            with open(os.path.join(self.work, "%s.%s.%s" % (name, res.variant, stream)), "wb") as f:
                f.write(getattr(res, stream))

    def pair(self, name, argv, cwd=None, env=None, timeout=120, stdin_path=None, argv_preload=None,
             min_processes=1, hint=None):
        """Runs the plain and the preloaded variant of one step and compares them."""
        cwd = cwd or self.work
        env = env or {}
        plain = self.run("plain", argv, cwd, env, timeout, stdin_path)
        self.save(name, plain)
        if plain.rc != 0:
            self.report_crash(plain)
            raise Failure("%s: the baseline run WITHOUT the preload failed (%s): not an allocator problem, but "
                          "the test cannot judge the preloaded run" % (name, plain.status()))
        pre = self.run("preload", argv_preload or argv, cwd, env, timeout, stdin_path)
        self.save(name, pre)
        self.timings.append((name, plain.seconds, pre.seconds))
        if pre.rc != 0:
            self.report_crash(pre)
            raise Failure("%s: the run under LD_PRELOAD=libtinymalloc.so failed (%s) while the plain run passed" %
                          (name, pre.status()))
        nproc = self.check_loaded(pre, min_processes)
        for stream in ("stdout", "stderr"):
            a, b = getattr(plain, stream), getattr(pre, stream)
            if a != b:
                log("%s: %s differs between the plain and the preloaded run:" % (name, stream))
                self.diff("%s %s" % (name, stream), a, b)
                if hint:
                    log(hint)
                raise Failure("%s: %s differs under the preload" % (name, stream))
        log("%-14s plain %6.2fs   preload %6.2fs   identical (%d bytes out), %d process(es) with tinymalloc" %
            (name, plain.seconds, pre.seconds, len(plain.stdout), nproc))
        return plain, pre

    def same_file(self, what, a, b):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            da, db = fa.read(), fb.read()
        if da != db:
            first = next(i for i in range(min(len(da), len(db)) + 1) if i == min(len(da), len(db)) or da[i] != db[i])
            raise Failure("%s: %s and %s differ (%d vs %d bytes, first difference at offset %d)" %
                          (what, a, b, len(da), len(db), first))
        log("%-14s %s identical (%d bytes)" % ("", what, len(da)))

    # ---- tests ----------------------------------------------------------------------------

    def test_sqlite3(self):
        need(SQLITE3)
        self.pair("sqlite3", [SQLITE3, "-batch", ":memory:"], stdin_path=os.path.join(self.src, "workload.sql"),
                  timeout=120)

    def test_perl(self):
        need(PERL)
        # A fixed hash seed makes both runs do the same work; the output never depends on it.
        env = {"PERL_HASH_SEED": "0", "PERL_PERTURB_KEYS": "0"}
        self.pair("perl", [PERL, os.path.join(self.src, "hashes.pl")], env=env, timeout=140)

    def compile_and_run(self, compiler, source, std, lang, compile_flags, asm_flags, extra_modes=()):
        """Compiles source to an object file (compile_flags) and, unless asm_flags is None, to
        assembly; links; runs the program. Outputs of the plain and preloaded compiler must be
        byte-identical, and so must the program's output without and with the preload (also
        for each (mode, hint) of extra_modes: mode is the program's argument, hint is printed
        when the outputs differ)."""
        need(compiler)
        src = os.path.join(self.src, source)
        flags = ["-std=" + std, "-Wall", "-Wextra", "-frandom-seed=realprog"]
        out = {}
        for v in ("plain", "preload"):
            out[v] = {k: os.path.join(self.work, "%s.%s%s" % (lang, v, ext))
                      for k, ext in (("o", ".o"), ("s", ".s"), ("exe", ""))}

        def both(step, make_argv, **kw):
            # The same command, but each variant writes its own output file.
            return self.pair("%s-%s" % (lang, step), make_argv(out["plain"]), argv_preload=make_argv(out["preload"]),
                             **kw)

        # The driver runs cc1/cc1plus and as: at least 3 processes under the preload.
        both("compile", lambda o: [compiler] + flags + compile_flags + ["-c", src, "-o", o["o"]], min_processes=3)
        self.same_file("object file", out["plain"]["o"], out["preload"]["o"])
        if asm_flags is not None:
            both("asm", lambda o: [compiler] + flags + asm_flags + ["-S", src, "-o", o["s"]], min_processes=2)
            self.same_file("assembly", out["plain"]["s"], out["preload"]["s"])
        # collect2 and ld (the linker plugin included) run under the preload too.
        both("link", lambda o: [compiler, o["o"], "-o", o["exe"]], min_processes=3)
        self.same_file("executable", out["plain"]["exe"], out["preload"]["exe"])
        # The program: the same binary, run without and with the preload.
        self.pair("%s-program" % lang, [out["plain"]["exe"]], timeout=120)
        for mode, hint in extra_modes:
            self.pair("%s-%s" % (lang, mode), [out["plain"]["exe"], mode], timeout=120, hint=hint)

    def test_gcc(self):
        # usable-slack: writes the whole malloc_usable_size() and grows with realloc (SQLite's
        # StrAccum, Redis's sds); glibc, jemalloc, mimalloc and tcmalloc keep those bytes.
        slack_hint = ("hint: the program wrote all malloc_usable_size() bytes of a block, then grew it with "
                      "realloc; the bytes past the requested size did not survive the move (see the comment at "
                      "the top of workload.c)")
        self.compile_and_run(GCC, "workload.c", "c11", "c", ["-O2", "-g"], ["-O3"],
                             extra_modes=[("usable-slack", slack_hint)])

    def test_gxx(self):
        # cc1plus peaks at ~350 MB here; -O2 or a second compilation to assembly would double
        # the test's time for little more coverage.
        self.compile_and_run(GXX, "workload.cc", "c++20", "cxx", ["-O1", "-g"], None)

    def test_threads(self):
        """Multi-threaded programs: blocks allocated by one thread are freed by another."""
        need(SORT)
        need(XZ)
        # ~9 MB of text from a fixed seed (generated here, not under the preload).
        import random
        rnd = random.Random(7)
        data = os.path.join(self.work, "input.txt")
        with open(data, "w") as f:
            for i in range(250000):
                word = "".join(rnd.choice("abcdefghij") for _ in range(rnd.randrange(5, 40)))
                f.write("%d %s %d\n" % (rnd.randrange(10 ** 6), word, i))
        # GNU sort: 2 threads, a small buffer so that it also spills and merges temp files.
        self.pair("sort", [SORT, "--parallel=2", "-S", "2M", "-T", self.work, "-k2,2", "-k1,1n", data])
        # xz: 2 encoder threads over 256 KiB blocks, then 2 decoder threads (xz >= 5.4).
        pl, _ = self.pair("xz", [XZ, "-T2", "-1", "--block-size=256KiB", "-c", data])
        packed = os.path.join(self.work, "input.txt.xz")
        with open(packed, "wb") as f:
            f.write(pl.stdout)
        self.pair("unxz", [XZ, "-d", "-T2", "-c", packed])
        if os.access(ZSTD, os.X_OK):
            pl, _ = self.pair("zstd", [ZSTD, "-q", "-T2", "-3", "-c", data])
            packed = os.path.join(self.work, "input.txt.zst")
            with open(packed, "wb") as f:
                f.write(pl.stdout)
            self.pair("unzstd", [ZSTD, "-q", "-d", "-c", packed])
        else:
            log("zstd: %s is not installed; step skipped" % ZSTD)

    def test_python(self):
        need(PYTHON)
        if not os.path.exists("/usr/lib/python3.11/test/regrtest.py"):
            skip("CPython's test suite is not installed (Debian package libpython3.11-testsuite)")
        tests = os.environ.get("TM_REALPROG_PYTHON_TESTS", "").split() or PYTHON_TESTS
        results = {}
        for v in ("plain", "preload"):
            tmp = os.path.join(self.work, "pytmp-" + v)
            os.makedirs(tmp)
            xml = os.path.join(self.work, "junit-%s.xml" % v)
            env = {"PYTHONMALLOC": "malloc", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": tmp}
            # -j1: still one test at a time, but each module in a fresh worker process (so a
            # crash names its module and the others still run). The main process then writes
            # the JUnit XML; in a single process test_xml_etree's fresh ElementTree module
            # breaks regrtest's own XML writer.
            argv = [PYTHON, "-m", "test", "-j1", "-u", "none", "--timeout", "300", "--tempdir", tmp,
                    "--junit-xml", xml] + tests
            res = self.run(v, argv, self.work, env, timeout=420)
            self.save("python", res)
            summary = regrtest_summary(res.stdout) + junit_results(xml)
            results[v] = (res, summary)
            ok = res.rc == 0 and b"\nTests result: SUCCESS" in res.stdout
            if not ok:
                self.report_crash(res)
                if v == "plain":
                    raise Failure("python: the baseline run WITHOUT the preload failed (%s): fix the test list, "
                                  "this is not an allocator problem" % res.status())
                log("per-test differences (plain vs preload):")
                self.diff("python results", "\n".join(results["plain"][1]).encode() + b"\n",
                          "\n".join(summary).encode() + b"\n")
                raise Failure("python: CPython's tests failed under LD_PRELOAD=libtinymalloc.so (%s)" % res.status())
        plain, pre = results["plain"], results["preload"]
        self.timings.append(("python", plain[0].seconds, pre[0].seconds))
        nproc = self.check_loaded(pre[0], 1)
        if plain[1] != pre[1]:
            log("python: the per-test results differ:")
            self.diff("python results", "\n".join(plain[1]).encode() + b"\n", "\n".join(pre[1]).encode() + b"\n")
            raise Failure("python: per-test results differ under the preload")
        ncases = sum(1 for l in plain[1] if l.startswith("case "))
        log("%-14s plain %6.2fs   preload %6.2fs   identical results: %d modules, %d test cases, "
            "%d process(es) with tinymalloc" % ("python", plain[0].seconds, pre[0].seconds, len(tests), ncases, nproc))


def regrtest_summary(stdout):
    """regrtest's progress and result lines, without timestamps, load averages or durations."""
    lines = []
    for raw in stdout.decode(errors="replace").splitlines():
        line = REGRTEST_PREFIX.sub("", raw.rstrip())
        m = REGRTEST_PROGRESS.match(line)
        if m:
            lines.append("module %s %s" % (m.group(1), m.group(2) or ""))
        elif REGRTEST_SUMMARY.match(line):
            lines.append("summary " + line)
    return lines


def junit_results(path):
    """One line per test case: its name and outcome (ok / skipped: reason / failure / error)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        return ["junit unreadable: %s" % e]
    lines = []
    for case in root.iter("testcase"):
        outcome = []
        for child in case:
            if child.tag == "skipped":
                outcome.append("skipped: " + (child.get("message") or child.text or "").strip())
            elif child.tag in ("failure", "error"):
                outcome.append(child.tag)
        lines.append("case %s %s" % (case.get("name"), "; ".join(outcome) or case.get("result", "ok")))
    return sorted(lines)


def need(program):
    if not os.access(program, os.X_OK):
        skip("%s is not installed (ci/install-deps installs it)" % program)


def skip(why):
    log("SKIPPED: " + why)
    sys.exit(SKIP)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", required=True, help="libtinymalloc.so")
    ap.add_argument("--work", required=True, help="work directory (emptied first)")
    ap.add_argument("--src", default=os.path.dirname(os.path.abspath(__file__)),
                    help="directory of the workload sources (default: this script's)")
    ap.add_argument("test", choices=["python", "sqlite3", "gcc", "gxx", "perl", "threads"])
    args = ap.parse_args()
    if not os.path.isfile(args.lib):
        log("FAILED: %s does not exist" % args.lib)
        return 1
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(os.path.join(args.work, "lddebug"))
    d = Driver(args.lib, args.work, args.src)
    start = time.monotonic()
    try:
        d.probe()
        getattr(d, "test_" + args.test)()
    except Failure as e:
        log("FAILED: %s" % e)
        log("work directory (outputs of both runs): %s" % args.work)
        return 1
    plain = sum(t[1] for t in d.timings)
    pre = sum(t[2] for t in d.timings)
    log("PASSED %s: plain %.1fs, preload %.1fs (%.2fx), total %.1fs" %
        (args.test, plain, pre, pre / plain if plain else 0, time.monotonic() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
