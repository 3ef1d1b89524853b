"""Builds and tests mutants: one copy of the source tree and one build tree per job, reused
from mutant to mutant (only the mutated file is recompiled, and only the test binaries of the
tier about to run are relinked).

Tiers, in order of cost, each stopping at its first failing test (the mutant is then killed by
it); a tier's binaries are built just before it runs, so a mutant the properties kill never
waits for the unit tests' and the corpus replays' links:
  properties  ctest -L property (RapidCheck, fixed seed)
  unit        ctest -L unit, without the long workload (GoogleTest)
  corpus      ctest -L corpus (every shipped seed and regression input, standalone replay), less
              the replays of the same corpora in debug mode, guard mode and trace mode
              (fuzz.corpus.<t>.debug/.guard/.traced: minutes per mutant, for paths the plain
              replays and the unit tests of debug.cc and trace.cc cover)
  fuzz        survivors only (--fuzz-seconds > 0): tools/tm-fuzz --probe on each fuzz target
              relevant to the mutated file, in a fuzz-preset build of the mutant
A tier that runs past its deadline (several times its time on the unmutated code) ends the
mutant as `timeout` (an infinite loop or a hang: detected, counted as killed).

Before any tier, a mutant of a .cc file is compiled alone and its object code compared with the
unmutated file's (trivial compiler equivalence: debug information left out). When the release
objects are the same, no release test can tell the mutant apart. Its objects in an ASan build
(tree/build/asan) are then compared too: the same again, and the mutant is `identical`
(equivalent, proven by the compiler: not run, not scored); different, and the change lies in
code that only the sanitizer build has (poisoning and its bookkeeping), so the properties and
unit tests run in the ASan tree instead (`asan properties`, `asan unit`), then the fuzz probe.
A mutant that survives the release tiers runs the ASan tiers as well: an out-of-bounds read or
write often goes unseen in release.
"""
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time

# (name, ctest label, ctest arguments). The unit tests come before the corpus replays: they
# take a third of the time and kill as many mutants (in the 12-mutant CI sample, 4 mutants
# that survived the properties waited 45 s for the corpus tier before a unit test killed them).
TIERS = (
    ("properties", "property", ["-L", "^property$"]),
    ("unit", "unit", ["-L", "^unit$", "-LE", "workload"]),
    ("corpus", "corpus", ["-L", "^corpus$", "-E", r"^fuzz\.corpus\..*\.(debug|guard|traced)$"]),
)

# Fuzz targets that exercise each core file (the tier or operation it implements).
RELEVANT_FUZZ = {
    "src/small.cc": ["heap_ops", "size_class"],
    "src/small_check.cc": ["heap_ops", "size_class"],
    "src/small_arena.h": ["heap_ops", "size_class"],
    "src/medium.cc": ["split_coalesce", "realloc"],
    "src/medium_cache.cc": ["split_coalesce", "heap_ops"],
    "src/fit_index.cc": ["fit_index", "split_coalesce"],
    "src/large.cc": ["heap_ops", "aligned"],
    "src/segment_pool.cc": ["heap_ops", "split_coalesce"],
    "src/thread_cache.cc": ["heap_ops", "heap_mt"],
    "src/api.cc": ["heap_ops", "realloc", "aligned"],
    "src/heap.cc": ["heap_pools"],
    "src/os.cc": ["heap_ops"],
}
DEFAULT_FUZZ = ["heap_ops"]

# The tiers run in the ASan tree for a mutant whose release objects are unchanged, and for a
# survivor of the release tiers (the corpus replays there take minutes and add little to what
# the properties' and unit tests' ASan runs see).
SANITIZER_TIERS = TIERS[:2]


def log(msg):
    print(f"tm-mutate: {msg}", flush=True)


def run(cmd, cwd, log_path, timeout=None, env=None):
    """Runs cmd in its own process group, output to log_path. Returns (rc, seconds, timed_out)."""
    start = time.monotonic()
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
            return rc, time.monotonic() - start, False
        except subprocess.TimeoutExpired:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=5)
                    break
                except subprocess.TimeoutExpired:
                    continue
            return None, time.monotonic() - start, True


def source_files(root):
    """The files of the checkout (tracked, and untracked ones git does not ignore)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, stdout=subprocess.PIPE,
                         check=True)
    return [f for f in out.stdout.decode().split("\0") if f and os.path.isfile(os.path.join(root, f))]


def sync_tree(root, dest):
    """Copies the checkout's files to dest, leaving unchanged files (and their mtimes) alone so
    that a reused build tree rebuilds only what changed."""
    for rel in source_files(root):
        src, dst = os.path.join(root, rel), os.path.join(dest, rel)
        try:
            st = os.stat(dst)
            if st.st_size == os.path.getsize(src):
                with open(src, "rb") as a, open(dst, "rb") as b:
                    if a.read() == b.read():
                        continue
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        # A fresh modification time, not the source's: the tree may have built objects after the
        # checkout's file was edited (from the copy before), and they must not look newer.
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)


def ninja_targets_for_labels(build_dir, labels):
    """Ninja targets that build the tests carrying any of the labels: '<subdir>/all' of each
    build subdirectory whose test files mention the label."""
    known = subprocess.run(["ninja", "-C", build_dir, "-t", "targets", "all"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, check=False).stdout.decode().splitlines()
    known = {line.split(":")[0] for line in known}
    out = set()
    for dirpath, _, files in os.walk(build_dir):
        for name in files:
            if name != "CTestTestfile.cmake" and not name.endswith("_include.cmake"):
                continue
            with open(os.path.join(dirpath, name), errors="replace") as f:
                text = f.read()
            if any(f'"{label}"' in text or f";{label}" in text or f"{label};" in text or f"LABELS {label}" in text
                   for label in labels):
                rel = os.path.relpath(dirpath, build_dir)
                if rel != "." and f"{rel}/all" in known:
                    out.add(f"{rel}/all")
    return sorted(out) or ["all"]


@contextlib.contextmanager
def mutated(path, text, mutant):
    """The file at path holds the mutant for the duration of the block, then text again."""
    from .discover import apply
    try:
        with open(path, "w") as f:
            f.write(apply(text, mutant))
        yield
    finally:
        with open(path, "w") as f:
            f.write(text)


class Job:
    """One work tree (a copy of the sources) with its release build and, on demand, fuzz build."""

    def __init__(self, root, work, index, jobs_per_build, sanitizer_tier=True):
        self.root = root
        self.dir = os.path.join(work, f"tree-{index}")
        self.release = os.path.join(self.dir, "build", "release")
        self.asan = os.path.join(self.dir, "build", "asan")
        self.fuzz = os.path.join(self.dir, "build", "fuzz")
        self.logs = os.path.join(work, f"logs-{index}")
        self.parallel = str(jobs_per_build)
        self.targets = None  # every tier's build targets
        self.tier_targets = {}  # tier -> the targets of that tier and of the tiers before it
        self.fuzz_ready = False
        self.baseline = {}
        self.sanitizer_tier = sanitizer_tier  # False: release-identical mutants are not run under ASan
        self.asan_baseline = None  # tier -> seconds on the unmutated code, once the ASan tree is ready
        self.asan_targets = None  # the ASan tree's targets for SANITIZER_TIERS
        self.unmutated_digests = {}  # (build dir, object paths) -> digest of the unmutated objects
        os.makedirs(self.logs, exist_ok=True)

    def configure(self, preset, build_dir):
        if os.path.isfile(os.path.join(build_dir, "build.ninja")):
            return True
        rc, _, _ = run(["cmake", "--preset", preset], self.dir, os.path.join(self.logs, f"configure-{preset}.log"))
        return rc == 0

    def objects_of(self, build_dir, rel):
        """The object files build_dir compiles from the source file rel (every library variant),
        relative to build_dir, from its compile_commands.json; [] for a header."""
        try:
            with open(os.path.join(build_dir, "compile_commands.json")) as f:
                commands = json.load(f)
        except (OSError, json.JSONDecodeError):
            return []
        source = os.path.realpath(os.path.join(self.dir, rel))
        out = []
        for entry in commands:
            if os.path.realpath(os.path.join(entry["directory"], entry["file"])) != source:
                continue
            args = shlex.split(entry["command"]) if "command" in entry else entry.get("arguments", [])
            if "-o" in args:
                out.append(args[args.index("-o") + 1])
        return sorted(out)

    def code_digest(self, build_dir, objects, log_name):
        """Compiles the objects (paths relative to build_dir) and returns a digest of what they
        hold without the debug information (which records columns) and the compiler's .comment:
        equal digests mean the same machine code and data. 'did-not-compile' when the build fails."""
        if not self.build(build_dir, objects, log_name):
            return "did-not-compile"
        digest = hashlib.sha1()
        with tempfile.TemporaryDirectory() as tmp:
            stripped = os.path.join(tmp, "o")
            for obj in objects:
                subprocess.run(["objcopy", "--strip-debug", "--remove-section=.comment", os.path.join(build_dir, obj),
                                stripped], check=True)
                digest.update(obj.encode())
                with open(stripped, "rb") as f:
                    digest.update(f.read())
        return digest.hexdigest()

    def unmutated_digest(self, build_dir, objects, path, text, applied):
        """The digest of the unmutated objects (computed once per tree and object set: the file
        is put back to text for the build, then to applied, the mutant)."""
        key = (build_dir, tuple(objects))
        if key not in self.unmutated_digests:
            with open(path, "w") as f:
                f.write(text)
            try:
                self.unmutated_digests[key] = self.code_digest(build_dir, objects, "unmutated-objects.log")
            finally:
                with open(path, "w") as f:
                    f.write(applied)
            if self.unmutated_digests[key] == "did-not-compile":
                raise RuntimeError(f"the unmutated objects {objects} do not build in {build_dir}")
        return self.unmutated_digests[key]

    def same_code(self, build_dir, rel, path, text, applied):
        """Whether the applied mutant compiles to the unmutated file's code in build_dir: True,
        False, None (a header: no object of its own) or 'did-not-compile'. The library object
        the tests link is compared first; the other variants are compiled only when it is the
        same (a mutant that changes code rarely waits for them)."""
        objects = self.objects_of(build_dir, rel)
        if not objects:
            return None
        first = [next((o for o in objects if "tinymalloc_prefixed" in o), objects[0])]
        for subset in (first, objects):
            digest = self.code_digest(build_dir, subset, "mutant-objects.log")
            if digest == "did-not-compile":
                return digest
            if digest != self.unmutated_digest(build_dir, subset, path, text, applied):
                return False
        return True

    def prepare(self):
        """Copies the sources, configures and builds the release tree, and times the tiers on
        the unmutated code (they must pass: a failing suite cannot kill anything)."""
        os.makedirs(self.dir, exist_ok=True)
        sync_tree(self.root, self.dir)
        if not self.configure("release", self.release):
            raise RuntimeError(f"configuring {self.release} failed (see {self.logs}/configure-release.log)")
        self.targets = ninja_targets_for_labels(self.release, [label for _, label, _ in TIERS])
        so_far = set()
        for name, label, _ in TIERS:
            so_far |= set(ninja_targets_for_labels(self.release, [label]))
            self.tier_targets[name] = sorted(so_far)
        if not self.build(self.release, self.targets, "build-baseline.log"):
            raise RuntimeError(f"building {self.release} failed (see {self.logs}/build-baseline.log)")
        for name, _, args in TIERS:
            rc, secs, timed_out = self.tier(name, args, None, "baseline")
            if rc != 0:
                raise RuntimeError(f"tier {name} fails on the unmutated code (see {self.logs}/baseline-{name}.log)")
            self.baseline[name] = secs

    def build(self, build_dir, targets, log_name):
        rc, _, _ = run(["cmake", "--build", build_dir, "--parallel", self.parallel, "--target"] + list(targets),
                       self.dir, os.path.join(self.logs, log_name))
        return rc == 0

    def tier(self, name, args, timeout, tag, preset="release"):
        build_dir = self.release if preset == "release" else os.path.join(self.dir, "build", preset)
        cmd = [os.path.join(self.dir, "ci", "preset-ctest"), preset, build_dir, "--stop-on-failure",
               "--parallel", self.parallel] + args
        env = dict(os.environ)
        # A fixed RapidCheck seed: the same properties run for every mutant.
        env["RC_PARAMS"] = (env.get("RC_PARAMS", "") + " seed=1").strip()
        return run(cmd, self.dir, os.path.join(self.logs, f"{tag}-{name}.log"), timeout=timeout, env=env)

    def prepare_asan(self, path, text, applied):
        """Builds the ASan tree's property and unit tests and times them on the unmutated code
        (the file is put back to text meanwhile, then to applied). Once per tree."""
        if self.asan_baseline is not None:
            return
        with open(path, "w") as f:
            f.write(text)
        try:
            targets = ninja_targets_for_labels(self.asan, [label for _, label, _ in SANITIZER_TIERS])
            if not self.build(self.asan, targets, "build-asan-baseline.log"):
                raise RuntimeError(f"building {self.asan} failed (see {self.logs}/build-asan-baseline.log)")
            self.asan_targets = targets
            baseline = {}
            for name, _, args in SANITIZER_TIERS:
                rc, secs, _ = self.tier(f"asan-{name}", args, None, "baseline", preset="asan")
                if rc != 0:
                    raise RuntimeError(f"ASan tier {name} fails on the unmutated code "
                                       f"(see {self.logs}/baseline-asan-{name}.log)")
                baseline[name] = secs
            self.asan_baseline = baseline
        finally:
            with open(path, "w") as f:
                f.write(applied)

    def failed_test(self, tag, name):
        """The first failing test named in a tier's log."""
        path = os.path.join(self.logs, f"{tag}-{name}.log")
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return None
        for line in lines:
            if "***Failed" in line or "***Exception" in line or "***Timeout" in line or "(Failed)" in line:
                parts = line.split()
                for i, p in enumerate(parts):
                    if p == "Test" and i + 2 < len(parts) and parts[i + 1].startswith("#"):
                        return parts[i + 2]
                return line.strip()[:120]
        return None

    def test_mutant(self, mutant, text, fuzz_seconds, seed, timeout_factor):
        """Applies the mutant in this tree, builds and runs the tiers. Returns the result dict."""
        start = time.monotonic()
        result = {"id": mutant["id"], "file": mutant["file"], "line": mutant["line"]}
        path = os.path.join(self.dir, mutant["file"])
        with mutated(path, text, mutant):
            tiers = self._tiers_for(mutant, path, text, result)
            if isinstance(tiers, dict):
                result.update(tiers)
            else:
                # A survivor of the release tiers may read or write out of bounds, which only ASan
                # sees (an index one past an array reads whatever lies there in release): it runs
                # the ASan tiers too, before its fuzz probe.
                then_asan = tiers[0] == "release" and self.sanitizer_tier
                verdict = self._verdict(mutant, 0 if then_asan else fuzz_seconds, seed, timeout_factor, result,
                                        tiers)
                if then_asan and verdict["status"] == "survived":
                    if not self.configure("asan", self.asan):
                        raise RuntimeError(f"configuring {self.asan} failed (see {self.logs}/configure-asan.log)")
                    with open(path) as f:
                        applied = f.read()
                    self.prepare_asan(path, text, applied)
                    verdict = self._verdict(mutant, fuzz_seconds, seed, timeout_factor, result,
                                            ("asan", SANITIZER_TIERS))
                result.update(verdict)
        result["seconds"] = round(time.monotonic() - start, 1)
        return result

    def _tiers_for(self, mutant, path, text, result):
        """Trivial compiler equivalence: compares the (applied) mutant's objects with the
        unmutated file's. Returns the tiers to run, as (preset, tiers), or a final verdict."""
        with open(path) as f:
            applied = f.read()
        release = self.same_code(self.release, mutant["file"], path, text, applied)
        if release == "did-not-compile":
            return {"status": "did-not-compile", "killer": None}
        if release is not True:
            return ("release", TIERS)
        result["release_code"] = "identical"
        if not self.sanitizer_tier:
            return {"status": "release-identical", "killer": None}
        if not self.configure("asan", self.asan):
            raise RuntimeError(f"configuring {self.asan} failed (see {self.logs}/configure-asan.log)")
        asan = self.same_code(self.asan, mutant["file"], path, text, applied)
        if asan == "did-not-compile":
            return {"status": "did-not-compile", "killer": None}
        if asan is True:
            return {"status": "identical", "killer": None}
        self.prepare_asan(path, text, applied)
        return ("asan", SANITIZER_TIERS)

    def _verdict(self, mutant, fuzz_seconds, seed, timeout_factor, result, tiers=("release", TIERS)):
        """Builds the (applied) mutant and runs the tiers; the fields to add to its result."""
        preset, tier_list = tiers
        prefix = "" if preset == "release" else f"{preset} "
        for name, _, args in tier_list:
            # This tier's binaries (and those of the tiers before it, built already: a no-op).
            built = (self.build(self.release, self.tier_targets[name], "mutant-build.log") if preset == "release"
                     else self.build(self.asan, self.asan_targets, "mutant-build-asan.log"))
            if not built:
                return {"status": "did-not-compile", "killer": None}
            baseline = self.baseline if preset == "release" else self.asan_baseline
            deadline = max(30.0, timeout_factor * baseline.get(name, 10.0))
            tag_name = name if preset == "release" else f"{preset}-{name}"
            rc, secs, timed_out = self.tier(tag_name, args, deadline, "mutant", preset=preset)
            result[f"{tag_name.replace('-', '_')}_s"] = round(secs, 2)
            if timed_out:
                return {"status": "timeout", "killer": f"{prefix}{name} (over {deadline:.0f} s)"}
            if rc != 0:
                return {"status": "killed",
                        "killer": f"{prefix}{name}: {self.failed_test('mutant', tag_name) or '?'}"}
        if fuzz_seconds > 0:
            result["fuzz_seconds"] = fuzz_seconds
            killer = self.fuzz_probe(mutant, fuzz_seconds, seed)
            if killer:
                return {"status": "killed", "killer": killer}
        return {"status": "survived", "killer": None}

    def fuzz_only(self, mutant, text, previous, fuzz_seconds, seed):
        """A survivor of the tiers (previous result) that has not had a fuzz probe this long:
        only the probe runs. Returns the updated result."""
        start = time.monotonic()
        result = dict(previous, fuzz_seconds=fuzz_seconds)
        with mutated(os.path.join(self.dir, mutant["file"]), text, mutant):
            killer = self.fuzz_probe(mutant, fuzz_seconds, seed)
        if killer:
            result.update(status="killed", killer=killer)
        result["seconds"] = round(previous.get("seconds", 0) + time.monotonic() - start, 1)
        return result

    def fuzz_probe(self, mutant, seconds, seed):
        """Fuzzes the targets relevant to the mutated file; the first crashing one, or None."""
        targets = RELEVANT_FUZZ.get(mutant["file"], DEFAULT_FUZZ)
        if not self.configure("fuzz", self.fuzz):
            raise RuntimeError(f"configuring {self.fuzz} failed")
        names = [f"fuzz_{t}" for t in targets]
        if not self.build(self.fuzz, names, "mutant-build-fuzz.log"):
            return "fuzz build: did not compile"
        for t in targets:
            res = os.path.join(self.logs, f"probe-{t}.json")
            if os.path.exists(res):
                os.remove(res)
            cmd = [os.path.join(self.dir, "tools", "tm-fuzz"), "--probe", t, "--seconds", str(seconds),
                   "--seed", str(seed), "--build-dir", self.fuzz, "--work-dir",
                   os.path.join(self.logs, "fuzz-work"), "--result", res]
            run(cmd, self.dir, os.path.join(self.logs, f"mutant-fuzz-{t}.log"), timeout=seconds + 60)
            try:
                with open(res) as f:
                    probe = json.load(f)
            except (FileNotFoundError, json.JSONDecodeError):
                continue
            if probe.get("crashed"):
                return f"fuzz: {t} after {probe.get('seconds', '?')} s: {probe.get('signature') or 'crash'}"
        return None
