// Fuzz target size_class: src/size_class.h and the public size-class API against a naive
// model built from the documented rule ("16 B steps up to 128 B, then 8 classes per power
// of two up to 8 KiB"), plus an end-to-end check that tm_malloc(n) lands in class
// size_to_class(n) (tm_stats class_live_blocks).
//
// Input: records of 5 bytes {mode, a (u16 LE), b (u16 LE)}; missing bytes read as 0.
//   mode % 4 == 0: n = a % 8193            (every small size)
//   mode % 4 == 1: n = a                   (0 .. 65535: small, medium)
//   mode % 4 == 2: n = a << (b % 64)       (any magnitude, incl. SIZE_MAX-ish)
//   mode % 4 == 3: n = class_size(a % 56) + (int8_t)b   (class boundaries +-128)
// For each n it checks size_to_class(n) against the model, the waste bound of the header
// comment, class_divider quotient and exactness for run offsets derived from b, the public
// tm_size_to_class / tm_size_class_size / tm_small_max / tm_medium_max, and (small n)
// the class counter and usable size of a real tm_malloc(n).
#include <cstdint>
#include <cstring>
#include <vector>

#include "config.h"
#include "size_class.h"
#include "tinymalloc.h"
#include "unit_check.h"

namespace {

const char* const kTarget = "size_class";

// The documented class table, built independently of size_class.h.
const std::vector<size_t>& model_classes() {
  static const std::vector<size_t> t = [] {
    std::vector<size_t> v;
    for (size_t s = 16; s <= 128; s += 16) v.push_back(s);
    for (size_t p = 128; p < 8192; p *= 2) {
      for (size_t k = 1; k <= 8; ++k) v.push_back(p + k * (p / 8));
    }
    return v;
  }();
  return t;
}

size_t model_class(size_t n) {
  const auto& t = model_classes();
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] >= n) return i;
  }
  return t.size();
}

void check_tables_once() {
  static bool done = false;
  if (done) return;
  done = true;
  const auto& t = model_classes();
  if (t.size() != tmalloc::kSmallClassCount || t.size() != TM_SMALL_CLASS_COUNT) {
    tm_fuzz::unit_fail(kTarget, "documented table has %zu classes, size_class.h %zu, tinymalloc.h %d", t.size(),
                       tmalloc::kSmallClassCount, TM_SMALL_CLASS_COUNT);
  }
  for (size_t i = 0; i < t.size(); ++i) {
    if (tmalloc::class_size(i) != t[i]) {
      tm_fuzz::unit_fail(kTarget, "class_size(%zu) = %zu, documented %zu", i, tmalloc::class_size(i), t[i]);
    }
    if (tmalloc::blocks_per_run(i) != tmalloc::kRunSize / t[i]) {
      tm_fuzz::unit_fail(kTarget, "blocks_per_run(%zu) = %u, expected %zu", i, tmalloc::blocks_per_run(i),
                         tmalloc::kRunSize / t[i]);
    }
  }
  if (tm_small_max() != tmalloc::kSmallMax || tm_small_max() != 8192) {
    tm_fuzz::unit_fail(kTarget, "tm_small_max() = %zu, expected 8192", tm_small_max());
  }
  if (tm_medium_max() != tmalloc::kMediumMax || tm_medium_max() != 512 * 1024) {
    tm_fuzz::unit_fail(kTarget, "tm_medium_max() = %zu, expected 524288", tm_medium_max());
  }
}

void check_size(size_t n, uint16_t b) {
  const size_t want = n <= tmalloc::kSmallMax ? model_class(n) : tmalloc::kSmallClassCount;
  const size_t pub = tm_size_to_class(n);
  if (pub != want) tm_fuzz::unit_fail(kTarget, "tm_size_to_class(%zu) = %zu, model says %zu", n, pub, want);
  // Class index from b, possibly out of range.
  const size_t idx = b % 64u;
  const size_t pub_size = tm_size_class_size(idx);
  const size_t want_size = idx < tmalloc::kSmallClassCount ? model_classes()[idx] : 0;
  if (pub_size != want_size) {
    tm_fuzz::unit_fail(kTarget, "tm_size_class_size(%zu) = %zu, model says %zu", idx, pub_size, want_size);
  }
  if (tm_size_class_size(SIZE_MAX - b) != 0) {
    tm_fuzz::unit_fail(kTarget, "tm_size_class_size(%zu) is not 0 for a bad index", SIZE_MAX - b);
  }
  if (n > tmalloc::kSmallMax) return;

  const size_t c = tmalloc::size_to_class(n);
  if (c != want) tm_fuzz::unit_fail(kTarget, "tmalloc::size_to_class(%zu) = %zu, model says %zu", n, c, want);
  const size_t cs = tmalloc::class_size(c);
  // Waste bound from the header comment.
  if (n > tmalloc::kSmallLinearMax) {
    if ((cs - n) * 9 >= cs) tm_fuzz::unit_fail(kTarget, "waste for %zu in class %zu (%zu B) is >= 1/9", n, c, cs);
  } else if (n > 0 && cs - n >= 16) {
    tm_fuzz::unit_fail(kTarget, "waste for %zu in class %zu (%zu B) is >= 16 B", n, c, cs);
  }
  // The divider's quotient and exactness for offsets inside a run (free's block-start
  // check): a random one and the block boundaries around block k.
  const uint64_t divider = tmalloc::class_divider(c);
  const uint32_t per_run = tmalloc::blocks_per_run(c);
  const uint64_t k = per_run ? b % per_run : 0;
  const uint64_t offs[4] = {b % tmalloc::kRunSize, k * cs, k * cs + cs - 1, (k + 1) * cs};
  for (uint64_t off : offs) {
    if (off >= tmalloc::kRunSize) continue;
    const tmalloc::RunDivision division = tmalloc::divide_run_offset(off, divider);
    if (division.index != off / cs || division.exact != (off % cs == 0)) {
      tm_fuzz::unit_fail(kTarget,
                         "class_divider(%zu): offset %llu gives index %zu (%s), but %llu / %zu = %llu rem %llu", c,
                         (unsigned long long)off, division.index, division.exact ? "exact" : "inexact",
                         (unsigned long long)off, cs, (unsigned long long)(off / cs), (unsigned long long)(off % cs));
    }
  }
  // End to end: the block of tm_malloc(n) is counted in class c and fits in it.
  tm_stats_t before, after;
  tm_stats(&before);
  void* p = tm_malloc(n);
  if (p == nullptr) tm_fuzz::unit_fail(kTarget, "tm_malloc(%zu) returned NULL", n);
  tm_stats(&after);
  const size_t u = tm_usable_size(p);
  const long delta = static_cast<long>(after.class_live_blocks[c] - before.class_live_blocks[c]);
  tm_free(p);
  if (delta != 1) {
    tm_fuzz::unit_fail(kTarget, "tm_malloc(%zu) changed class_live_blocks[%zu] by %ld, expected +1", n, c, delta);
  }
  if (u < n || u > cs) {
    tm_fuzz::unit_fail(kTarget, "tm_usable_size(tm_malloc(%zu)) = %zu, expected %zu..%zu (class %zu)", n, u, n, cs, c);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check_tables_once();
  tm_fuzz::unit_trace().clear();
  for (size_t pos = 0; pos < size; pos += 5) {
    uint8_t r[5] = {};
    memcpy(r, data + pos, size - pos < 5 ? size - pos : 5);
    const uint16_t a = static_cast<uint16_t>(r[1] | r[2] << 8);
    const uint16_t b = static_cast<uint16_t>(r[3] | r[4] << 8);
    size_t n;
    switch (r[0] % 4) {
      case 0:
        n = a % 8193u;
        break;
      case 1:
        n = a;
        break;
      case 2:
        n = static_cast<size_t>(a) << (b % 64u);
        break;
      default: {
        const size_t cs = tmalloc::class_size(a % tmalloc::kSmallClassCount);
        const int d = static_cast<int8_t>(b & 0xFF);
        n = d < 0 && static_cast<size_t>(-d) > cs ? 0 : cs + d;
        break;
      }
    }
    tm_fuzz::trace("#%zu size %zu (mode %u, a %u, b %u)", pos / 5, n, r[0] % 4u, a, b);
    check_size(n, b);
  }
  tm_fuzz::unit_done(kTarget);
  return 0;
}
