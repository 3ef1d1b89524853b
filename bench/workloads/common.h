// Shared helpers for the allocator workloads in bench/workloads/.
//
// The workloads use only the C/C++ allocation names (malloc, free, realloc, new, delete) so that
// LD_PRELOAD decides which allocator runs them; nothing here includes a tinymalloc header.
//
// Determinism: every random choice comes from a per-thread generator seeded from the thread's
// index, and every checksum is a commutative sum of per-block hashes of the data read back from
// the blocks. The printed checksum therefore depends only on the parameters, never on timing,
// scheduling or addresses, and bench/compare can require it to be identical across allocators.
#pragma once

#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <string>
#include <string_view>

namespace bench {

// ---- Command line ----------------------------------------------------------------------------

// Minimal "--name value" parser. Unknown options are an error (exit 2) so a typo in bench/compare
// never silently runs the default.
class Args {
 public:
  Args(int argc, char** argv) : argc_(argc), argv_(argv) {
    for (int i = 1; i < argc; i++) {
      std::string_view a = argv[i];
      if (a == "-h" || a == "--help") help_ = true;
    }
  }

  // Returns the value of --name, or def. Marks the option as known.
  uint64_t u64(const char* name, uint64_t def) {
    known_ += std::string(" --") + name;
    for (int i = 1; i + 1 < argc_; i++) {
      if (std::string_view(argv_[i]).substr(0, 2) == "--" && std::string_view(argv_[i] + 2) == name) {
        char* end = nullptr;
        unsigned long long v = strtoull(argv_[i + 1], &end, 0);
        if (end == argv_[i + 1] || *end != '\0') {
          fprintf(stderr, "%s: --%s needs a number, got '%s'\n", argv_[0], name, argv_[i + 1]);
          exit(2);
        }
        return v;
      }
    }
    return def;
  }

  // Returns the value of --name as text, or def. Marks the option as known.
  const char* str(const char* name, const char* def) {
    known_ += std::string(" --") + name;
    for (int i = 1; i + 1 < argc_; i++) {
      if (std::string_view(argv_[i]).substr(0, 2) == "--" && std::string_view(argv_[i] + 2) == name)
        return argv_[i + 1];
    }
    return def;
  }

  // Call after all options were read: rejects unknown options, prints help.
  void finish(const char* what) {
    if (help_) {
      printf("%s: %s\noptions:%s\n", argv_[0], what, known_.c_str());
      exit(0);
    }
    for (int i = 1; i < argc_; i += 2) {
      std::string opt = std::string(" ") + argv_[i];
      if (known_.find(opt + " ") == std::string::npos && !known_.ends_with(opt)) {
        fprintf(stderr, "%s: unknown option '%s' (known:%s)\n", argv_[0], argv_[i], known_.c_str());
        exit(2);
      }
      if (i + 1 >= argc_) {
        fprintf(stderr, "%s: option '%s' needs a value\n", argv_[0], argv_[i]);
        exit(2);
      }
    }
  }

 private:
  int argc_;
  char** argv_;
  bool help_ = false;
  std::string known_;
};

// ---- Heap map --------------------------------------------------------------------------------------

// Writes tinymalloc's heap map (tm_heap_map) to `path`: SVG when it ends in ".svg", text
// otherwise. Found with dlsym, so the program still runs under any allocator: under another one
// it says so and writes nothing. Returns whether a map was written.
inline bool write_heap_map(const char* workload, const char* path) {
  using HeapMapFn = int (*)(int, int);
  auto heap_map = reinterpret_cast<HeapMapFn>(dlsym(RTLD_DEFAULT, "tm_heap_map"));
  if (heap_map == nullptr) {
    fprintf(stderr, "%s: --heapmap: the allocator is not tinymalloc (no tm_heap_map); no map written\n", workload);
    return false;
  }
  const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    fprintf(stderr, "%s: --heapmap: cannot open %s\n", workload, path);
    return false;
  }
  const std::string_view name(path);
  const bool svg = name.size() >= 4 && name.substr(name.size() - 4) == ".svg";
  const bool ok = heap_map(fd, svg ? 1 : 0) == 0;
  close(fd);
  return ok;
}

// ---- Random numbers ----------------------------------------------------------------------------

inline uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// xorshift-style generator, small state so it can be handed from one thread to the next.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(mix64(seed) | 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  // Uniform in [0, n).
  uint64_t below(uint64_t n) { return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64); }
  // Uniform in [lo, hi].
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  // Log-uniform in [lo, hi]: every power of two in the range is equally likely.
  uint64_t log_uniform(uint64_t lo, uint64_t hi) {
    double l = std::log2(static_cast<double>(lo)), h = std::log2(static_cast<double>(hi) + 1.0);
    double e = l + (h - l) * (static_cast<double>(next() >> 11) * 0x1.0p-53);
    uint64_t v = static_cast<uint64_t>(std::exp2(e));
    return v < lo ? lo : (v > hi ? hi : v);
  }
};

// ---- Block contents ------------------------------------------------------------------------------

// The value stored at byte offset `off` of a block with tag `tag`.
inline uint64_t word_at(uint64_t tag, size_t off) { return mix64(tag ^ (off * 0x100000001b3ull)); }

inline void store64(void* p, uint64_t v) { memcpy(p, &v, sizeof v); }
inline uint64_t load64(const void* p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

// Writes a 64-bit word every `stride` bytes (touching every cache line or page of the block, as
// chosen) and one in the last 8 bytes, so an overlap with any other block is seen by check_block.
// The strided words stop before the last word so that none of them overlaps it. n must be >= 8.
inline void fill_block(void* p, size_t n, uint64_t tag, size_t stride = 64) {
  char* c = static_cast<char*>(p);
  for (size_t off = 0; off + 16 <= n; off += stride) store64(c + off, word_at(tag, off));
  store64(c + n - 8, word_at(tag, n - 8));
}

// Reads back what fill_block wrote. Returns a hash of the words read; sets *ok = false on any
// difference (the caller reports it and exits non-zero).
inline uint64_t check_block(const void* p, size_t n, uint64_t tag, bool* ok, size_t stride = 64) {
  const char* c = static_cast<const char*>(p);
  uint64_t h = 0;
  for (size_t off = 0; off + 16 <= n; off += stride) {
    uint64_t v = load64(c + off);
    if (v != word_at(tag, off)) *ok = false;
    h += mix64(v + off);
  }
  uint64_t last = load64(c + n - 8);
  if (last != word_at(tag, n - 8)) *ok = false;
  return h + mix64(last ^ n);
}

// ---- Time and memory -------------------------------------------------------------------------------

inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Current resident set size in bytes (/proc/self/statm, second field).
inline uint64_t rss_bytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  int n = fscanf(f, "%llu %llu", &size, &resident);
  fclose(f);
  return n == 2 ? resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) : 0;
}

// Peak resident set size of this program's address space so far, in bytes (VmHWM). Unlike
// ru_maxrss, it does not include the RSS of the process image before exec(): Linux folds the
// parent's RSS (copied by fork) into the child's ru_maxrss, so a small program started by a
// Python driver reports at least the driver's RSS there.
inline uint64_t peak_rss_bytes() {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kib = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %llu kB", &kib) == 1) break;
  fclose(f);
  return kib * 1024;
}

// Thread t's share of `total` units of work split as evenly as possible over `threads` threads.
inline uint64_t share(uint64_t total, uint64_t threads, uint64_t t) {
  return total / threads + (t < total % threads ? 1 : 0);
}

inline double mib(uint64_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0); }

// Reports a failed self-check and exits with status 1.
[[noreturn]] inline void fail(const char* workload, const char* what) {
  fprintf(stderr, "%s: SELF-CHECK FAILED: %s\n", workload, what);
  fflush(stderr);
  _exit(1);
}

// Aborts when the allocator returns NULL for a sane request.
inline void* xmalloc(const char* workload, size_t n) {
  void* p = malloc(n);
  if (!p) fail(workload, "malloc returned NULL");
  return p;
}

// Prints the one result line: "<name> threads=N ops=... checksum=0x... time_s=..." plus the
// workload's extra fields and, last, peak_rss_kib (VmHWM, see peak_rss_bytes).
inline void print_result(const char* name, uint64_t threads, uint64_t ops, uint64_t checksum, double seconds,
                         const std::string& extra = "") {
  printf("%s threads=%llu ops=%llu checksum=0x%016llx time_s=%.6f%s%s peak_rss_kib=%llu\n", name,
         static_cast<unsigned long long>(threads), static_cast<unsigned long long>(ops),
         static_cast<unsigned long long>(checksum), seconds, extra.empty() ? "" : " ", extra.c_str(),
         static_cast<unsigned long long>(peak_rss_bytes() / 1024));
  fflush(stdout);
}

}  // namespace bench
