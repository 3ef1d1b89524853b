// realprog: a real program (not a micro-benchmark) as a bench/compare row. It runs one of
// Debian's programs on a fixed input, under whatever allocator LD_PRELOAD names (the child
// inherits the environment), and prints the usual result line:
//
//   realprog threads=N ops=1 checksum=0x... time_s=... peak_rss_kib=...
//
//   --program python   CPython on bench/realprog/pybench.py (PYTHONMALLOC=malloc, so every
//                      object goes through malloc, not pymalloc's arenas)
//   --program sqlite3  sqlite3 :memory: on tests/realprog/workload.sql (inserts, indexes, joins,
//                      window functions, VACUUM)
//   --program gxx      g++ -O2 -std=c++20 -c tests/realprog/workload.cc (cc1plus: a large
//                      template-heavy translation unit); the checksum covers the object file
//   --program perl     perl tests/realprog/hashes.pl (500k-key nested hashes, sorts, MD5)
//   --program xz       xz -T<threads> -2 of a 32 MiB generated text (compression)
//   --program zstd     zstd -T<threads> -12 of the same text
//
// time_s is the wall time of the program, peak_rss_kib its peak RSS (ru_maxrss of the child
// from wait4: the largest of the program and the processes it waited for, such as cc1plus
// under g++). This driver starts the program with posix_spawn, so the child's RSS before its
// exec is this driver's (about 3 MiB), which is the only error in that figure. The checksum
// is FNV-1a of the program's standard output (and, for gxx, the object file): bench/compare
// requires it to be the same under every allocator. Inputs are generated into --work (default:
// realprog-work beside this binary) once and reused. --root is the source tree (bench/compare
// passes it).
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <string>
#include <vector>

#include "common.h"

extern char** environ;

namespace {

constexpr const char* kName = "realprog";

// FNV-1a over a file's bytes, continuing from h.
uint64_t hash_file(const std::string& path, uint64_t h) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) bench::fail(kName, ("cannot read " + path).c_str());
  unsigned char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 0x100000001b3ull;
  }
  fclose(f);
  return h;
}

// The compression input: 32 MiB of lines of words from a 4096-word vocabulary, common words
// much more frequent than rare ones (like text; xz -2 packs it about 2.6:1), from a fixed seed,
// written once. Streamed through a small buffer so that this driver's RSS stays small.
std::string text_input(const std::string& work) {
  const std::string path = work + "/text-32MiB.txt";
  struct stat st;
  constexpr uint64_t kBytes = uint64_t{32} << 20;
  if (stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == kBytes) return path;
  bench::Rng rng(32);
  constexpr size_t kWords = 4096;
  static char vocabulary[kWords][12];
  for (auto& word : vocabulary) {
    const uint64_t letters = rng.range(2, 10);
    for (uint64_t c = 0; c < letters; c++) word[c] = static_cast<char>('a' + rng.below(26));
    word[letters] = '\0';
  }
  const std::string tmp = path + ".tmp";
  FILE* f = fopen(tmp.c_str(), "wb");
  if (f == nullptr) bench::fail(kName, ("cannot write " + tmp).c_str());
  uint64_t written = 0;
  char line[160];
  while (written < kBytes) {
    int len = snprintf(line, sizeof line, "%llu", static_cast<unsigned long long>(rng.below(100000)));
    const uint64_t words = rng.range(4, 12);
    for (uint64_t w = 0; w < words; w++) {
      // below(below(n) + 1): word k is about log(n / k) times likelier than the last one.
      len += snprintf(line + len, sizeof line - len, " %s", vocabulary[rng.below(rng.below(kWords) + 1)]);
    }
    line[len++] = '\n';
    const uint64_t take = written + len > kBytes ? kBytes - written : static_cast<uint64_t>(len);
    fwrite(line, 1, take, f);
    written += take;
  }
  if (fclose(f) != 0 || rename(tmp.c_str(), path.c_str()) != 0) bench::fail(kName, "cannot write the text input");
  return path;
}

struct Run {
  double seconds;
  uint64_t peak_rss_kib;
};

// Runs argv (PATH lookup) with stdin from in_path (or /dev/null) and stdout to out_path;
// extra_env entries are added to the environment. Fails the workload unless it exits 0.
Run run(const std::vector<std::string>& argv, const std::string& in_path, const std::string& out_path,
        const std::vector<std::string>& extra_env) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, in_path.empty() ? "/dev/null" : in_path.c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<char*> env;
  for (const std::string& e : extra_env) env.push_back(const_cast<char*>(e.c_str()));
  for (char** e = environ; *e != nullptr; e++) env.push_back(*e);
  env.push_back(nullptr);
  const auto start = std::chrono::steady_clock::now();
  pid_t pid;
  if (posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), env.data()) != 0) {
    bench::fail(kName, ("cannot start " + argv[0]).c_str());
  }
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  struct rusage usage {};
  if (wait4(pid, &status, 0, &usage) != pid) bench::fail(kName, "wait4 failed");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "%s: %s exited with status 0x%x\n", kName, argv[0].c_str(), status);
    exit(1);
  }
  return Run{seconds, static_cast<uint64_t>(usage.ru_maxrss)};
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const uint64_t threads = args.u64("threads", 1);
  const std::string program = args.str("program", "");
  const std::string root = args.str("root", ".");
  std::string work = args.str("work", "");
  args.finish("a real program as a bench/compare row (see the header of bench/workloads/realprog.cc)");
  if (work.empty()) {
    std::string self = argv[0];
    const size_t slash = self.rfind('/');
    work = (slash == std::string::npos ? std::string(".") : self.substr(0, slash)) + "/realprog-work";
  }
  mkdir(work.c_str(), 0755);
  const std::string out = work + "/" + program + "-" + std::to_string(threads) + ".out";
  const std::string t = std::to_string(threads);
  Run r{};
  uint64_t checksum = 0xcbf29ce484222325ull;
  if (program == "python") {
    r = run({"python3", root + "/bench/realprog/pybench.py"}, "", out, {"PYTHONMALLOC=malloc", "PYTHONHASHSEED=0"});
  } else if (program == "sqlite3") {
    r = run({"sqlite3", "-batch", ":memory:"}, root + "/tests/realprog/workload.sql", out, {});
  } else if (program == "gxx") {
    const std::string object = work + "/workload-gxx.o";
    r = run({"g++", "-O2", "-std=c++20", "-c", root + "/tests/realprog/workload.cc", "-o", object}, "", out, {});
    checksum = hash_file(object, checksum);
  } else if (program == "perl") {
    r = run({"perl", root + "/tests/realprog/hashes.pl"}, "", out, {"PERL_HASH_SEED=0", "PERL_PERTURB_KEYS=0"});
  } else if (program == "xz") {
    r = run({"xz", "-T" + t, "-2", "-c", text_input(work)}, "", out, {});
  } else if (program == "zstd") {
    r = run({"zstd", "-q", "-T" + t, "-12", "-c", text_input(work)}, "", out, {});
  } else {
    fprintf(stderr, "%s: --program must be python, sqlite3, gxx, perl, xz or zstd (got '%s')\n", kName,
            program.c_str());
    return 2;
  }
  checksum = hash_file(out, checksum);
  printf("%s threads=%llu ops=1 checksum=0x%016llx time_s=%.6f peak_rss_kib=%llu\n", kName,
         static_cast<unsigned long long>(threads), static_cast<unsigned long long>(checksum), r.seconds,
         static_cast<unsigned long long>(r.peak_rss_kib));
  return 0;
}
