// The shadow heap's fill pattern (see pattern.h).
#include "pattern.h"

#include <cstring>

#include "tm_harness.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define TMH_PATTERN_ASAN 1
#endif
#endif
#if !defined(TMH_PATTERN_ASAN) && defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define TMH_PATTERN_ASAN 1
#endif

// The vector loops read and write block memory the harness owns: no ASan check per access
// (each range is checked for poisoning once, see poisoned), and no coverage instrumentation
// (it would only add noise to libFuzzer's feedback). TSan and MSan keep instrumenting them.
#if defined(__clang__)
#define TMH_FAST_LOOP __attribute__((no_sanitize("address", "coverage")))
#define TMH_NO_COVERAGE __attribute__((no_sanitize("coverage")))
#else
#define TMH_FAST_LOOP __attribute__((no_sanitize_address))
#define TMH_NO_COVERAGE
#endif

namespace tmh {

namespace {

inline uint8_t pattern_a(uint32_t seed) { return static_cast<uint8_t>(seed * 31u + 1u); }
inline uint8_t pattern_b(uint32_t seed) { return static_cast<uint8_t>(((seed * 0x9E3779B1u) >> 24) | 1u); }

}  // namespace

TMH_NO_COVERAGE uint8_t pattern_byte(uint32_t seed, uint64_t i) {
  return static_cast<uint8_t>(pattern_a(seed) + 7u * static_cast<unsigned>(i & 255) +
                              pattern_b(seed) * static_cast<unsigned>((i >> 8) & 255));
}

namespace detail {

namespace {

using V16 = uint8_t __attribute__((vector_size(16)));

// Shortest range check() tests for ASan poisoning first (see there).
constexpr uint64_t kPoisonCheckMin = 512;

TMH_FAST_LOOP inline V16 load16(const uint8_t* p) {
  V16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

TMH_FAST_LOOP inline void store16(uint8_t* p, V16 v) { std::memcpy(p, &v, sizeof v); }

// True when any lane of v is non-zero.
TMH_FAST_LOOP inline bool any(V16 v) {
  uint64_t w[2];
  std::memcpy(w, &v, sizeof w);
  return (w[0] | w[1]) != 0;
}

// Whether ASan considers any byte of [p, p + n) unaddressable. Such a range is then filled
// or checked by the instrumented byte loops, so ASan reports the access as it always has
// (tinymalloc poisoned memory it handed out, or the harness overran a block).
bool poisoned(const uint8_t* p, uint64_t n) {
#ifdef TMH_PATTERN_ASAN
  return n != 0 && __asan_region_is_poisoned(const_cast<uint8_t*>(p), n) != nullptr;
#else
  (void)p;
  (void)n;
  return false;
#endif
}

}  // namespace

// 7*k mod 256, the part of chunk 0 every seed shares.
struct Ramp {
  alignas(16) uint8_t bytes[256];
  constexpr Ramp() : bytes() {
    for (unsigned k = 0; k < 256; ++k) bytes[k] = static_cast<uint8_t>(7u * k);
  }
};
constexpr Ramp kRamp;

TMH_FAST_LOOP Pattern::Pattern(bool zero, uint32_t seed) : zero_(zero), seed_(seed), step_(zero ? 0 : pattern_b(seed)) {
  if (zero) {
    std::memset(base_, 0, sizeof base_);
    return;
  }
  const V16 a = (V16){} + pattern_a(seed);
  for (unsigned w = 0; w < 256; w += 16) store16(base_ + w, load16(kRamp.bytes + w) + a);
}

TMH_NO_COVERAGE uint8_t Pattern::at(uint64_t i) const { return zero_ ? 0 : pattern_byte(seed_, i); }

TMH_FAST_LOOP void Pattern::fill(uint8_t* p, uint64_t from, uint64_t to) const {
  // No poisoning check here (it would read the shadow of every page the block spans): a
  // block the allocator left poisoned is reported when it is next checked, by check().
  uint64_t i = from;
  while (i < to) {
    const uint64_t chunk = i >> 8;
    const uint64_t chunk_end = (chunk + 1) << 8;
    const uint8_t add = static_cast<uint8_t>(step_ * static_cast<unsigned>(chunk & 255));
    if ((i & 255) == 0 && chunk_end <= to) {
      const V16 c = (V16){} + add;
      for (unsigned w = 0; w < 256; w += 16) store16(p + i + w, load16(base_ + w) + c);
      i = chunk_end;
      continue;
    }
    // A partial chunk (a range's unaligned ends): 16 bytes at a time where they fit.
    const uint64_t end = chunk_end < to ? chunk_end : to;
    const V16 c = (V16){} + add;
    for (; i + 16 <= end; i += 16) store16(p + i, load16(base_ + (i & 255)) + c);
    for (; i < end; ++i) p[i] = static_cast<uint8_t>(base_[i & 255] + add);
  }
}

TMH_FAST_LOOP uint64_t Pattern::check(const uint8_t* p, uint64_t from, uint64_t to) const {
  // The probes inside a block (shorter than kPoisonCheckMin) are read without the poisoning
  // test, which would read a page of shadow for each; a block's edges, where the allocator's
  // poisoning of slack and headers lies, always get it.
  if (to - from >= kPoisonCheckMin && poisoned(p + from, to - from)) {
    for (uint64_t i = from; i < to; ++i) {
      if (p[i] != at(i)) return i;  // instrumented: ASan reports the first poisoned byte
    }
    return kNotFound;
  }
  uint64_t i = from;
  while (i < to) {
    const uint64_t chunk = i >> 8;
    const uint64_t chunk_end = (chunk + 1) << 8;
    const uint8_t add = static_cast<uint8_t>(step_ * static_cast<unsigned>(chunk & 255));
    if ((i & 255) == 0 && chunk_end <= to) {
      const V16 c = (V16){} + add;
      V16 diff{};
      for (unsigned w = 0; w < 256; w += 16) diff |= load16(p + i + w) ^ (load16(base_ + w) + c);
      if (!any(diff)) {
        i = chunk_end;
        continue;
      }
    }
    // A partial chunk, or a full one that differs: 16 bytes at a time, then the byte that
    // differs.
    const uint64_t end = chunk_end < to ? chunk_end : to;
    const V16 c = (V16){} + add;
    for (; i + 16 <= end; i += 16) {
      if (any(load16(p + i) ^ (load16(base_ + (i & 255)) + c))) break;
    }
    for (; i < end; ++i) {
      if (p[i] != static_cast<uint8_t>(base_[i & 255] + add)) return i;
    }
  }
  return kNotFound;
}

}  // namespace detail

}  // namespace tmh
