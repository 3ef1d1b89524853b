// Contract clauses, profiles, and the process-wide record of waived deviations (contract.h).
#include "contract.h"

#include <unistd.h>

#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

namespace tmh {

namespace {

// Indexed by Clause. The source names where the promise comes from; profiles below.
constexpr ClauseInfo kClauses[kClauseCount] = {
    {"impossible-fails", "C11 7.22.3",
     "a size no machine can hold (>= 2^47 bytes) fails: a non-NULL result is a block that is not there"},
    {"calloc-overflow", "C11 7.22.3.2", "calloc fails when count * size overflows"},
    {"calloc-zero", "C11 7.22.3.2", "calloc's block reads as all zero bytes"},
    {"realloc-preserves", "C11 7.22.3.5", "realloc keeps the first min(old, new) bytes of the block"},
    {"realloc-fail-keeps", "C11 7.22.3.5", "a failed realloc leaves the old block allocated and unchanged"},
    {"align-min", "C11 7.22.3",
     "a block is aligned for any object that fits in it (16 bytes, or the largest power of two <= its size)"},
    {"align-pow2", "C11 7.22.3.1 / POSIX posix_memalign",
     "aligned_alloc and posix_memalign return blocks aligned as requested"},
    {"no-overlap", "C11 7.22.3", "the requested bytes of live blocks never overlap"},
    {"content", "C11 7.22.3", "a live block's bytes change only when the program writes them"},
    {"errno-enomem", "POSIX malloc", "a failed malloc, calloc, realloc or aligned_alloc sets errno to ENOMEM"},
    {"einval", "POSIX posix_memalign",
     "posix_memalign returns EINVAL for an alignment that is not a power of two multiple of sizeof(void *)"},
    {"posix-memalign", "POSIX posix_memalign",
     "posix_memalign returning 0 stored a block in *memptr; failing, it stored nothing but NULL"},
    {"sane-success", "glibc behaviour",
     "a request of at most 64 MiB succeeds when memory is available (outside injected OOM windows)"},
    {"usable-size", "glibc malloc_usable_size",
     "malloc_usable_size is at least the requested size, stays the same while the block lives, and every usable "
     "byte belongs to that block alone"},
    {"malloc-zero", "tinymalloc", "malloc(0), calloc of 0 bytes and aligned requests of 0 bytes return a unique block"},
    {"realloc-zero", "tinymalloc (glibc does the same; C17 leaves it to the implementation)",
     "realloc(p, 0) frees p and returns NULL"},
    {"aligned-alloc-einval", "C23 7.24.3.1 / tinymalloc",
     "aligned_alloc with an alignment that is not a power of two fails with EINVAL"},
    {"memptr-untouched", "tinymalloc (glibc does the same)", "a failed posix_memalign leaves *memptr untouched"},
    {"usable-null", "tinymalloc (glibc does the same)", "malloc_usable_size(NULL) is 0"},
    {"owns", "tinymalloc tm_owns", "tm_owns is true for every usable byte of a live block and false elsewhere"},
    {"heap-check", "tinymalloc tm_check_heap", "tm_check_heap and tm_check_heap_around find no inconsistency"},
    {"stats", "tinymalloc tm_stats", "tm_stats agrees with the live blocks, and nothing is left after the last free"},
    {"pools", "tinymalloc tm_heap_*", "memory pools: the limit of live pools and each pool's statistics"},
};

// First clause beyond each profile (clauses are ordered so that each profile is a prefix).
constexpr Clause kProfileEnd[] = {Clause::kErrnoEnomem, Clause::kSaneSuccess, Clause::kMallocZero, Clause::kCount};
constexpr const char* kProfileNames[] = {"c11", "posix", "glibc", "tinymalloc"};

struct Log {
  std::mutex mu;
  uint64_t counts[kClauseCount] = {};
  size_t smallest[kClauseCount] = {};  // size of the kept example (valid when counts > 0)
  // A copy of the input being run (the caller's buffer may come from the allocator under
  // test, which may be the one that overwrites it); in_input: one is being run.
  std::vector<uint8_t> input;
  bool in_input = false;
  std::string dir;
  bool dir_read = false;
  bool atexit_done = false;
  // This input so far: whether it overlapped blocks (no-overlap or usable-size), and its
  // content deviations held back until it ends (an overlap makes them its consequences).
  bool input_overlapped = false;
  uint64_t held_content = 0;
  std::string held_description;
};

Log& log() {
  static Log* l = new Log;  // never destroyed: deviations may be recorded during exit
  return *l;
}

void write_file(const std::string& path, const void* data, size_t size) {
  FILE* f = fopen(path.c_str(), "wb");
  if (f == nullptr) return;
  if (size) fwrite(data, 1, size, f);
  fclose(f);
}

void write_counts_at_exit();

// DIR/counts.<pid>.txt; called with the lock held.
void write_counts(Log& l) {
  if (l.dir.empty()) return;
  std::string text;
  for (unsigned c = 0; c < kClauseCount; ++c) {
    if (l.counts[c] == 0) continue;
    text += std::string(kClauses[c].name) + " " + std::to_string(l.counts[c]) + "\n";
  }
  write_file(l.dir + "/counts." + std::to_string(getpid()) + ".txt", text.data(), text.size());
}

// Counts one deviation of clause i of the current input and keeps the input when it is the
// smallest that showed the clause; called with the lock held.
void count(Log& l, unsigned i, const std::string& description, uint64_t times) {
  if (!l.dir_read) {
    l.dir_read = true;
    if (const char* d = getenv("TM_HARNESS_DEVIATIONS")) l.dir = d;
  }
  const uint64_t before = l.counts[i];
  const uint64_t n = l.counts[i] += times;
  if (l.dir.empty()) return;
  if (!l.atexit_done) {
    l.atexit_done = true;
    atexit(write_counts_at_exit);
  }
  if (l.in_input && (before == 0 || l.input.size() < l.smallest[i])) {
    l.smallest[i] = l.input.size();
    const std::string stem = l.dir + "/" + kClauses[i].name + "." + std::to_string(getpid());
    write_file(stem + ".bin", l.input.data(), l.input.size());
    const std::string first_line = description.substr(0, description.find('\n'));
    const std::string text = first_line + "\ninput bytes: " + std::to_string(l.input.size()) + "\n";
    write_file(stem + ".txt", text.data(), text.size());
  }
  // Counts on disk as they grow (a process that crashes later keeps what it saw).
  if (std::bit_width(before) != std::bit_width(n)) write_counts(l);
}

// The end of an input: its held-back content deviations count unless it overlapped blocks.
void end_input(Log& l) {
  if (l.held_content > 0 && !l.input_overlapped) {
    count(l, static_cast<unsigned>(Clause::kContent), l.held_description, l.held_content);
  }
  l.held_content = 0;
  l.held_description.clear();
  l.input_overlapped = false;
}

void write_counts_at_exit() {
  Log& l = log();
  std::lock_guard<std::mutex> g(l.mu);
  write_counts(l);
}

}  // namespace

const ClauseInfo& clause_info(Clause c) { return kClauses[static_cast<unsigned>(c) % kClauseCount]; }

bool clause_from_name(std::string_view name, Clause* out) {
  for (unsigned c = 0; c < kClauseCount; ++c) {
    if (name == kClauses[c].name) {
      *out = static_cast<Clause>(c);
      return true;
    }
  }
  return false;
}

const char* contract_profile_name(ContractProfile p) { return kProfileNames[static_cast<unsigned>(p) % 4]; }

bool contract_profile_from_name(std::string_view name, ContractProfile* out) {
  for (unsigned p = 0; p < 4; ++p) {
    if (name == kProfileNames[p]) {
      *out = static_cast<ContractProfile>(p);
      return true;
    }
  }
  return false;
}

std::string clause_report_line(Clause c, ContractProfile p) {
  const ClauseInfo& ci = clause_info(c);
  return std::string("clause: ") + ci.name + " (" + ci.source + "; contract " + contract_profile_name(p) +
         "): " + ci.summary;
}

bool profile_includes(ContractProfile p, Clause c) {
  return static_cast<unsigned>(c) < static_cast<unsigned>(kProfileEnd[static_cast<unsigned>(p) % 4]);
}

Contract contract_from_env(ContractProfile fallback) {
  Contract k;
  k.profile = fallback;
  if (const char* p = getenv("TM_HARNESS_CONTRACT"); p != nullptr && *p) {
    if (!contract_profile_from_name(p, &k.profile)) {
      fprintf(stderr, "tinymalloc harness: unknown TM_HARNESS_CONTRACT '%s' (c11, posix, glibc, tinymalloc)\n", p);
      exit(2);
    }
  }
  if (const char* w = getenv("TM_HARNESS_WAIVE"); w != nullptr && *w) {
    std::string_view rest(w);
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      const std::string_view item = rest.substr(0, comma);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      if (item.empty()) continue;
      Clause c;
      if (item == "all") {
        k.waived = ~uint64_t{0};
      } else if (item[0] == '-' && clause_from_name(item.substr(1), &c)) {
        k.waived &= ~(uint64_t{1} << static_cast<unsigned>(c));  // "all,-content": all but content
      } else if (clause_from_name(item, &c)) {
        k.waived |= uint64_t{1} << static_cast<unsigned>(c);
      } else {
        fprintf(stderr, "tinymalloc harness: unknown clause '%.*s' in TM_HARNESS_WAIVE\n",
                static_cast<int>(item.size()), item.data());
        exit(2);
      }
    }
  }
  return k;
}

void set_current_input(const uint8_t* data, size_t size) {
  Log& l = log();
  std::lock_guard<std::mutex> g(l.mu);
  end_input(l);
  l.in_input = data != nullptr;
  if (l.in_input) {
    l.input.assign(data, data + size);
  } else {
    l.input.clear();
  }
}

void record_deviation(Clause c, const std::string& description) {
  Log& l = log();
  std::lock_guard<std::mutex> g(l.mu);
  if (c == Clause::kNoOverlap || c == Clause::kUsableSize) l.input_overlapped = true;
  // Overlapping blocks write into each other: a changed block in an input that overlapped
  // blocks is a consequence of that, not a deviation of its own. The single-thread model
  // stops checking both blocks of an overlap it found; in a multi-threaded run a thread may
  // see the change before the phase end finds the overlap, so content waits for the input's end.
  if (c == Clause::kContent && l.in_input) {
    if (l.held_content++ == 0) l.held_description = description;
    return;
  }
  count(l, static_cast<unsigned>(c) % kClauseCount, description, 1);
}

uint64_t deviation_count(Clause c) {
  Log& l = log();
  std::lock_guard<std::mutex> g(l.mu);
  return l.counts[static_cast<unsigned>(c) % kClauseCount];
}

}  // namespace tmh
