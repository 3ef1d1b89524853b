// tm_gen_corpus ROOT [--clean]
// Writes the seed corpora ROOT/corpus/<target>/<sha1 of content> and the dictionaries
// ROOT/fuzz/<target>.dict. Deterministic: re-running produces the same files (existing
// files with the same name are left alone). --clean first removes the files of
// ROOT/corpus/<target>/ (not corpus/regressions/). Run through tools/gen-corpus.
//
// Op-program seeds are built with the harness encoder (harness/FORMAT.md), so they use the
// canonical opcodes and decode identically in every profile (the heap_pools seeds use the
// v2 pool ops: they decode as written in the profiles that read v2; the time seeds of
// gen_corpus_time.cc are v3, which every profile reads); the unit-target seeds
// follow the record formats documented at the top of fuzz/<target>.cc.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "config.h"
#include "corpus_io.h"
#include "gen_corpus_time.h"
#include "size_class.h"
#include "tm_harness.h"

namespace {

using tmh::Op;
using tmh::Program;
using tmh::SizeExpr;
using Bytes = std::vector<uint8_t>;

// ---- Deterministic randomness ------------------------------------------------------------------

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  unsigned below(unsigned n) { return static_cast<unsigned>(next() % n); }
};

Program prog(std::vector<Op> ops, uint8_t flags = 0) {
  Program p;
  p.header = static_cast<uint8_t>(tmh::kFormatVersion << 4 | flags);
  p.ops = std::move(ops);
  return p;
}

// A v2 program (memory-pool ops).
Program prog2(std::vector<Op> ops, uint8_t flags = 0) {
  Program p;
  p.header = static_cast<uint8_t>(tmh::kFormatVersionPools << 4 | flags);
  p.ops = std::move(ops);
  return p;
}

// A random size expression from any category (canonical form).
SizeExpr random_size(Rng& r, int bias) {
  // bias: 0 general, 1 realloc, 2 medium, 3 aligned
  const unsigned c = r.below(16);
  SizeExpr s;
  // (RNG calls are sequenced in locals: argument evaluation order differs between compilers.)
  if (bias == 1 && r.below(2) == 0) {
    const unsigned slot = r.below(64), usable = r.below(2), scale = r.below(8), delta = r.below(32);
    return SizeExpr::relative(slot, usable, scale, delta, true);
  }
  if (bias == 2 && r.below(3) != 0) {
    if (r.below(2)) return SizeExpr::exact(tmalloc::kSmallMax + 1 + r.below(tmalloc::kMediumMax - tmalloc::kSmallMax));
    const unsigned slot = r.below(64), usable = r.below(2), delta = 17 + r.below(8);
    return SizeExpr::relative(slot, usable, 0, delta);
  }
  // Mostly cheap categories (small / medium sizes): seeds stay fast to execute; the
  // dedicated seeds above cover large sizes, thresholds and impossible sizes.
  static const tmh::SizeCat kMix[16] = {
      tmh::SizeCat::kTiny,      tmh::SizeCat::kClass,      tmh::SizeCat::kClass,    tmh::SizeCat::kThreshold,
      tmh::SizeCat::kPow2,      tmh::SizeCat::kLogSmall,   tmh::SizeCat::kLogSmall, tmh::SizeCat::kLogMedium,
      tmh::SizeCat::kLogMedium, tmh::SizeCat::kMedium16,   tmh::SizeCat::kRaw16,    tmh::SizeCat::kRelative,
      tmh::SizeCat::kRelative,  tmh::SizeCat::kSameAsPrev, tmh::SizeCat::kHuge,     tmh::SizeCat::kLogLarge};
  s.cat = kMix[c];
  if (s.cat == tmh::SizeCat::kLogLarge && r.below(4) != 0) s.cat = tmh::SizeCat::kLogSmall;
  s.param = static_cast<uint8_t>(r.below(8));
  for (auto& a : s.args) a = static_cast<uint8_t>(r.next());
  if (s.cat == tmh::SizeCat::kRaw64) return SizeExpr::exact(r.below(1u << 20));  // keep raw64 sane
  if (s.cat == tmh::SizeCat::kHuge && r.below(4) != 0) return SizeExpr::exact(r.below(4096));
  if (s.cat == tmh::SizeCat::kBig && r.below(2) != 0) return SizeExpr::exact(r.below(65536));
  (void)bias;
  return s;
}

Op random_op(Rng& r, int bias) {
  static const uint64_t aligns[] = {1, 2, 8, 16, 32, 64, 128, 256, 4096, 8192, 65536, 1u << 20, 3, 24, 0, 1u << 30};
  const unsigned slot = r.below(bias == 2 ? 16 : 64);
  unsigned k = r.below(16);
  if (bias == 1 && r.below(2)) k = 2;                   // realloc
  if (bias == 2 && r.below(2)) k = r.below(2) ? 0 : 3;  // malloc / free
  if (bias == 3 && r.below(2)) k = r.below(2) ? 4 : 5;  // aligned
  switch (k) {
    case 0:
      return Op::malloc(slot, random_size(r, bias));
    case 1: {
      const auto count = static_cast<uint8_t>(r.below(17));
      return Op::calloc(slot, count, random_size(r, bias));
    }
    case 2:
      return Op::realloc(slot, random_size(r, bias));
    case 3:
      return Op::free(slot);
    case 4: {
      const uint64_t al = aligns[r.below(16)];
      return Op::aligned_alloc(slot, al, random_size(r, bias));
    }
    case 5: {
      const uint64_t al = aligns[r.below(16)];
      return Op::posix_memalign(slot, al, random_size(r, bias));
    }
    case 6:
      return Op::usable_size(slot);
    case 7:
      return Op::check_heap();
    case 8:
      return Op::refill(slot);
    case 9: {
      const unsigned after = r.below(4), span = 1 + r.below(8);
      return Op::oom_window(after, span);
    }
    case 10: {
      const unsigned count = 1 + r.below(16), step = 1 + r.below(4), reverse = r.below(2);
      return Op::free_range(slot, count, step, reverse);
    }
    case 11: {
      const unsigned count = 1 + r.below(8);
      return Op::alloc_range(slot, count, random_size(r, bias));
    }
    case 12:
      return Op::swap(slot, r.below(64));
    case 13:
      return Op::release_cached();
    case 14:
      return Op::touch_usable(slot);
    default:
      return Op::peek(slot, static_cast<uint16_t>(r.next()));
  }
}

// ---- Seeds per target ---------------------------------------------------------------------------

std::vector<Program> heap_ops_seeds() {
  std::vector<Program> v;
  // Every small class boundary (+-1), then free in slot order.
  for (unsigned d : {0u, 1u, 2u}) {
    std::vector<Op> ops;
    for (unsigned c = 0; c < tmalloc::kSmallClassCount; ++c) ops.push_back(Op::malloc(c % 64, SizeExpr::cls(c, d)));
    ops.push_back(Op::check_heap());
    v.push_back(prog(ops));
  }
  // Every threshold +-1, each in a fresh slot.
  for (unsigned d : {0u, 1u, 2u}) {
    std::vector<Op> ops;
    for (unsigned t = 0; t < 32; ++t) ops.push_back(Op::malloc(t, SizeExpr::threshold(t, d)));
    ops.push_back(Op::check_heap());
    for (unsigned t = 0; t < 32; t += 2) ops.push_back(Op::free(t));
    v.push_back(prog(ops, tmh::kFlagFillUsable));
  }
  // Powers of two +-1.
  {
    std::vector<Op> ops;
    for (unsigned k = 0; k < 27; ++k) {
      for (unsigned d = 0; d < 3; ++d) ops.push_back(Op::malloc((k * 3 + d) % 64, SizeExpr::pow2(k, d)));
    }
    v.push_back(prog(ops));
  }
  // Zero sizes and the realloc corner cases.
  v.push_back(prog({Op::malloc(0, SizeExpr::exact(0)), Op::malloc(1, SizeExpr::exact(0)),
                    Op::calloc(2, 0, SizeExpr::exact(7)), Op::calloc(3, 5, SizeExpr::exact(0)),
                    Op::realloc(4, SizeExpr::exact(0)), Op::realloc(0, SizeExpr::exact(0)),
                    Op::realloc(1, SizeExpr::exact(100)), Op::realloc(1, SizeExpr::exact(0)), Op::usable_size(0),
                    Op::usable_size(2), Op::free(9), Op::check_heap()}));
  // Impossible sizes everywhere.
  {
    std::vector<Op> ops;
    ops.push_back(Op::malloc(63, SizeExpr::exact(1000)));
    for (unsigned h = 0; h < 16; ++h) {
      ops.push_back(Op::malloc(h, SizeExpr::huge(h)));
      ops.push_back(Op::realloc(63, SizeExpr::huge(h)));
      ops.push_back(Op::aligned_alloc(h, 64, SizeExpr::huge(h)));
      ops.push_back(Op::posix_memalign(h, 4096, SizeExpr::huge(h)));
    }
    ops.push_back(Op::check_heap());
    v.push_back(prog(ops));
  }
  // calloc: zeroing across tiers and overflowing products.
  {
    std::vector<Op> ops;
    const uint8_t counts[] = {1,         2,        3,        16,        0x40 | 10, 0x40 | 33,
                              0x40 | 63, 0x80 | 0, 0x80 | 1, 0x80 | 15, 0xC0 | 1,  0xC0 | 20};
    unsigned s = 0;
    for (uint8_t c : counts) {
      ops.push_back(Op::calloc(s++ % 64, c, SizeExpr::exact(16)));
      ops.push_back(Op::calloc(s++ % 64, c, SizeExpr::exact(3)));
      ops.push_back(Op::calloc(s++ % 64, c, SizeExpr::exact(8193)));
    }
    ops.push_back(Op::calloc(s++, 4, SizeExpr::exact(200000)));
    ops.push_back(Op::calloc(s++, 1, SizeExpr::exact(3 << 20)));
    ops.push_back(Op::touch_usable(s - 1));
    ops.push_back(Op::realloc(s - 1, SizeExpr::exact(5 << 20)));
    v.push_back(prog(ops));
  }
  // Growing and shrinking one block through every tier.
  {
    const uint64_t sizes[] = {1,      16,      17,       128,    129,    8192, 8193, 100000, 524288,
                              524289, 4 << 20, 70 << 20, 524289, 524288, 8193, 8192, 100,    0};
    std::vector<Op> ops;
    for (uint64_t n : sizes) ops.push_back(Op::realloc(7, SizeExpr::exact(n)));
    v.push_back(prog(ops));
    v.push_back(prog(ops, tmh::kFlagFillUsable | tmh::kFlagParanoid));
  }
  // OOM windows around large and medium allocations.
  for (unsigned after = 0; after < 3; ++after) {
    std::vector<Op> ops;
    ops.push_back(Op::malloc(0, SizeExpr::exact(100)));
    ops.push_back(Op::oom_window(after, 12));
    for (unsigned i = 0; i < 4; ++i) {
      ops.push_back(Op::malloc(1 + i, SizeExpr::exact(uint64_t{600000} << i)));
      ops.push_back(Op::malloc(10 + i, SizeExpr::exact(20000 + 4096 * i)));
      ops.push_back(Op::realloc(0, SizeExpr::exact(uint64_t{700000} << i)));
    }
    ops.push_back(Op::malloc(20, SizeExpr::exact(3000)));
    ops.push_back(Op::alloc_range(30, 8, SizeExpr::exact(5000)));
    ops.push_back(Op::check_heap());
    v.push_back(prog(ops));
  }
  // Every op once with fill-usable and paranoid verification, each end order.
  for (uint8_t order = 0; order < 4; ++order) {
    v.push_back(prog({Op::malloc(0, SizeExpr::exact(100)), Op::calloc(1, 3, SizeExpr::exact(24)),
                      Op::realloc(0, SizeExpr::exact(9000)), Op::aligned_alloc(2, 4096, SizeExpr::exact(100)),
                      Op::posix_memalign(3, 64, SizeExpr::exact(1000)), Op::usable_size(3), Op::check_heap(),
                      Op::refill(1), Op::touch_usable(0), Op::peek(0, 7), Op::swap(0, 1), Op::free(2),
                      Op::release_cached(), Op::alloc_range(10, 12, SizeExpr::exact(20000)),
                      Op::free_range(10, 6, 2, false), Op::malloc(40, SizeExpr::exact(1 << 20))},
                     static_cast<uint8_t>(order << tmh::kFlagEndOrderShift | (order & 1 ? tmh::kFlagParanoid : 0) |
                                          (order & 2 ? tmh::kFlagFillUsable : 0))));
  }
  // Random canonical programs.
  for (unsigned i = 0; i < 24; ++i) {
    Rng r(1000 + i);
    std::vector<Op> ops;
    const unsigned n = 20 + r.below(60);
    for (unsigned k = 0; k < n; ++k) ops.push_back(random_op(r, 0));
    v.push_back(prog(ops, static_cast<uint8_t>(r.below(16))));
  }
  return v;
}

std::vector<Program> realloc_seeds() {
  std::vector<Program> v;
  // In-place growth into a freed neighbour, shrink with and without a split remainder.
  for (unsigned base : {9000u, 20000u, 100000u, 300000u}) {
    v.push_back(prog({Op::alloc_range(0, 4, SizeExpr::exact(base)), Op::free(1),
                      Op::realloc(0, SizeExpr::relative(0, false, 0, 1, true)),   // +1
                      Op::realloc(0, SizeExpr::relative(0, true, 0, 0, true)),    // usable
                      Op::realloc(0, SizeExpr::relative(0, true, 0, 1, true)),    // usable + 1
                      Op::realloc(0, SizeExpr::relative(0, false, 1, 0, true)),   // *2
                      Op::realloc(0, SizeExpr::relative(0, false, 2, 0, true)),   // /2
                      Op::realloc(0, SizeExpr::relative(0, false, 0, 19, true)),  // -256
                      Op::realloc(0, SizeExpr::relative(0, false, 0, 17, true)),  // -255
                      Op::realloc(0, SizeExpr::relative(0, false, 0, 21, true)),  // -257
                      Op::realloc(0, SizeExpr::relative(0, false, 0, 23, true)),  // -272
                      Op::realloc(2, SizeExpr::relative(2, false, 3, 0, true)),   // *3/2
                      Op::check_heap(), Op::free(3), Op::realloc(2, SizeExpr::relative(2, false, 1, 0, true))}));
  }
  // Across tier boundaries in both directions.
  {
    std::vector<Op> ops;
    for (unsigned t = 0; t < 32; ++t) {
      ops.push_back(Op::realloc(t % 8, SizeExpr::threshold(t, 0)));
      ops.push_back(Op::realloc(t % 8, SizeExpr::threshold(t, 1)));
      ops.push_back(Op::realloc(t % 8, SizeExpr::threshold(t, 2)));
    }
    v.push_back(prog(ops));
  }
  // Small-class walk: realloc by +1 / +16 / -16 through the classes.
  {
    std::vector<Op> ops{Op::malloc(0, SizeExpr::exact(1))};
    for (unsigned i = 0; i < 60; ++i) ops.push_back(Op::realloc(0, SizeExpr::relative(0, true, 0, 1, true)));
    for (unsigned i = 0; i < 30; ++i) ops.push_back(Op::realloc(0, SizeExpr::relative(0, false, 6, 0, true)));
    v.push_back(prog(ops, tmh::kFlagFillUsable));
  }
  // Large: mremap-style growth and shrink, failed huge realloc in between.
  v.push_back(prog({Op::malloc(0, SizeExpr::exact(600000)), Op::realloc(0, SizeExpr::exact(3 << 20)),
                    Op::realloc(0, SizeExpr::huge(0)), Op::realloc(0, SizeExpr::exact(9 << 20)),
                    Op::realloc(0, SizeExpr::exact(530000)), Op::realloc(0, SizeExpr::exact(520000)),
                    Op::realloc(0, SizeExpr::exact(8000)), Op::check_heap()}));
  // Realloc of aligned and calloc'd blocks.
  v.push_back(prog({Op::aligned_alloc(0, 65536, SizeExpr::exact(100)), Op::realloc(0, SizeExpr::exact(200000)),
                    Op::calloc(1, 10, SizeExpr::exact(1000)), Op::realloc(1, SizeExpr::exact(5)),
                    Op::realloc(1, SizeExpr::exact(70000))}));
  // OOM during growth.
  v.push_back(prog({Op::malloc(0, SizeExpr::exact(400000)), Op::oom_window(0, 6),
                    Op::realloc(0, SizeExpr::exact(2 << 20)), Op::realloc(0, SizeExpr::exact(500000)),
                    Op::realloc(0, SizeExpr::exact(9000)), Op::realloc(0, SizeExpr::exact(100)), Op::check_heap()}));
  for (unsigned i = 0; i < 16; ++i) {
    Rng r(2000 + i);
    std::vector<Op> ops;
    const unsigned n = 20 + r.below(60);
    for (unsigned k = 0; k < n; ++k) ops.push_back(random_op(r, 1));
    v.push_back(prog(ops, static_cast<uint8_t>(r.below(16))));
  }
  return v;
}

std::vector<Program> split_coalesce_seeds() {
  std::vector<Program> v;
  // Runs of equal medium blocks freed in different orders (merge left, right, both).
  const uint64_t sizes[] = {8193, 9000, 16384, 40000, 100000, 250000, 524288};
  for (uint64_t n : sizes) {
    v.push_back(prog({Op::alloc_range(0, 9, SizeExpr::exact(n)), Op::free(1), Op::free(3), Op::free(2), Op::free(5),
                      Op::free(7), Op::free(6), Op::check_heap(), Op::free(4), Op::check_heap(),
                      Op::alloc_range(20, 4, SizeExpr::exact(n / 3 + 16))}));
    v.push_back(prog({Op::alloc_range(0, 16, SizeExpr::exact(n)), Op::free_range(0, 8, 2, false),
                      Op::free_range(15, 8, 2, true), Op::check_heap()}));
  }
  // Split-threshold reuse: free a block, then take size - 256 +- 1 / -272 out of it.
  for (unsigned d : {17u, 18u, 19u, 20u, 21u, 22u, 23u, 12u, 13u}) {
    v.push_back(prog({Op::alloc_range(0, 3, SizeExpr::exact(30000)), Op::free(1),
                      Op::malloc(1, SizeExpr::relative(1, false, 0, d)), Op::check_heap(), Op::free(0), Op::free(2),
                      Op::malloc(5, SizeExpr::relative(1, true, 0, d)), Op::free(1), Op::check_heap()}));
  }
  // A segment filled to its very end: 8 blocks of 512 KiB leave a 458624-byte remainder at
  // the end of the first segment, which an exact-fit request takes; freeing that last block
  // must not coalesce past the segment's end sentinel.
  for (bool reverse : {false, true}) {
    std::vector<Op> ops = {Op::alloc_range(0, 8, SizeExpr::exact(524288)), Op::malloc(8, SizeExpr::exact(458608)),
                           Op::check_heap()};
    if (reverse) {
      ops.push_back(Op::free_range(8, 9, 1, true));
    } else {
      ops.push_back(Op::free(8));
      ops.push_back(Op::check_heap());
      ops.push_back(Op::free(6));
      ops.push_back(Op::malloc(8, SizeExpr::exact(458608)));
      ops.push_back(Op::free(8));
    }
    ops.push_back(Op::check_heap());
    v.push_back(prog(ops));
  }
  // Exact-multiple medium payloads and a filled segment.
  {
    std::vector<Op> ops;
    for (unsigned i = 0; i < 40; ++i) ops.push_back(Op::malloc(i, SizeExpr::exact(8192 + 16 * (i * 37 % 200))));
    ops.push_back(Op::free_range(0, 40, 3, false));
    ops.push_back(Op::alloc_range(0, 20, SizeExpr::exact(100000)));
    ops.push_back(Op::free_range(19, 20, 1, true));
    v.push_back(prog(ops, tmh::kFlagFillUsable));
  }
  for (unsigned i = 0; i < 16; ++i) {
    Rng r(3000 + i);
    std::vector<Op> ops;
    const unsigned n = 30 + r.below(70);
    for (unsigned k = 0; k < n; ++k) ops.push_back(random_op(r, 2));
    v.push_back(prog(ops, static_cast<uint8_t>(r.below(16))));
  }
  return v;
}

std::vector<Program> aligned_seeds() {
  std::vector<Program> v;
  // Every alignment in the table, with a small, a medium and a large size.
  for (uint64_t n : {uint64_t{0}, uint64_t{1}, uint64_t{100}, uint64_t{8193}, uint64_t{700000}}) {
    std::vector<Op> ops;
    for (unsigned a = 0; a < 64; ++a) {
      const uint64_t al = tmh::align_value(static_cast<uint8_t>(a));
      ops.push_back(Op::aligned_alloc(a, al, SizeExpr::exact(n)));
      ops.push_back(Op::posix_memalign(63 - a, al, SizeExpr::exact(n)));
    }
    ops.push_back(Op::check_heap());
    v.push_back(prog(ops));
  }
  // Large alignments with frees in between (alignment padding reuse).
  v.push_back(
      prog({Op::aligned_alloc(0, 1 << 20, SizeExpr::exact(100)), Op::aligned_alloc(1, 1 << 22, SizeExpr::exact(5000)),
            Op::aligned_alloc(2, uint64_t{1} << 30, SizeExpr::exact(64)), Op::free(1),
            Op::posix_memalign(3, 65536, SizeExpr::exact(70000)), Op::realloc(0, SizeExpr::exact(300000)),
            Op::check_heap(), Op::free(2), Op::aligned_alloc(4, 8192, SizeExpr::exact(8192))}));
  // Sizes that are not multiples of the alignment (accepted, as glibc does).
  {
    std::vector<Op> ops;
    for (unsigned k = 4; k < 20; ++k)
      ops.push_back(Op::aligned_alloc(k, uint64_t{1} << k, SizeExpr::exact((uint64_t{1} << k) + 1)));
    v.push_back(prog(ops));
  }
  for (unsigned i = 0; i < 16; ++i) {
    Rng r(4000 + i);
    std::vector<Op> ops;
    const unsigned n = 20 + r.below(60);
    for (unsigned k = 0; k < n; ++k) ops.push_back(random_op(r, 3));
    v.push_back(prog(ops, static_cast<uint8_t>(r.below(16))));
  }
  return v;
}

// Memory-pool programs (v2): every tier from pools, reset and reuse, destroy and re-create,
// heap_stats, plain free / realloc of pool blocks, the 64-pool limit.
Op random_pool_op(Rng& r) {
  const unsigned pool = r.below(4), slot = r.below(24);
  switch (r.below(20)) {
    case 0:
      return Op::heap_create(pool);
    case 1:
    case 2:
    case 3:
    case 4:
      return Op::heap_malloc(pool, slot, random_size(r, 0));
    case 5: {
      const auto count = static_cast<uint8_t>(r.below(17));
      return Op::heap_calloc(pool, slot, count, random_size(r, 0));
    }
    case 6:
    case 7:
      return Op::heap_realloc(pool, slot, random_size(r, 1));
    case 8:
      return Op::heap_free(pool, slot);
    case 9:
      return Op::heap_reset(pool);
    case 10:
      return Op::heap_destroy(pool);
    case 11:
      return Op::heap_stats(pool);
    case 12: {
      const unsigned count = 1 + r.below(8);
      return Op::heap_alloc_range(pool, slot, count, random_size(r, 0));
    }
    case 13:
      return Op::free(slot);
    case 14:
      return Op::realloc(slot, random_size(r, 1));
    case 15:
      return Op::malloc(slot, random_size(r, 0));
    case 16:
      return Op::swap(slot, r.below(24));
    case 17:
      return Op::check_heap();
    case 18:
      return r.below(8) == 0 ? Op::heap_fill() : Op::heap_unfill();
    default:
      return random_op(r, 0);
  }
}

std::vector<Program> heap_pools_seeds() {
  std::vector<Program> v;
  // Every small class from one pool, stats, reset, the same again (reuse), destroy.
  for (unsigned d : {0u, 1u, 2u}) {
    std::vector<Op> ops{Op::heap_create(0)};
    for (unsigned c = 0; c < tmalloc::kSmallClassCount; ++c) {
      ops.push_back(Op::heap_malloc(0, c % 64, SizeExpr::cls(c, d)));
    }
    ops.push_back(Op::heap_stats(0));
    ops.push_back(Op::check_heap());
    ops.push_back(Op::heap_reset(0));
    ops.push_back(Op::heap_stats(0));
    for (unsigned c = 0; c < tmalloc::kSmallClassCount; c += 3) {
      ops.push_back(Op::heap_malloc(0, c % 64, SizeExpr::cls(c, d)));
    }
    ops.push_back(Op::heap_stats(0));
    ops.push_back(Op::heap_destroy(0));
    v.push_back(prog2(ops));
  }
  // Every threshold +-1 from the four pools, then reset / destroy each.
  for (unsigned d : {0u, 1u, 2u}) {
    std::vector<Op> ops;
    for (unsigned t = 0; t < 32; ++t) ops.push_back(Op::heap_malloc(t % 4, t, SizeExpr::threshold(t, d)));
    ops.push_back(Op::check_heap());
    ops.push_back(Op::heap_reset(0));
    ops.push_back(Op::heap_destroy(1));
    ops.push_back(Op::heap_stats(2));
    for (unsigned t = 0; t < 32; t += 4) ops.push_back(Op::heap_malloc(0, t, SizeExpr::threshold(t + 1, d)));
    ops.push_back(Op::heap_reset(2));
    ops.push_back(Op::check_heap());
    v.push_back(prog2(ops, tmh::kFlagFillUsable));
  }
  // One pool per tier: small, medium, large; reset each and allocate again (reuse of the
  // segments and mappings the reset handed back), destroy, re-create.
  {
    const uint64_t small = 48, medium = 30000, large = 700000;
    std::vector<Op> ops{Op::heap_alloc_range(0, 0, 16, SizeExpr::exact(small)),
                        Op::heap_alloc_range(1, 16, 8, SizeExpr::exact(medium)),
                        Op::heap_alloc_range(2, 24, 4, SizeExpr::exact(large)),
                        Op::malloc(40, SizeExpr::exact(small)),
                        Op::malloc(41, SizeExpr::exact(medium)),
                        Op::malloc(42, SizeExpr::exact(large)),
                        Op::heap_stats(0),
                        Op::heap_stats(1),
                        Op::heap_stats(2),
                        Op::heap_reset(0),
                        Op::heap_reset(1),
                        Op::heap_reset(2),
                        Op::check_heap(),
                        Op::heap_alloc_range(0, 0, 16, SizeExpr::exact(small)),
                        Op::heap_alloc_range(1, 16, 8, SizeExpr::exact(medium)),
                        Op::heap_alloc_range(2, 24, 4, SizeExpr::exact(large)),
                        Op::heap_destroy(0),
                        Op::heap_destroy(1),
                        Op::heap_destroy(2),
                        Op::check_heap(),
                        Op::heap_create(0),
                        Op::heap_alloc_range(0, 0, 8, SizeExpr::exact(medium)),
                        Op::heap_alloc_range(0, 8, 2, SizeExpr::exact(large)),
                        Op::heap_stats(0)};
    v.push_back(prog2(ops));
    v.push_back(prog2(ops, tmh::kFlagParanoid | 2 << tmh::kFlagEndOrderShift));
  }
  // calloc after a reset: recycled pool memory must come back zeroed.
  for (uint64_t n : {uint64_t{64}, uint64_t{5000}, uint64_t{40000}, uint64_t{600000}}) {
    v.push_back(
        prog2({Op::heap_alloc_range(0, 0, 8, SizeExpr::exact(n)), Op::heap_reset(0),
               Op::heap_calloc(0, 0, 1, SizeExpr::exact(n)), Op::heap_calloc(0, 1, 2, SizeExpr::exact(n / 2)),
               Op::heap_calloc(0, 2, 1, SizeExpr::exact(n)), Op::heap_destroy(0),
               Op::heap_alloc_range(1, 0, 8, SizeExpr::exact(n)), Op::heap_destroy(1),
               Op::heap_calloc(2, 0, 1, SizeExpr::exact(n)), Op::calloc(3, 1, SizeExpr::exact(n)), Op::check_heap()}));
  }
  // calloc counts: overflowing products, zero.
  {
    std::vector<Op> ops;
    const uint8_t counts[] = {0, 1, 3, 0x40 | 10, 0x80 | 0, 0x80 | 15, 0xC0 | 1, 0xC0 | 20};
    unsigned s = 0;
    for (uint8_t c : counts) {
      ops.push_back(Op::heap_calloc(s % 4, s, c, SizeExpr::exact(16)));
      ++s;
      ops.push_back(Op::heap_calloc(s % 4, s, c, SizeExpr::exact(8193)));
      ++s;
    }
    ops.push_back(Op::heap_stats(0));
    ops.push_back(Op::heap_stats(1));
    v.push_back(prog2(ops));
  }
  // heap_realloc through every tier and back (the block stays in the pool).
  {
    const uint64_t sizes[] = {1,      16,      17,      128,    129,    8192, 8193, 100000, 524288,
                              524289, 4 << 20, 9 << 20, 524289, 524288, 8193, 8192, 100,    0};
    std::vector<Op> ops{Op::heap_create(1)};
    for (uint64_t n : sizes) {
      ops.push_back(Op::heap_realloc(1, 7, SizeExpr::exact(n)));
      ops.push_back(Op::heap_stats(1));
    }
    v.push_back(prog2(ops));
    v.push_back(prog2(ops, tmh::kFlagFillUsable | tmh::kFlagParanoid));
  }
  // heap_realloc relative to the block's own size (in place grow / shrink within the pool).
  for (uint64_t base : {uint64_t{100}, uint64_t{9000}, uint64_t{100000}, uint64_t{600000}}) {
    v.push_back(
        prog2({Op::heap_alloc_range(0, 0, 4, SizeExpr::exact(base)), Op::heap_free(0, 1),
               Op::heap_realloc(0, 0, SizeExpr::relative(0, false, 0, 1, true)),
               Op::heap_realloc(0, 0, SizeExpr::relative(0, true, 0, 1, true)),
               Op::heap_realloc(0, 0, SizeExpr::relative(0, false, 1, 0, true)),
               Op::heap_realloc(0, 0, SizeExpr::relative(0, false, 2, 0, true)),
               Op::heap_realloc(0, 0, SizeExpr::relative(0, false, 0, 19, true)),
               Op::heap_realloc(0, 2, SizeExpr::relative(2, false, 3, 0, true)), Op::heap_stats(0), Op::check_heap()}));
  }
  // Plain realloc of pool blocks (may move them out of the pool), then reset: the blocks
  // that left must survive it.
  for (uint64_t from : {uint64_t{100}, uint64_t{20000}, uint64_t{700000}}) {
    std::vector<Op> ops{Op::heap_alloc_range(0, 0, 6, SizeExpr::exact(from))};
    const uint64_t to[] = {50, 200, 9000, 300000, 2 << 20, from};
    for (unsigned i = 0; i < 6; ++i) ops.push_back(Op::realloc(i, SizeExpr::exact(to[i])));
    ops.push_back(Op::heap_stats(0));
    ops.push_back(Op::heap_reset(0));
    ops.push_back(Op::check_heap());
    ops.push_back(Op::heap_alloc_range(0, 10, 4, SizeExpr::exact(from)));
    ops.push_back(Op::realloc(10, SizeExpr::exact(0)));
    ops.push_back(Op::realloc(11, SizeExpr::huge(0)));
    ops.push_back(Op::heap_destroy(0));
    v.push_back(prog2(ops));
  }
  // Plain free of pool blocks (tm_free accepts them), heap_free, heap_free(NULL).
  v.push_back(
      prog2({Op::heap_alloc_range(3, 0, 32, SizeExpr::exact(200)),
             Op::heap_alloc_range(3, 32, 8, SizeExpr::exact(12000)), Op::free_range(0, 16, 2, false), Op::heap_stats(3),
             Op::free(33), Op::heap_free(3, 34), Op::heap_free(3, 0), Op::heap_free(3, 1), Op::heap_stats(3),
             Op::malloc(0, SizeExpr::exact(200)), Op::heap_reset(3), Op::check_heap(), Op::free(0)}));
  // Four pools and plain blocks interleaved, destroy one in the middle, re-create it.
  {
    std::vector<Op> ops;
    for (unsigned i = 0; i < 32; ++i) {
      if (i % 5 == 4) {
        ops.push_back(Op::malloc(i, SizeExpr::exact(64 + 37 * i)));
      } else {
        ops.push_back(Op::heap_malloc(i % 4, i, SizeExpr::exact(64 + 37 * i)));
      }
    }
    ops.push_back(Op::heap_destroy(1));
    ops.push_back(Op::check_heap());
    ops.push_back(Op::heap_create(1));
    ops.push_back(Op::heap_alloc_range(1, 40, 8, SizeExpr::exact(3000)));
    ops.push_back(Op::heap_create(2));  // replaces a live pool: destroys it first
    ops.push_back(Op::heap_stats(2));
    ops.push_back(Op::heap_reset(3));
    ops.push_back(Op::heap_stats(0));
    v.push_back(prog2(ops, 1 << tmh::kFlagEndOrderShift));
  }
  // The 64-pool limit: fill it, creations fail (and ops on empty pool slots are skipped),
  // release, create again; the limit again with pools of the model live.
  v.push_back(
      prog2({Op::heap_fill(), Op::heap_create(0), Op::heap_malloc(1, 0, SizeExpr::exact(100)), Op::heap_unfill(),
             Op::heap_create(0), Op::heap_malloc(1, 0, SizeExpr::exact(100)), Op::heap_fill(),
             Op::heap_malloc(1, 1, SizeExpr::exact(5000)), Op::heap_destroy(0), Op::heap_create(2), Op::heap_create(3),
             Op::heap_stats(1), Op::heap_unfill(), Op::heap_create(3), Op::check_heap()}));
  v.push_back(prog2({Op::heap_malloc(0, 0, SizeExpr::exact(100)), Op::heap_malloc(1, 1, SizeExpr::exact(700000)),
                     Op::heap_fill(), Op::heap_reset(1), Op::heap_malloc(1, 2, SizeExpr::exact(20000)),
                     Op::heap_fill()}));  // the extra pools are destroyed at the end
  // Pool blocks under the v1 ops: swap, refill, touch_usable, peek, usable_size.
  v.push_back(prog2({Op::heap_malloc(0, 0, SizeExpr::exact(100)), Op::heap_calloc(1, 1, 3, SizeExpr::exact(24)),
                     Op::malloc(2, SizeExpr::exact(300)), Op::swap(0, 2), Op::usable_size(0), Op::usable_size(2),
                     Op::refill(2), Op::touch_usable(2), Op::peek(2, 7), Op::heap_free(0, 2), Op::heap_reset(1),
                     Op::aligned_alloc(3, 4096, SizeExpr::exact(100)), Op::heap_realloc(1, 3, SizeExpr::exact(10)),
                     Op::heap_realloc(1, 4, SizeExpr::exact(10)), Op::check_heap(), Op::release_cached()},
                    tmh::kFlagFillUsable));
  // OOM windows around pool allocations, resets and destroys.
  for (unsigned after = 0; after < 3; ++after) {
    std::vector<Op> ops{Op::heap_malloc(0, 0, SizeExpr::exact(100)), Op::oom_window(after, 12)};
    for (unsigned i = 0; i < 3; ++i) {
      ops.push_back(Op::heap_malloc(i % 2, 1 + i, SizeExpr::exact(uint64_t{600000} << i)));
      ops.push_back(Op::heap_malloc(1, 10 + i, SizeExpr::exact(20000 + 4096 * i)));
      ops.push_back(Op::heap_realloc(0, 0, SizeExpr::exact(uint64_t{70000} << i)));
    }
    ops.push_back(Op::heap_reset(1));
    ops.push_back(Op::heap_alloc_range(1, 20, 8, SizeExpr::exact(5000)));
    ops.push_back(Op::check_heap());
    v.push_back(prog2(ops));
  }
  // Impossible sizes from a pool: NULL + ENOMEM, the block of a failed heap_realloc intact.
  {
    std::vector<Op> ops{Op::heap_malloc(2, 63, SizeExpr::exact(1000))};
    for (unsigned h = 0; h < 16; h += 3) {
      ops.push_back(Op::heap_malloc(2, h, SizeExpr::huge(h)));
      ops.push_back(Op::heap_realloc(2, 63, SizeExpr::huge(h)));
      ops.push_back(Op::heap_calloc(2, h + 1, 0x80 | 3, SizeExpr::exact(5)));
    }
    ops.push_back(Op::heap_stats(2));
    v.push_back(prog2(ops));
  }
  // A medium segment of a pool filled to its end, reset, filled again.
  v.push_back(
      prog2({Op::heap_alloc_range(0, 0, 8, SizeExpr::exact(524288)), Op::heap_malloc(0, 8, SizeExpr::exact(458608)),
             Op::heap_stats(0), Op::heap_reset(0), Op::heap_alloc_range(0, 0, 8, SizeExpr::exact(524288)),
             Op::heap_free(0, 7), Op::free(6), Op::heap_malloc(0, 8, SizeExpr::exact(458608)), Op::check_heap()}));
  // Every end order with live pools at the end of the input.
  for (uint8_t order = 0; order < 4; ++order) {
    v.push_back(
        prog2({Op::heap_alloc_range(0, 0, 6, SizeExpr::exact(100)), Op::malloc(6, SizeExpr::exact(100)),
               Op::heap_alloc_range(1, 7, 3, SizeExpr::exact(9000)), Op::heap_malloc(2, 10, SizeExpr::exact(600000)),
               Op::realloc(1, SizeExpr::exact(20000)), Op::free(2)},
              static_cast<uint8_t>(order << tmh::kFlagEndOrderShift)));
  }
  // Random pool programs.
  for (unsigned i = 0; i < 16; ++i) {
    Rng r(5000 + i);
    std::vector<Op> ops;
    const unsigned n = 20 + r.below(60);
    for (unsigned k = 0; k < n; ++k) ops.push_back(random_pool_op(r));
    v.push_back(prog2(ops, static_cast<uint8_t>(r.below(16))));
  }
  return v;
}

// ---- Unit-target seeds (formats: top of fuzz/<target>.cc) ---------------------------------------

void put16(Bytes& b, unsigned v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}

std::vector<Bytes> size_class_seeds() {
  std::vector<Bytes> v;
  Bytes all;  // every class boundary -1/0/+1 (mode 3)
  for (unsigned c = 0; c < tmalloc::kSmallClassCount; ++c) {
    for (int d : {-1, 0, 1}) {
      all.push_back(3);
      put16(all, c);
      put16(all, static_cast<uint8_t>(static_cast<int8_t>(d)) | (c * 1021 % 256) << 8);
    }
  }
  v.push_back(all);
  Bytes lin;  // sizes 0..300 and around 8192 (mode 0/1)
  for (unsigned n = 0; n <= 300; n += 3) {
    lin.push_back(0);
    put16(lin, n);
    put16(lin, n * 7);
  }
  for (unsigned n = 8180; n <= 8200; ++n) {
    lin.push_back(1);
    put16(lin, n);
    put16(lin, 65535 - n);
  }
  v.push_back(lin);
  Bytes big;  // huge sizes (mode 2)
  for (unsigned s = 0; s < 64; s += 5) {
    big.push_back(2);
    put16(big, 0xFFFF);
    put16(big, s);
  }
  v.push_back(big);
  return v;
}

std::vector<Bytes> bitmap_seeds() {
  std::vector<Bytes> v;
  for (unsigned words : {0u, 1u, 3u, 63u}) {
    Bytes b{static_cast<uint8_t>(words)};
    const unsigned bits = (words + 1) * 64;
    auto op = [&](unsigned o, unsigned val) {
      b.push_back(static_cast<uint8_t>(o));
      put16(b, val);
    };
    op(0, bits / 2 + 3);
    op(4, 0);
    op(2, 0);
    op(4, 0);
    op(1, bits - 1);
    op(0, 0);
    op(4, words);
    op(1, bits - 1);
    op(4, words);
    op(0, bits + 64);
    op(5, 0);
    op(3, 63);
    op(2, 63);
    op(3, 63);
    op(4, 0);
    v.push_back(b);
  }
  return v;
}

std::vector<Bytes> fit_index_seeds() {
  std::vector<Bytes> v;
  auto rec = [](Bytes& b, unsigned op, unsigned id, unsigned m, unsigned val) {
    b.push_back(static_cast<uint8_t>(op));
    b.push_back(static_cast<uint8_t>(id));
    b.push_back(static_cast<uint8_t>(m));
    put16(b, val);
  };
  {
    Bytes b;  // blocks in many lists, then finds of each
    for (unsigned i = 0; i < 32; ++i) rec(b, 0, i, 1, i * 2039);
    for (unsigned i = 0; i < 32; ++i) rec(b, 2, i, 1, i * 2039 + 7);
    for (unsigned i = 0; i < 16; ++i) rec(b, 3, i, 0, 0);
    v.push_back(b);
  }
  {
    Bytes b;  // many blocks in one list (scan window), boundaries
    for (unsigned i = 0; i < 12; ++i) rec(b, 0, i, 2, 12 | (3 << 8) | (i % 4) << 12);
    for (unsigned i = 0; i < 12; ++i) rec(b, 2, i, 2, 12 | (3 << 8) | (i % 4) << 12);
    for (unsigned i = 0; i < 12; i += 3) rec(b, 1, i, 0, 0);
    for (unsigned i = 0; i < 12; ++i) rec(b, 3, i, static_cast<uint8_t>(-1), 0);
    v.push_back(b);
  }
  {
    Bytes b;  // small lists (< 256 B) and same-list sizes
    for (unsigned i = 0; i < 20; ++i) rec(b, 0, i, 0, i * 3);
    for (unsigned i = 20; i < 40; ++i) rec(b, 0, i, 3, (i - 20) | (i % 8) << 8);
    for (unsigned i = 0; i < 40; ++i) rec(b, 2 + i % 2, i, 3, i | 2 << 8);
    v.push_back(b);
  }
  return v;
}

// ---- Dictionaries --------------------------------------------------------------------------------

std::string dict_escape(const Bytes& b) {
  std::string s;
  char buf[8];
  for (uint8_t c : b) {
    snprintf(buf, sizeof buf, "\\x%02x", c);
    s += buf;
  }
  return s;
}

std::string op_dict(int profile_bias) {
  std::vector<std::pair<std::string, Bytes>> entries;
  auto size_entry = [&](const std::string& name, const SizeExpr& s) {
    Bytes b;
    Op op = Op::malloc(0, s);
    tmh::encode_op(op, b);
    entries.push_back({name, Bytes(b.begin() + 2, b.end())});  // size operand alone
  };
  for (unsigned t = 0; t < 32; ++t) {
    const uint64_t n = tmh::kThresholds[t];
    for (int d : {-1, 0, 1}) {
      const uint64_t v = d < 0 ? (n ? n - 1 : 0) : n + static_cast<uint64_t>(d);
      size_entry("size_" + std::to_string(v), SizeExpr::exact(v));
    }
  }
  for (unsigned h = 0; h < 16; h += 3) size_entry("huge_" + std::to_string(h), SizeExpr::exact(tmh::kHugeSizes[h]));
  for (unsigned d : {17u, 18u, 19u, 20u, 21u, 22u, 23u, 0u, 1u, 5u}) {
    size_entry("rel_own_usable_" + std::to_string(d), SizeExpr::relative(0, true, 0, d, true));
    size_entry("rel_own_size_" + std::to_string(d), SizeExpr::relative(0, false, 0, d, true));
  }
  size_entry("rel_own_x2", SizeExpr::relative(0, false, 1, 0, true));
  size_entry("rel_own_half", SizeExpr::relative(0, false, 2, 0, true));
  // Whole ops.
  auto op_entry = [&](const std::string& name, const Op& op) {
    Bytes b;
    tmh::encode_op(op, b);
    entries.push_back({name, b});
  };
  op_entry("malloc_8193", Op::malloc(1, SizeExpr::exact(8193)));
  op_entry("malloc_512k1", Op::malloc(2, SizeExpr::exact(524289)));
  op_entry("free_range_all", Op::free_range(0, 64, 1, false));
  op_entry("free_range_odd", Op::free_range(1, 32, 2, true));
  op_entry("alloc_range_med", Op::alloc_range(0, 8, SizeExpr::exact(20000)));
  op_entry("oom_now", Op::oom_window(0, 8));
  op_entry("check", Op::check_heap());
  // v3: virtual time across the purge delay (half of it: a sweep; all of it: a purge).
  op_entry("time_500ms", Op::advance_time(11));
  op_entry("time_1000ms", Op::advance_time(16));
  op_entry("time_hour", Op::advance_time(31));
  if (profile_bias == 3) {
    for (unsigned a = 0; a < 64; ++a) {
      const uint64_t al = tmh::align_value(static_cast<uint8_t>(a));
      op_entry("aligned_a" + std::to_string(a), Op::aligned_alloc(a % 64, al, SizeExpr::exact(100)));
    }
  }
  if (profile_bias == 1) {
    op_entry("realloc_usable_plus1", Op::realloc(0, SizeExpr::relative(0, true, 0, 1, true)));
    op_entry("realloc_minus_256", Op::realloc(0, SizeExpr::relative(0, false, 0, 19, true)));
  }
  if (profile_bias == 4) {  // heap_pools: the v2 pool ops (opcodes 16-26)
    for (unsigned pool = 0; pool < tmh::kPoolSlots; ++pool) {
      const std::string p = std::to_string(pool);
      op_entry("heap_create_" + p, Op::heap_create(pool));
      op_entry("heap_reset_" + p, Op::heap_reset(pool));
      op_entry("heap_destroy_" + p, Op::heap_destroy(pool));
      op_entry("heap_stats_" + p, Op::heap_stats(pool));
      op_entry("heap_malloc_" + p, Op::heap_malloc(pool, pool, SizeExpr::exact(100)));
      op_entry("heap_free_" + p, Op::heap_free(pool, pool));
    }
    op_entry("heap_malloc_8193", Op::heap_malloc(0, 1, SizeExpr::exact(8193)));
    op_entry("heap_malloc_512k1", Op::heap_malloc(1, 2, SizeExpr::exact(524289)));
    op_entry("heap_calloc_3x24", Op::heap_calloc(0, 3, 3, SizeExpr::exact(24)));
    op_entry("heap_realloc_x2", Op::heap_realloc(0, 0, SizeExpr::relative(0, false, 1, 0, true)));
    op_entry("heap_realloc_usable_plus1", Op::heap_realloc(0, 0, SizeExpr::relative(0, true, 0, 1, true)));
    op_entry("heap_alloc_range_small", Op::heap_alloc_range(0, 0, 16, SizeExpr::exact(48)));
    op_entry("heap_alloc_range_med", Op::heap_alloc_range(1, 16, 8, SizeExpr::exact(20000)));
    Bytes fill;
    tmh::encode_op(Op::heap_fill(), fill);
    tmh::encode_op(Op::heap_unfill(), fill);
    entries.push_back({"heap_fill_unfill", fill});
    Bytes fill_create;
    tmh::encode_op(Op::heap_fill(), fill_create);
    tmh::encode_op(Op::heap_create(0), fill_create);
    entries.push_back({"heap_fill_create", fill_create});
  }
  std::string out = "# Generated by tools/gen-corpus (tm_gen_corpus); harness/FORMAT.md tokens.\n";
  std::set<Bytes> seen;
  for (auto& [name, b] : entries) {
    if (b.size() < 2 || !seen.insert(b).second) continue;
    out += name + "=\"" + dict_escape(b) + "\"\n";
  }
  return out;
}

std::string unit_dict(const std::string& target) {
  std::string out = "# Generated by tools/gen-corpus (tm_gen_corpus); record tokens of fuzz/" + target + ".cc.\n";
  auto le16 = [](unsigned v) { return Bytes{static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)}; };
  std::set<Bytes> seen;
  auto add = [&](const std::string& name, const Bytes& b) {
    if (seen.insert(b).second) out += name + "=\"" + dict_escape(b) + "\"\n";
  };
  if (target == "size_class") {
    for (unsigned c = 0; c < tmalloc::kSmallClassCount; ++c)
      add("class" + std::to_string(c), le16(static_cast<unsigned>(tmalloc::class_size(c))));
    add("small_max", le16(8192));
    add("small_max1", le16(8193));
  } else if (target == "bitmap") {
    for (unsigned v : {63u, 64u, 65u, 127u, 128u, 4095u, 4096u}) add("v" + std::to_string(v), le16(v));
  } else {
    for (unsigned k = 8; k < 22; ++k) add("pow" + std::to_string(k), le16(k | (15u << 8)));
  }
  return out;
}

// ---- Output ----------------------------------------------------------------------------------------

int write_corpus(const std::string& root, const std::string& target, const std::vector<Bytes>& inputs, bool clean) {
  const std::string dir = root + "/corpus/" + target;
  if (!tmtools::mkdirs(dir)) return -1;
  if (clean) tmtools::clean_dir(dir);
  int n = 0;
  for (const Bytes& b : inputs) {
    const std::string path = dir + "/" + tmtools::sha1_hex(b);
    struct stat st;
    if (stat(path.c_str(), &st) == 0) continue;
    if (!tmtools::write_file(path, std::string(b.begin(), b.end()))) return -1;
    ++n;
  }
  printf("tm_gen_corpus: corpus/%s: %zu seeds (%d new)\n", target.c_str(), inputs.size(), n);
  return n;
}

// Encodes the seeds of an op-program target, with its time seeds (format v3) after them.
std::vector<Bytes> encode_all(const std::vector<Program>& ps, const char* target) {
  std::vector<Bytes> v;
  for (const Program& p : ps) v.push_back(tmh::encode(p));
  for (const Program& p : tmtools::time_seeds(target)) v.push_back(tmh::encode(p));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    fprintf(stderr, "usage: tm_gen_corpus REPO_ROOT [--clean]\n");
    return 2;
  }
  const std::string root = argv[1];
  const bool clean = argc > 2 && strcmp(argv[2], "--clean") == 0;
  struct T {
    const char* name;
    std::vector<Bytes> inputs;
    std::string dict;
  };
  std::vector<T> targets = {
      {"heap_ops", encode_all(heap_ops_seeds(), "heap_ops"), op_dict(0)},
      {"realloc", encode_all(realloc_seeds(), "realloc"), op_dict(1)},
      {"split_coalesce", encode_all(split_coalesce_seeds(), "split_coalesce"), op_dict(2)},
      {"aligned", encode_all(aligned_seeds(), "aligned"), op_dict(3)},
      {"heap_pools", encode_all(heap_pools_seeds(), "heap_pools"), op_dict(4)},
      {"size_class", size_class_seeds(), unit_dict("size_class")},
      {"bitmap", bitmap_seeds(), unit_dict("bitmap")},
      {"fit_index", fit_index_seeds(), unit_dict("fit_index")},
  };
  if (!tmtools::mkdirs(root + "/fuzz")) return 1;
  // Harness self-test input (fuzz.selftest.poke): a peek of a live block, which
  // TM_HARNESS_SELFTEST=poke turns into a corruption the model must report.
  {
    const Program poke = prog({Op::malloc(0, SizeExpr::exact(100)), Op::malloc(1, SizeExpr::exact(20000)),
                               Op::malloc(2, SizeExpr::exact(300)), Op::peek(1, 1234), Op::check_heap()});
    const Bytes b = tmh::encode(poke);
    if (!tmtools::mkdirs(root + "/corpus/selftest") ||
        !tmtools::write_file(root + "/corpus/selftest/poke-heap_ops", std::string(b.begin(), b.end()))) {
      return 1;
    }
  }
  for (const T& t : targets) {
    if (write_corpus(root, t.name, t.inputs, clean) < 0) return 1;
    if (!tmtools::write_file(root + "/fuzz/" + t.name + ".dict", t.dict)) return 1;
  }
  return 0;
}
