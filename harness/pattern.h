// The shadow heap's fill pattern (harness/FORMAT.md "Checks (shadow heap)"): every block
// holds byte(seed, i) = A + 7*i + B*(i >> 8) (mod 256), A = seed*31 + 1, B odd and mixed
// from the seed, or zeros (calloc). Adjacent bytes always differ (step 7), 256-byte chunks
// differ from each other (B odd), and blocks with different seeds differ almost everywhere.
//
// Filling and checking run at memory speed (16 bytes per vector operation, no table), since
// they touch every byte the harness owns: they are most of the harness's work per op.
// Internal to the harness library.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmh::detail {

inline constexpr uint64_t kNotFound = UINT64_MAX;
// Blocks up to this size (4 pages) are patterned entirely; larger ones in windows
// (for_windows): each window lies on a page of its own. Every page the harness touches is a
// page fault in the fresh memory of a pristine allocator, which makes page faults most of an
// input's cost. Filling every byte of medium blocks up to 512 KiB made the shipped corpora
// replay 1.2-1.9 times slower (ASan build); patterning blocks up to 64 KiB entirely, with
// 4 KiB edges and 15 interior windows above, still took the heap_ops corpus replay 2.6 s
// against 1.9 s with these values, for little more detection (a block lying over another, a
// header or link written into it, a purge of its pages show in the edges, the windows or the
// allocator's own checks; ci/plant-check catches every planted bug as fast with either).
inline constexpr uint64_t kFullPatternMax = uint64_t{16} << 10;
inline constexpr uint64_t kEdge = 1024;             // head and tail windows of larger blocks ...
inline constexpr uint64_t kInteriorWindows = 4;     // ... plus 3 interior 256-byte windows
inline constexpr uint64_t kPeekWindow = 64 * 1024;  // peek reads offset % min(length, this)
inline constexpr uint64_t kNeighbourEdge = 4096;    // bytes of a neighbour checked after alloc/free

// The pattern of one block: zero-filled, or seeded.
class Pattern {
 public:
  Pattern(bool zero, uint32_t seed);

  bool zero() const { return zero_; }
  uint32_t seed() const { return seed_; }
  // Byte i of the pattern.
  uint8_t at(uint64_t i) const;
  // Writes bytes [from, to) of the pattern to p + from.
  void fill(uint8_t* p, uint64_t from, uint64_t to) const;
  // Offset of the first byte in p[from, to) that differs from the pattern, or kNotFound.
  uint64_t check(const uint8_t* p, uint64_t from, uint64_t to) const;

 private:
  bool zero_;
  uint32_t seed_;
  uint8_t step_;                   // B: added to every byte from one 256-byte chunk to the next
  alignas(16) uint8_t base_[256];  // chunk 0
};

// How much of a block's pattern a check covers.
enum class Coverage {
  kEvery,    // every patterned byte
  kSampled,  // blocks up to 2 * kSampledEdge: every byte; larger ones that are patterned
             // entirely: their first and last kSampledEdge bytes and a kProbe-byte probe on
             // every page in between (a purged or overwritten page, a header or free-list link
             // written near either end, a block of another owner lying over it all show);
             // windowed blocks: their windows
  kEdges,    // the first and last kEdgeProbe bytes of a block (where a neighbour's overrun, a
             // header or a free-list link would land): the input's paranoid flag, after every op
};
inline constexpr uint64_t kEdgeProbe = 64;
inline constexpr uint64_t kSampledEdge = 512;
inline constexpr uint64_t kProbe = 64;

// Calls f(from, to) for each patterned window of a block of len bytes, clipped to [lo, hi).
// Blocks up to kFullPatternMax: every byte (or, with Coverage::kSampled, the sample above).
// Larger: kEdge head and tail plus 256 bytes at kInteriorWindows - 1 evenly spaced interior
// points (bounded work, page faults and RSS for any size).
template <typename F>
void for_windows(uint64_t len, uint64_t lo, uint64_t hi, F&& f, Coverage coverage = Coverage::kEvery) {
  auto clip = [&](uint64_t a, uint64_t b) {
    if (a < lo) a = lo;
    if (b > hi) b = hi;
    if (a < b) f(a, b);
  };
  if (coverage == Coverage::kEdges) {
    if (len <= 2 * kEdgeProbe) {
      clip(0, len);
    } else {
      clip(0, kEdgeProbe);
      clip(len - kEdgeProbe, len);
    }
    return;
  }
  if (len <= kFullPatternMax && (coverage == Coverage::kEvery || len <= 2 * kSampledEdge)) {
    clip(0, len);
    return;
  }
  if (len <= kFullPatternMax) {
    clip(0, kSampledEdge);
    // A probe per page, at an offset that moves from page to page (multiples of kProbe).
    for (uint64_t page = 0; page * 4096 < len; ++page) {
      const uint64_t a = page * 4096 + ((page * 37 + 11) % (4096 / kProbe)) * kProbe;
      if (a >= kSampledEdge && a + kProbe <= len - kSampledEdge) clip(a, a + kProbe);
    }
    clip(len - kSampledEdge, len);
    return;
  }
  clip(0, kEdge);
  const uint64_t step = (len / kInteriorWindows) & ~uint64_t{255};
  for (uint64_t k = 1; k < kInteriorWindows; ++k) {
    const uint64_t a = k * step;
    if (a >= kEdge && a + 256 <= len - kEdge) clip(a, a + 256);
  }
  clip(len - kEdge, len);
}

}  // namespace tmh::detail
