// The contract the shadow heap enforces, split into named clauses, each tagged with where it
// comes from (C11, POSIX, glibc behaviour, tinymalloc's own promise), and the profiles that
// group them. A run enforces the clauses of its profile; a waived clause is recorded instead
// (counted, its smallest example input kept) and the run goes on, so one known deviation
// never hides another (tools/tm-check-allocator drives this).
//
// Environment (read once per Interpreter):
//   TM_HARNESS_CONTRACT=c11|posix|glibc|tinymalloc  profile (default: the backend's own, i.e.
//                                                    tinymalloc for tm and faulty, glibc for system)
//   TM_HARNESS_WAIVE=clause,clause,...|all           record these instead of failing;
//                                                    "-clause" takes one out again ("all,-content")
//   TM_HARNESS_DEVIATIONS=DIR                        write what was recorded to DIR (below)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tmh {

enum class Clause : uint8_t {
  kImpossibleFails = 0,  // sizes >= 2^47 (and overflowing calloc totals) fail
  kCallocOverflow,       // calloc with count * size overflowing fails
  kCallocZero,           // calloc's block reads as zero
  kReallocPreserves,     // realloc keeps the first min(old, new) bytes
  kReallocFailKeeps,     // a failed realloc leaves the old block as it was
  kAlignMin,             // fundamental alignment: 16, or the largest power of two <= n
  kAlignPow2,            // aligned_alloc / posix_memalign honour the requested alignment
  kNoOverlap,            // the requested ranges of live blocks never overlap
  kContent,              // a live block's bytes change only when the program writes them
  kErrnoEnomem,          // a failed allocation sets errno to ENOMEM
  kEinval,               // posix_memalign rejects an invalid alignment with EINVAL
  kPosixMemalign,        // posix_memalign returning 0 stored a block in *memptr
  kSaneSuccess,          // requests up to 64 MiB succeed (outside injected OOM windows)
  kUsableSize,           // malloc_usable_size >= requested, stable, and all of it the caller's
  kMallocZero,           // malloc(0) and friends return a unique block, not NULL
  kReallocZero,          // realloc(p, 0) frees p and returns NULL
  kAlignedAllocEinval,   // aligned_alloc rejects a non-power-of-two alignment with EINVAL
  kMemptrUntouched,      // a failed posix_memalign leaves *memptr untouched
  kUsableNull,           // malloc_usable_size(NULL) is 0
  kOwns,                 // tm_owns: true for every byte of a live block, false elsewhere
  kHeapCheck,            // tm_check_heap / tm_check_heap_around find no inconsistency
  kStats,                // tm_stats agrees with the live blocks; nothing leaks
  kPools,                // tm_heap_* pools: limits, per-pool statistics
  kCount
};
inline constexpr unsigned kClauseCount = static_cast<unsigned>(Clause::kCount);

struct ClauseInfo {
  const char* name;     // "realloc-preserves"
  const char* source;   // "C11 7.22.3.5"
  const char* summary;  // one line
};
const ClauseInfo& clause_info(Clause c);
inline const char* clause_name(Clause c) { return clause_info(c).name; }
// Clause by name; false for an unknown one.
bool clause_from_name(std::string_view name, Clause* out);

enum class ContractProfile : uint8_t { kC11 = 0, kPosix, kGlibc, kTinymalloc, kCount };
const char* contract_profile_name(ContractProfile p);
bool contract_profile_from_name(std::string_view name, ContractProfile* out);
// The "clause: NAME (SOURCE; contract P): summary" line of a failure report (no newline).
std::string clause_report_line(Clause c, ContractProfile p);
// Whether the profile includes the clause (each profile includes the one before it).
bool profile_includes(ContractProfile p, Clause c);

// What one run enforces: its profile's clauses minus the waived ones.
struct Contract {
  ContractProfile profile = ContractProfile::kTinymalloc;
  uint64_t waived = 0;  // bit per clause

  bool applies(Clause c) const { return profile_includes(profile, c); }
  bool is_waived(Clause c) const { return (waived >> static_cast<unsigned>(c)) & 1u; }
  bool enforced(Clause c) const { return applies(c) && !is_waived(c); }
};

// The contract from TM_HARNESS_CONTRACT and TM_HARNESS_WAIVE, with `fallback` as the profile
// when the variable is unset. Exits with a message for an unknown profile or clause.
Contract contract_from_env(ContractProfile fallback);

// ---- Recorded deviations (process-wide, thread-safe) ------------------------------------------

// The input being run (the fuzz target or replay driver sets it, and nullptr after it): a
// recorded deviation keeps the smallest input that showed it. The end of an input decides
// on its held-back content deviations (record_deviation).
void set_current_input(const uint8_t* data, size_t size);

// Records a deviation of a waived clause. With TM_HARNESS_DEVIATIONS=DIR it writes
//   DIR/<clause>.<pid>.bin   the smallest input of this process that showed it
//   DIR/<clause>.<pid>.txt   the first line of its description and the input's size
//   DIR/counts.<pid>.txt     "<clause> <count>" per clause (rewritten as counts grow)
void record_deviation(Clause c, const std::string& description);

// How many deviations of c this process recorded.
uint64_t deviation_count(Clause c);

}  // namespace tmh
