// Shared helpers of the property suite (RapidCheck + GoogleTest): size generators that
// hit every tier boundary, and small printing helpers.
//
// Reproducing a failure of any property binary (see also each file's header):
//   RapidCheck prints  `RC_PARAMS="reproduce=<base64>"`  after a failure. Re-run only the
//   failing test with it:
//     RC_PARAMS="reproduce=<base64>" ./<binary> --gtest_filter=<Suite>.<Name>
//   or replay the whole search with the seed printed in "Using configuration: seed=<n>":
//     RC_PARAMS="seed=<n>" ./<binary> --gtest_filter=<Suite>.<Name>
//   Other keys: max_success=<n> (cases), max_size=<n> (sequence length), noshrink=1,
//   verbose_shrinking=1. Under ctest the test presets already put "max_success=100" in
//   front of the user's RC_PARAMS, and the last key wins, so
//     RC_PARAMS="seed=42 max_success=1000" ctest --preset release -L property
//   is honoured.
#pragma once

#include <rapidcheck.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "config.h"
#include "size_class.h"
#include "tinymalloc.h"

namespace tmprop {

// Interesting exact sizes: 0, small class sizes and their neighbours, tier and geometry
// thresholds and their neighbours.
inline std::vector<size_t> boundary_sizes() {
  std::vector<size_t> out{0, 1, 15, 16, 17};
  for (size_t c = 0; c < tmalloc::kSmallClassCount; ++c) {
    const size_t s = tmalloc::class_size(c);
    out.insert(out.end(), {s - 1, s, s + 1});
  }
  const size_t thresholds[] = {tmalloc::kSmallMax,        tmalloc::kMediumMax,
                               tmalloc::kMediumMinBlock,  tmalloc::kPageSize,
                               tmalloc::kRunSize,         tmalloc::kMediumMax - tmalloc::kMediumMinBlock,
                               tmalloc::kSegmentSize / 2, tmalloc::kSegmentSize};
  for (size_t t : thresholds) out.insert(out.end(), {t - 16, t - 1, t, t + 1, t + 16});
  return out;
}

// Log-uniform size in [lo, hi) (shrinks towards lo).
inline rc::Gen<size_t> log_uniform(size_t lo, size_t hi) {
  return rc::gen::mapcat(rc::gen::inRange<int>(0, 64), [lo, hi](int bits) {
    size_t top = size_t{1} << (bits % 64);
    if (top < lo) top = lo;
    if (top > hi) top = hi;
    // [lo, max(lo+1, min(hi, 2^bits)))
    return rc::gen::inRange<size_t>(lo, top > lo ? top : lo + 1);
  });
}

// Request sizes over the three tiers, biased to boundaries; at most `max` bytes.
inline rc::Gen<size_t> request_size(size_t max = size_t{2} << 20) {
  return rc::gen::suchThat(
      rc::gen::weightedOneOf<size_t>({
          {4, log_uniform(0, tmalloc::kSmallMax + 1)},                                     // small tier
          {3, rc::gen::inRange<size_t>(tmalloc::kSmallMax + 1, tmalloc::kMediumMax + 1)},  // medium
          {3, rc::gen::elementOf(boundary_sizes())},                                       // boundaries
          {1, log_uniform(tmalloc::kMediumMax + 1, max + 1)},                              // large
      }),
      [max](size_t n) { return n <= max; });
}

// Medium-tier sizes (best-fit blocks: split / coalesce / in-place realloc).
inline rc::Gen<size_t> medium_size() {
  return rc::gen::weightedOneOf<size_t>({
      {3, rc::gen::inRange<size_t>(tmalloc::kSmallMax + 1, 64 * 1024)},
      {1, rc::gen::inRange<size_t>(tmalloc::kSmallMax + 1, tmalloc::kMediumMax + 1)},
  });
}

// A list of at most `max` elements (at least one when `non_empty`), each drawn at the case's
// own size. `rc::gen::resize(max, container(element))` bounds the length but also hands `max`
// down as the elements' size, and RapidCheck scales `inRange` (and what is built on it) by the
// size: inside `resize(12, ...)` an `inRange<unsigned>(3, 17)` alignment exponent only ever
// drew 3, 4 or 5, and `resize(40, ...)` hid 9 of the 16 options from the option property.
// Here the length is bounded the same way and the elements see the size every other generator
// of the case sees (growing to rc::kNominalSize over a run, as RapidCheck intends).
template <typename T>
rc::Gen<std::vector<T>> list_of(int max, rc::Gen<T> element, bool non_empty = false) {
  return rc::gen::withSize([max, element, non_empty](int size) {
    auto list = rc::gen::container<std::vector<T>>(rc::gen::resize(size, element));
    return rc::gen::resize(max, non_empty ? rc::gen::nonEmpty(list) : list);
  });
}

// RapidCheck cannot print void* operands of RC_ASSERT: compare through these.
inline bool is_null(const void* p) { return p == nullptr; }
inline bool same_ptr(const void* a, const void* b) { return a == b; }

// "" when tm_check_heap passes, else "code N: <message>".
inline std::string heap_problem() {
  tm_check_report_t report;
  const int code = tm_check_heap_report(&report);
  if (code == TM_CHECK_OK) return "";
  return "tm_check_heap code " + std::to_string(code) + ": " + report.message;
}

inline std::string hex(uintptr_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace tmprop
