// Turns on tinymalloc's track_requested option before the allocator starts, for every
// program that compares its requested-bytes statistic with a model: the harness (fuzz
// targets, property tests, tools) and the unit tests. Linked as an object library, so the
// constructor is always part of the program.
//
// TINYMALLOC_OPTIONS naming track_requested wins: `track_requested=0` runs the same programs
// on the default fast paths, where small blocks count at their usable size and the
// requested-bytes comparisons are skipped (HeapStats::requested_exact, tests'
// exact_requested()).
#include <cstdlib>
#include <cstring>

#include "tinymalloc.h"

namespace {

// Runs before main and before any tm_* call: the option is read when the allocator starts.
__attribute__((constructor)) void enable_track_requested() {
  const char* env = std::getenv("TINYMALLOC_OPTIONS");
  if (env == nullptr || std::strstr(env, "track_requested") == nullptr) tm_option_set("track_requested", 1);
}

}  // namespace
