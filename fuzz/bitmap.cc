// Fuzz target bitmap: src/bitmap.h (tmalloc::bitmap_*) against std::bitset.
//
// Input: byte 0 picks the bitmap length, words = 1 + byte % 64 (64 .. 4096 bits); then ops
// of 3 bytes {op, lo, hi} with v = lo | hi << 8 (missing bytes read as 0):
//   op % 6 == 0: bitmap_fill(count = v % (bits + 65))   (counts past the end included)
//   op % 6 == 1: bitmap_set(v % bits)
//   op % 6 == 2: bitmap_clear(v % bits)
//   op % 6 == 3: bitmap_test(v % bits)
//   op % 6 == 4: bitmap_find_first(hint = v % (words + 1))
//   op % 6 == 5: bitmap_count()
// After every op the whole bitmap is compared with the model, and guard words on both
// sides must be untouched.
#include <bitset>
#include <cstdint>
#include <cstring>

#include "bitmap.h"
#include "unit_check.h"

namespace {

const char* const kTarget = "bitmap";
constexpr size_t kMaxWords = 64;
constexpr uint64_t kGuard = 0xA5A5A5A5DEADBEEFull;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tm_fuzz::unit_trace().clear();
  const size_t words = 1 + (size > 0 ? data[0] : 0) % kMaxWords;
  const size_t bits = words * 64;
  uint64_t storage[kMaxWords + 2];
  for (auto& w : storage) w = kGuard;
  uint64_t* bm = storage + 1;
  for (size_t w = 0; w < words; ++w) bm[w] = 0;
  storage[words + 1] = kGuard;
  std::bitset<kMaxWords * 64> model;
  tm_fuzz::trace("bitmap of %zu words (%zu bits)", words, bits);

  for (size_t pos = 1, i = 0; pos < size; pos += 3, ++i) {
    uint8_t r[3] = {};
    memcpy(r, data + pos, size - pos < 3 ? size - pos : 3);
    const size_t v = static_cast<size_t>(r[1] | r[2] << 8);
    switch (r[0] % 6) {
      case 0: {
        const size_t count = v % (bits + 65);
        tm_fuzz::trace("#%zu fill(%zu)", i, count);
        tmalloc::bitmap_fill(bm, words, count);
        model.reset();
        for (size_t b = 0; b < count && b < bits; ++b) model.set(b);
        break;
      }
      case 1:
        tm_fuzz::trace("#%zu set(%zu)", i, v % bits);
        tmalloc::bitmap_set(bm, v % bits);
        model.set(v % bits);
        break;
      case 2:
        tm_fuzz::trace("#%zu clear(%zu)", i, v % bits);
        tmalloc::bitmap_clear(bm, v % bits);
        model.reset(v % bits);
        break;
      case 3: {
        const bool got = tmalloc::bitmap_test(bm, v % bits);
        tm_fuzz::trace("#%zu test(%zu) = %d", i, v % bits, got);
        if (got != model.test(v % bits)) {
          tm_fuzz::unit_fail(kTarget, "bitmap_test(%zu) = %d, model %d", v % bits, got, (int)model.test(v % bits));
        }
        break;
      }
      case 4: {
        const size_t hint0 = v % (words + 1);
        size_t hint = hint0;
        const size_t got = tmalloc::bitmap_find_first(bm, words, &hint);
        size_t want = bits;
        for (size_t b = hint0 * 64; b < bits; ++b) {
          if (model.test(b)) {
            want = b;
            break;
          }
        }
        const size_t want_hint = want == bits ? words : want / 64;
        tm_fuzz::trace("#%zu find_first(hint %zu) = %zu, hint -> %zu", i, hint0, got, hint);
        if (got != want || hint != want_hint) {
          tm_fuzz::unit_fail(kTarget, "bitmap_find_first(hint %zu) = %zu with hint %zu; model: %zu with hint %zu",
                             hint0, got, hint, want, want_hint);
        }
        break;
      }
      default: {
        const size_t got = tmalloc::bitmap_count(bm, words);
        tm_fuzz::trace("#%zu count() = %zu", i, got);
        if (got != model.count()) tm_fuzz::unit_fail(kTarget, "bitmap_count = %zu, model %zu", got, model.count());
        break;
      }
    }
    for (size_t b = 0; b < bits; ++b) {
      const bool got = (bm[b / 64] >> (b % 64)) & 1u;
      if (got != model.test(b)) {
        tm_fuzz::unit_fail(kTarget, "after op #%zu bit %zu (word %zu = 0x%016llx) is %d, model %d", i, b, b / 64,
                           (unsigned long long)bm[b / 64], got, (int)model.test(b));
      }
    }
    if (storage[0] != kGuard || storage[words + 1] != kGuard) {
      tm_fuzz::unit_fail(kTarget, "after op #%zu a guard word next to the %zu-word bitmap was written", i, words);
    }
  }
  tm_fuzz::unit_done(kTarget);
  return 0;
}
