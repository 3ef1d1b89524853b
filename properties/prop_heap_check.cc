// The heap checks catch a corrupted structure in any heap state (what the harness relies on:
// its fuzzers and models call tm_check_heap and tm_check_heap_around after the ops of a
// program, and a check that misses a corruption hides the allocator bug that made it).
//
//   A random history (prop_history.h: blocks of every tier, some freed) is built around one
//   target block, then one structure of the target is corrupted the way an allocator bug or a
//   stray write would: a bit or the free count of its small run, the run's class, list flag or
//   place in the segment's free-run bits, its segment's magic, its recorded slack, its class's
//   handed-out and run counters, its arena's segment counters; the link or key of a cached
//   small or medium block; a medium block's size, prev_size or slack, a free medium block's
//   index links, its segment's magic, end sentinel or a stray block-start bit; a large block's
//   header fields or list link; in debug mode a canary of a live block or the fill of a
//   quarantined one. Then tm_check_heap_report must return the corruption's code with an
//   address where the corruption lies, and tm_check_heap_around(target) the same where its
//   scope covers the structure (the header of tinymalloc.h says what it covers: a medium
//   block's cached state, debug canaries and the class and arena counters are left to the
//   full check). Neither may crash on the corrupted heap. Once the bytes are put back, both
//   checks pass again: nothing was changed by checking. In a forked child (the corrupted heap
//   is thrown away with it).
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_heap_check
//   TM_PROP_NO_FORK=1 runs the case in the test process (a debugger sees the check itself).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <ostream>
#include <string>
#include <vector>

#include "config.h"
#include "free_block.h"
#include "large.h"
#include "medium.h"
#include "medium_block.h"
#include "medium_cache.h"
#include "prop_history.h"
#include "prop_isolate.h"
#include "small.h"
#include "small_arena.h"
#include "stats.h"
#include "tinymalloc.h"

namespace {

using tmprop::HistoryBlock;

enum class Corruption {
  kRunBitmapBit,         // the target's bit set in its run's bitmap (free count unchanged)
  kRunFreeCount,         // the run's free count one higher
  kRunPartialFlag,       // the run's "on its class's partial list" flag flipped
  kRunBlockSize,         // the run's block size 16 bytes larger than its class's
  kRunHint,              // the run's search hint past every word, though it has free blocks
  kRunListLink,          // the run's next link on its class's partial list aimed at itself
  kRunUnassigned,        // the run's bit set in its segment's free-run bitmap
  kSmallSegmentMagic,    // a bit of the segment header's magic flipped
  kSmallSlack,           // the target's recorded slack larger than its block
  kCachedSmallLink,      // a cached small block's encoded link: bit 3 flipped
  kCachedSmallKey,       // a cached small block's free-block key cleared
  kMediumSize,           // a live medium block's size 16 bytes larger
  kMediumPrevSize,       // a live medium block's prev_size 16 bytes larger
  kMediumSlack,          // a live medium block's slack larger than its usable size
  kMediumStartBit,       // a live medium block's bit in its segment's block-start bitmap cleared
  kMediumFreeFlag,       // a live medium block's free flag set (its payload holds user data, not links)
  kFreeMediumLink,       // a free medium block's prev or next index link aimed at itself or at no block
  kCachedMediumLink,     // a medium-cached block's encoded link: bit 3 flipped
  kCachedMediumKey,      // a medium-cached block's free-block key cleared
  kLargeRequested,       // a large block header's requested bytes beyond its usable size
  kLargeMagic,           // a bit of a large block header's magic flipped
  kLargeLink,            // a large block header's prev or next link aimed at itself or at no header
  kDebugOverflow,        // debug mode: the first byte past a live block's requested size
  kDebugUnderflow,       // debug mode: the byte before a live block
  kDebugFreedWrite,      // debug mode: a byte of a quarantined (freed) block
  kMediumSegmentMagic,   // a bit of the live medium block's segment header magic flipped
  kMediumSentinel,       // the prev_size of the medium segment's end sentinel 16 bytes larger
  kMediumStrayStartBit,  // a block-start bit set inside a live medium block's payload
  kClassHandedOut,       // the handed-out counter of the small target's class one higher
  kClassRunCount,        // the run counter of the small target's class one higher
  kSmallSegmentCount,    // the segment counter of the small target's arena one higher
  kEmptySegmentCount,    // the empty-segment counter of the small target's arena one higher
};

// The target block a corruption needs.
enum class Target {
  kSmallLive,
  kSmallCached,
  kMediumLive,
  kMediumFree,
  kMediumCached,
  kLargeLive,
  kDebugLive,
  kDebugFreed
};

// A set of tm_check codes (bit c: code c).
constexpr uint32_t code(int c) { return 1u << c; }
constexpr uint32_t kNoScopedCode = 0;  // tm_check_heap_around's scope does not cover the structure

struct CorruptionInfo {
  Corruption corruption;
  const char* name;
  Target target;
  uint32_t full_codes;    // what tm_check_heap_report may return
  uint32_t scoped_codes;  // what tm_check_heap_around(target) may return, or kNoScopedCode
};
constexpr CorruptionInfo kCorruptions[] = {
    {Corruption::kRunBitmapBit, "run bitmap bit", Target::kSmallLive, code(TM_CHECK_RUN_BITMAP),
     code(TM_CHECK_RUN_BITMAP)},
    {Corruption::kRunFreeCount, "run free count", Target::kSmallLive, code(TM_CHECK_RUN_BITMAP),
     code(TM_CHECK_RUN_BITMAP)},
    {Corruption::kRunPartialFlag, "run partial-list flag", Target::kSmallLive, code(TM_CHECK_RUN_LIST),
     code(TM_CHECK_RUN_LIST)},
    {Corruption::kRunBlockSize, "run block size", Target::kSmallLive, code(TM_CHECK_RUN_BITMAP),
     code(TM_CHECK_RUN_BITMAP)},
    {Corruption::kRunHint, "run search hint", Target::kSmallLive, code(TM_CHECK_RUN_BITMAP), code(TM_CHECK_RUN_BITMAP)},
    {Corruption::kRunListLink, "run partial-list link", Target::kSmallLive, code(TM_CHECK_RUN_LIST),
     code(TM_CHECK_RUN_LIST)},
    {Corruption::kRunUnassigned, "run marked free in its segment", Target::kSmallLive, code(TM_CHECK_RUN_LIST),
     code(TM_CHECK_RUN_LIST)},
    {Corruption::kSmallSegmentMagic, "small segment magic", Target::kSmallLive, code(TM_CHECK_SEGMENT),
     code(TM_CHECK_SEGMENT)},
    {Corruption::kSmallSlack, "small block slack", Target::kSmallLive, code(TM_CHECK_RUN_BITMAP),
     code(TM_CHECK_RUN_BITMAP)},
    {Corruption::kCachedSmallLink, "cached small block link", Target::kSmallCached, code(TM_CHECK_FREE_LINKS),
     code(TM_CHECK_FREE_LINKS)},
    {Corruption::kCachedSmallKey, "cached small block key", Target::kSmallCached, code(TM_CHECK_FREE_LINKS),
     code(TM_CHECK_FREE_LINKS)},
    {Corruption::kMediumSize, "medium block size", Target::kMediumLive, code(TM_CHECK_BOUNDARY_TAG),
     code(TM_CHECK_BOUNDARY_TAG)},
    {Corruption::kMediumPrevSize, "medium block prev_size", Target::kMediumLive, code(TM_CHECK_BOUNDARY_TAG),
     code(TM_CHECK_BOUNDARY_TAG)},
    {Corruption::kMediumSlack, "medium block slack", Target::kMediumLive, code(TM_CHECK_BOUNDARY_TAG),
     code(TM_CHECK_BOUNDARY_TAG)},
    {Corruption::kMediumStartBit, "medium block-start bit", Target::kMediumLive, code(TM_CHECK_BOUNDARY_TAG),
     code(TM_CHECK_BOUNDARY_TAG)},
    // Next to a free block, the block reads as a missed coalesce first.
    {Corruption::kMediumFreeFlag, "medium block free flag", Target::kMediumLive,
     code(TM_CHECK_FIT_INDEX) | code(TM_CHECK_UNCOALESCED), code(TM_CHECK_FIT_INDEX) | code(TM_CHECK_UNCOALESCED)},
    {Corruption::kFreeMediumLink, "free medium block index link", Target::kMediumFree, code(TM_CHECK_FIT_INDEX),
     code(TM_CHECK_FIT_INDEX)},
    {Corruption::kCachedMediumLink, "medium-cached block link", Target::kMediumCached, code(TM_CHECK_FREE_LINKS),
     kNoScopedCode},
    {Corruption::kCachedMediumKey, "medium-cached block key", Target::kMediumCached, code(TM_CHECK_FREE_LINKS),
     kNoScopedCode},
    {Corruption::kLargeRequested, "large header requested bytes", Target::kLargeLive, code(TM_CHECK_LARGE),
     code(TM_CHECK_LARGE)},
    {Corruption::kLargeMagic, "large header magic", Target::kLargeLive, code(TM_CHECK_LARGE), code(TM_CHECK_SEGMENT)},
    {Corruption::kLargeLink, "large block list link", Target::kLargeLive, code(TM_CHECK_LARGE), code(TM_CHECK_LARGE)},
    {Corruption::kDebugOverflow, "debug block overflow", Target::kDebugLive, code(TM_CHECK_DEBUG_BLOCK), kNoScopedCode},
    {Corruption::kDebugUnderflow, "debug block underflow", Target::kDebugLive, code(TM_CHECK_DEBUG_BLOCK),
     kNoScopedCode},
    {Corruption::kDebugFreedWrite, "write into a quarantined block", Target::kDebugFreed, code(TM_CHECK_DEBUG_BLOCK),
     kNoScopedCode},
    {Corruption::kMediumSegmentMagic, "medium segment magic", Target::kMediumLive, code(TM_CHECK_SEGMENT),
     code(TM_CHECK_SEGMENT)},
    // The scoped check reads the sentinel only when the target is the segment's last block.
    {Corruption::kMediumSentinel, "medium segment end sentinel", Target::kMediumLive, code(TM_CHECK_BOUNDARY_TAG),
     kNoScopedCode},
    {Corruption::kMediumStrayStartBit, "stray medium block-start bit", Target::kMediumLive, code(TM_CHECK_BOUNDARY_TAG),
     kNoScopedCode},
    // The scoped check sees a class counter only when it is below what the target's run holds.
    {Corruption::kClassHandedOut, "class handed-out counter", Target::kSmallLive, code(TM_CHECK_STATS), kNoScopedCode},
    {Corruption::kClassRunCount, "class run counter", Target::kSmallLive, code(TM_CHECK_STATS), kNoScopedCode},
    {Corruption::kSmallSegmentCount, "arena small segment counter", Target::kSmallLive, code(TM_CHECK_STATS),
     kNoScopedCode},
    {Corruption::kEmptySegmentCount, "arena empty small segment counter", Target::kSmallLive, code(TM_CHECK_STATS),
     kNoScopedCode},
};
constexpr bool table_in_enum_order() {
  for (size_t i = 0; i < std::size(kCorruptions); ++i) {
    if (static_cast<size_t>(kCorruptions[i].corruption) != i) return false;
  }
  return std::size(kCorruptions) == static_cast<size_t>(Corruption::kEmptySegmentCount) + 1;
}
static_assert(table_in_enum_order(), "kCorruptions lists every Corruption in the enum's order");

const CorruptionInfo& info(Corruption c) { return kCorruptions[static_cast<size_t>(c)]; }

std::vector<Corruption> all_corruptions() {
  std::vector<Corruption> out;
  for (const CorruptionInfo& c : kCorruptions) out.push_back(c.corruption);
  return out;
}

struct Case {
  std::vector<HistoryBlock> blocks;  // the history around the target
  std::vector<bool> freed;           // history blocks freed once the target is allocated
  size_t target_after = 0;           // the target is allocated after this many history blocks
  Corruption corruption = Corruption::kRunBitmapBit;
  uint32_t target_size = 0;  // scaled into the target's tier
  uint32_t pick = 0;         // which byte or link, where a corruption has a choice
  bool thread_cache = true;  // (cached targets: always)
  bool medium_cache = true;  // (medium targets: as the target needs)
};

void showValue(const Case& c, std::ostream& os) {
  os << info(c.corruption).name << " of a target allocated after block " << c.target_after << " (size seed "
     << c.target_size << ", pick " << c.pick << ", thread_cache=" << c.thread_cache
     << " medium_cache=" << c.medium_cache << ")\n";
  tmprop::show_history(c.blocks, c.freed, c.blocks.size(), os);
}

rc::Gen<Case> gen_case() {
  return rc::gen::mapcat(tmprop::gen_history(), [](std::vector<HistoryBlock> blocks) {
    const size_t n = blocks.size();
    return rc::gen::build<Case>(
        rc::gen::set(&Case::blocks, rc::gen::just(blocks)),
        rc::gen::set(&Case::freed, rc::gen::container<std::vector<bool>>(n, rc::gen::arbitrary<bool>())),
        rc::gen::set(&Case::target_after, rc::gen::inRange<size_t>(0, n + 1)),
        rc::gen::set(&Case::corruption, rc::gen::elementOf(all_corruptions())),
        rc::gen::set(&Case::target_size, rc::gen::arbitrary<uint32_t>()),
        rc::gen::set(&Case::pick, rc::gen::arbitrary<uint32_t>()),
        rc::gen::set(&Case::thread_cache, rc::gen::arbitrary<bool>()),
        rc::gen::set(&Case::medium_cache, rc::gen::arbitrary<bool>()));
  });
}

// Reads or writes n bytes the way uninstrumented code would: the allocator's metadata and
// freed blocks lie in poisoned memory under ASan, and the point is what the checks notice.
__attribute__((no_sanitize("address"))) void copy_raw(void* to, const void* from, size_t n) {
  auto* out = static_cast<volatile unsigned char*>(to);
  const auto* in = static_cast<const volatile unsigned char*>(from);
  for (size_t i = 0; i < n; ++i) out[i] = in[i];
}

template <typename T>
T peek(const void* at) {
  T value;
  copy_raw(&value, at, sizeof value);
  return value;
}

uintptr_t addr(const void* p) { return reinterpret_cast<uintptr_t>(p); }

// One corruption: the bytes it changed (to put back) and where the report may point.
struct Planted {
  unsigned char* at = nullptr;
  std::vector<unsigned char> saved;
  uintptr_t report_lo = 0;  // the report's address must lie in [report_lo, report_hi]
  uintptr_t report_hi = 0;

  // Overwrites the bytes of *field with value, keeping the old ones.
  template <typename T>
  void overwrite(T* field, T value) {
    at = reinterpret_cast<unsigned char*>(field);
    saved.resize(sizeof(T));
    copy_raw(saved.data(), at, sizeof(T));
    copy_raw(at, &value, sizeof(T));
  }
  void reports_at(const void* p) { report_lo = report_hi = addr(p); }
  void reports_within(uintptr_t lo, uintptr_t hi) {
    report_lo = lo;
    report_hi = hi;
  }
  void undo() const { copy_raw(at, saved.data(), saved.size()); }
};

tmalloc::SmallSegment* small_segment_of(const void* p) {
  return reinterpret_cast<tmalloc::SmallSegment*>(addr(p) & ~(tmalloc::kSegmentSize - 1));
}

tmalloc::MediumSegment* medium_segment_of(const void* p) {
  return reinterpret_cast<tmalloc::MediumSegment*>(addr(p) & ~(tmalloc::kSegmentSize - 1));
}

// Index of the run holding p in its small segment.
size_t run_index_of(const void* p) { return (addr(p) - addr(small_segment_of(p))) >> tmalloc::kRunShift; }

tmalloc::RunDesc* run_of(const void* p) { return &small_segment_of(p)->runs[run_index_of(p)]; }

// Start of the run holding p.
uintptr_t run_base_of(const void* p) { return addr(p) & ~(tmalloc::kRunSize - 1); }

bool bit_set(const tmalloc::RunDesc* run, size_t index) {
  return (peek<uint64_t>(&run->bitmap[index / 64]) >> (index % 64)) & 1u;
}

// The request size of the target, from the case's seed, in the tier its corruption needs.
size_t target_request(Target t, uint32_t seed) {
  auto in = [seed](size_t lo, size_t hi) { return lo + seed % (hi - lo + 1); };
  switch (t) {
    case Target::kSmallLive:
    case Target::kSmallCached:
      return in(1, tmalloc::kSmallMax);
    case Target::kMediumLive:
      return in(tmalloc::kSmallMax + 1, tmalloc::kMediumMax);
    case Target::kMediumFree:
      // Above the medium cache's sizes: a free goes to the best-fit index.
      return in(tmalloc::kMediumCacheMax + 1, tmalloc::kMediumMax);
    case Target::kMediumCached:
      return in(tmalloc::kSmallMax + 1, tmalloc::kMediumCacheMax);
    case Target::kLargeLive:
      return in(tmalloc::kMediumMax + 1, 4 << 20);
    case Target::kDebugLive:
    case Target::kDebugFreed:
      return in(1, tmalloc::kMediumMax + 4096);
  }
  return 1;
}

// Plants the corruption into the target p (requested bytes: n). Returns "" or why the heap
// state has nothing to corrupt (the case is then discarded).
std::string plant(Corruption c, char* p, size_t n, uint32_t pick, Planted* out) {
  using namespace tmalloc;
  switch (c) {
    case Corruption::kRunBitmapBit: {
      RunDesc* run = run_of(p);
      const size_t index = (addr(p) - run_base_of(p)) / run->block_size;
      out->overwrite(&run->bitmap[index / 64], peek<uint64_t>(&run->bitmap[index / 64]) | uint64_t{1} << (index % 64));
      out->reports_at(reinterpret_cast<void*>(run_base_of(p)));
      return "";
    }
    case Corruption::kRunFreeCount: {
      RunDesc* run = run_of(p);
      out->overwrite(&run->free_count, run->free_count + 1);
      out->reports_at(reinterpret_cast<void*>(run_base_of(p)));
      return "";
    }
    case Corruption::kRunPartialFlag: {
      RunDesc* run = run_of(p);
      out->overwrite(&run->on_partial, static_cast<uint8_t>(run->on_partial ^ 1));
      out->reports_at(reinterpret_cast<void*>(run_base_of(p)));
      return "";
    }
    case Corruption::kRunBlockSize: {
      RunDesc* run = run_of(p);
      out->overwrite(&run->block_size, run->block_size + 16);
      out->reports_at(reinterpret_cast<void*>(run_base_of(p)));
      return "";
    }
    case Corruption::kRunHint: {
      RunDesc* run = run_of(p);
      if (run->free_count == 0) return "the target's run is full: no word a hint could skip";
      out->overwrite(&run->hint_word, (run->block_count + 63) / 64);
      out->reports_at(reinterpret_cast<void*>(run_base_of(p)));
      return "";
    }
    case Corruption::kRunListLink: {
      RunDesc* run = run_of(p);
      if (run->on_partial == 0) return "the target's run is full: on no list";
      out->overwrite(&run->next, run);
      out->reports_at(run);
      return "";
    }
    case Corruption::kRunUnassigned: {
      SmallSegment* segment = small_segment_of(p);
      out->overwrite(&segment->free_runs, segment->free_runs | uint64_t{1} << run_index_of(p));
      out->reports_at(reinterpret_cast<void*>(run_base_of(p)));
      return "";
    }
    case Corruption::kSmallSegmentMagic: {
      SmallSegment* segment = small_segment_of(p);
      out->overwrite(&segment->magic, segment->magic ^ (1u << (pick % 32)));
      out->reports_at(segment);
      return "";
    }
    case Corruption::kSmallSlack: {
      if (!small_tracks_requested()) return "slack is not recorded (track_requested=0)";
      RunDesc* run = run_of(p);
      const size_t index = (addr(p) - run_base_of(p)) / run->block_size;
      if (run->block_size <= kByteSlackMaxBlock) {
        out->overwrite(&run->slack.bytes[index], static_cast<uint8_t>(run->block_size + 1));
      } else {
        out->overwrite(&run->slack.halves[index], static_cast<uint16_t>(run->block_size + 1));
      }
      out->reports_at(p);
      return "";
    }
    case Corruption::kCachedSmallLink:
    case Corruption::kCachedMediumLink: {
      auto* words = reinterpret_cast<uintptr_t*>(p);
      out->overwrite(&words[0], peek<uintptr_t>(&words[0]) ^ 8);
      out->reports_at(p);
      return "";
    }
    case Corruption::kCachedSmallKey:
    case Corruption::kCachedMediumKey: {
      auto* words = reinterpret_cast<uintptr_t*>(p);
      out->overwrite(&words[1], uintptr_t{0});
      out->reports_at(p);
      return "";
    }
    case Corruption::kMediumSize: {
      BlockHeader* block = BlockHeader::from_payload(p);
      const uint64_t word = peek<uint64_t>(&block->size_flags);
      const uint64_t size = word & kBlockSizeMask;
      out->overwrite(&block->size_flags, word + 16);
      // The block itself (out of range) or where its successor would now start.
      out->reports_within(addr(block), addr(block) + size + 16);
      return "";
    }
    case Corruption::kMediumPrevSize: {
      BlockHeader* block = BlockHeader::from_payload(p);
      const uint64_t prev_size = peek<uint64_t>(&block->prev_size);
      out->overwrite(&block->prev_size, prev_size + 16);
      // The block, or the predecessor its prev_size now names.
      out->reports_within(addr(block) - prev_size - 16, addr(block));
      return "";
    }
    case Corruption::kMediumSlack: {
      BlockHeader* block = BlockHeader::from_payload(p);
      const uint64_t word = peek<uint64_t>(&block->size_flags);
      const uint64_t size = word & kBlockSizeMask;
      out->overwrite(&block->size_flags, (word & 0xFFFFFFFFu) | (size << 32));  // usable is size - 16
      out->reports_at(block);
      return "";
    }
    case Corruption::kMediumStartBit: {
      auto* segment = medium_segment_of(p);
      const size_t granule = (addr(BlockHeader::from_payload(p)) - addr(segment)) / kBlockHeaderSize;
      uint64_t* word = &segment->start_bits[granule / 64];
      out->overwrite(word, peek<uint64_t>(word) & ~(uint64_t{1} << (granule % 64)));
      // The block, or (the scoped check's view) a block before it that does not reach it.
      out->reports_within(addr(segment), addr(p));
      return "";
    }
    case Corruption::kClassHandedOut:
    case Corruption::kClassRunCount: {
      SmallClass& cls = g_arenas[small_segment_of(p)->arena].classes[run_of(p)->class_index];
      size_t* counter = c == Corruption::kClassHandedOut ? &cls.handed_out : &cls.runs;
      out->overwrite(counter, *counter + 1);
      out->reports_at(&cls);
      return "";
    }
    case Corruption::kSmallSegmentCount:
    case Corruption::kEmptySegmentCount: {
      SmallArena& arena = g_arenas[small_segment_of(p)->arena];
      size_t* counter = c == Corruption::kSmallSegmentCount ? &arena.segment_count : &arena.empty_segments;
      out->overwrite(counter, *counter + 1);
      out->reports_at(counter);
      return "";
    }
    case Corruption::kMediumSegmentMagic: {
      auto* segment = medium_segment_of(p);
      out->overwrite(&segment->magic, segment->magic ^ (1u << (pick % 32)));
      out->reports_at(segment);
      return "";
    }
    case Corruption::kMediumSentinel: {
      auto* segment = medium_segment_of(p);
      auto* sentinel = reinterpret_cast<BlockHeader*>(addr(segment) + kMediumSentinel);
      out->overwrite(&sentinel->prev_size, peek<uint64_t>(&sentinel->prev_size) + 16);
      // The sentinel, or the block its prev_size now names.
      out->reports_within(addr(segment), addr(sentinel));
      return "";
    }
    case Corruption::kMediumStrayStartBit: {
      auto* segment = medium_segment_of(p);
      // A granule of the payload past its first 16 bytes: never a block start while the block is live.
      const size_t usable_granules = tm_usable_size(p) / kBlockHeaderSize;
      if (usable_granules < 2) return "the target's payload has no granule past its first";
      const size_t granule = (addr(p) - addr(segment)) / kBlockHeaderSize + 1 + pick % (usable_granules - 1);
      uint64_t* word = &segment->start_bits[granule / 64];
      out->overwrite(word, peek<uint64_t>(word) | uint64_t{1} << (granule % 64));
      // The segment (a count of start bits that do not match), or the block holding the bit.
      out->reports_within(addr(segment), addr(p) + tm_usable_size(p));
      return "";
    }
    case Corruption::kMediumFreeFlag: {
      // User data where a free block keeps its index links: any value, a pointer-like one too.
      auto* words = reinterpret_cast<uint64_t*>(p);
      words[0] = pick * 0x9E3779B97F4A7C15u;
      words[1] = pick % 3 == 0 ? addr(p) + 4096 : pick * 0xC2B2AE3D27D4EB4Fu;
      BlockHeader* block = BlockHeader::from_payload(p);
      const uint64_t word = peek<uint64_t>(&block->size_flags);
      out->overwrite(&block->size_flags, word | kBlockFree);
      out->reports_within(addr(block) - peek<uint64_t>(&block->prev_size), addr(block) + (word & kBlockSizeMask));
      return "";
    }
    case Corruption::kFreeMediumLink: {
      auto* block = static_cast<FreeBlock*>(BlockHeader::from_payload(p));
      if ((peek<uint64_t>(&block->size_flags) & kBlockFree) == 0)
        return "the freed target merged into the free block before it";
      // Aimed at the block itself, at its own payload (no block start), or at memory nobody mapped.
      auto* inside = reinterpret_cast<FreeBlock*>(p + 64);
      auto* unmapped = reinterpret_cast<FreeBlock*>(uintptr_t{pick % 1024 + 1} << 12);
      FreeBlock* const aims[] = {block, inside, unmapped};
      FreeBlock* aim = aims[pick / 2 % 3];
      if (pick % 2 == 0) {
        out->overwrite(&block->prev_free, aim);
      } else {
        out->overwrite(&block->next_free, aim);
      }
      out->reports_at(block);
      return "";
    }
    case Corruption::kLargeRequested: {
      auto* header = reinterpret_cast<LargeHeader*>(p - kLargeHeaderSize);
      out->overwrite(&header->requested, header->mapping_size);  // more than the mapping holds
      out->reports_at(header);
      return "";
    }
    case Corruption::kLargeMagic: {
      auto* header = reinterpret_cast<LargeHeader*>(p - kLargeHeaderSize);
      out->overwrite(&header->magic, header->magic ^ (1u << (pick % 32)));
      out->reports_at(header);
      return "";
    }
    case Corruption::kLargeLink: {
      auto* header = reinterpret_cast<LargeHeader*>(p - kLargeHeaderSize);
      // Either link, aimed at the header itself, into the block, or at memory nobody mapped.
      auto* inside = reinterpret_cast<LargeHeader*>(p + 64);
      auto* unmapped = reinterpret_cast<LargeHeader*>(uintptr_t{pick % 1024 + 1} << 12);
      LargeHeader* const aims[] = {header, inside, unmapped};
      LargeHeader* aim = aims[pick / 2 % 3];
      if (pick % 2 == 0) {
        out->overwrite(&header->prev, aim);
      } else {
        out->overwrite(&header->next, aim);
      }
      out->reports_at(header);
      return "";
    }
    case Corruption::kDebugOverflow:
      out->overwrite(reinterpret_cast<unsigned char*>(p + n),
                     static_cast<unsigned char>(peek<unsigned char>(p + n) ^ 0xFF));
      out->reports_at(p);
      return "";
    case Corruption::kDebugUnderflow:
      out->overwrite(reinterpret_cast<unsigned char*>(p - 1),
                     static_cast<unsigned char>(peek<unsigned char>(p - 1) ^ 0xFF));
      out->reports_at(p);
      return "";
    case Corruption::kDebugFreedWrite: {
      char* byte = p + pick % n;
      out->overwrite(reinterpret_cast<unsigned char*>(byte),
                     static_cast<unsigned char>(peek<unsigned char>(byte) ^ 0xFF));
      out->reports_at(p);
      return "";
    }
  }
  return "unknown corruption";
}

// "code N at 0x... (message)" of a report.
std::string describe(const tm_check_report_t& r) {
  char line[400];
  std::snprintf(line, sizeof line, "code %d at 0x%" PRIxPTR " (%s)", r.code, r.address, r.message);
  return line;
}

// The child: the history and the target, the corruption, the checks. "ok", "skipped: ..." or
// what went wrong.
std::string run_case(const Case& c) {
  const CorruptionInfo& what = info(c.corruption);
  const Target target = what.target;
  const bool debug = target == Target::kDebugLive || target == Target::kDebugFreed;
  const bool cached = target == Target::kSmallCached || target == Target::kMediumCached;
  tm_option_set("thread_cache", cached || c.thread_cache ? 1 : 0);
  tm_option_set("medium_cache", target == Target::kMediumCached || (target != Target::kMediumFree && c.medium_cache));
  if (debug) tm_option_set("debug", 1);
  const size_t n = target_request(target, c.target_size);
  // The history up to the target, the target, the rest of the history; then the frees.
  std::vector<HistoryBlock> before(c.blocks.begin(), c.blocks.begin() + static_cast<long>(c.target_after));
  tmprop::History h;
  if (!h.allocate(before)) return "skipped: allocation failed";
  auto* p = static_cast<char*>(tm_malloc(n));
  if (p == nullptr) return "skipped: allocation failed";
  p[0] = 1;
  tmprop::History after;
  if (!after.allocate(std::vector<HistoryBlock>(c.blocks.begin() + static_cast<long>(c.target_after), c.blocks.end())))
    return "skipped: allocation failed";
  for (size_t i = 0; i < c.blocks.size(); ++i) {
    if (!c.freed[i]) continue;
    if (i < c.target_after) {
      h.release(i);
    } else {
      after.release(i - c.target_after);
    }
  }
  const bool free_target = cached || target == Target::kMediumFree || target == Target::kDebugFreed;
  if (free_target) tm_free(p);  // last: at the head of its cache bin, in the quarantine
  if (cached && !tmalloc::free_block_has_key(p)) return "skipped: the freed target is not cached";
  if (target == Target::kSmallCached) {
    const tmalloc::RunDesc* run = run_of(p);
    if (bit_set(run, (addr(p) - run_base_of(p)) / run->block_size)) return "skipped: the freed target went to its run";
  }
  tm_check_report_t report;
  if (tm_check_heap_report(&report) != TM_CHECK_OK)
    return "the heap was not consistent before the corruption: " + describe(report);

  Planted planted;
  const std::string skipped = plant(c.corruption, p, n, c.pick, &planted);
  if (!skipped.empty()) {
    planted.undo();
    return "skipped: " + skipped;
  }
  std::string failure;
  // "<check>: <report>, expected one of codes {...} at [lo, hi]" unless the report is one of `codes`, where the
  // corruption lies.
  auto expect = [&](const char* check, int got, uint32_t codes) {
    if (((codes >> got) & 1u) != 0 && report.address >= planted.report_lo && report.address <= planted.report_hi)
      return;
    std::string wanted;
    for (int k = 0; k < 32; ++k) {
      if ((codes >> k) & 1u) wanted += (wanted.empty() ? "" : " or ") + std::to_string(k);
    }
    char range[96];
    std::snprintf(range, sizeof range, " at [0x%" PRIxPTR ", 0x%" PRIxPTR "]", planted.report_lo, planted.report_hi);
    failure += std::string(check) + ": " + describe(report) + ", expected code " + wanted + range + "\n";
  };
  expect("tm_check_heap_report", tm_check_heap_report(&report), what.full_codes);
  if (what.scoped_codes != kNoScopedCode)
    expect("tm_check_heap_around(target)", tm_check_heap_around(p, &report), what.scoped_codes);
  planted.undo();
  if (tm_check_heap_report(&report) != TM_CHECK_OK)
    failure += "after the undo, tm_check_heap_report: " + describe(report) + "\n";
  if (tm_check_heap_around(p, &report) != TM_CHECK_OK)
    failure += "after the undo, tm_check_heap_around: " + describe(report) + "\n";
  return failure.empty() ? "ok" : failure;
}

// Every corruption once, on one fixed heap (a block of each tier before the target, one freed):
// whatever a run's seed draws, each kind and each check it trips runs in every run of the suite.
TEST(HeapCheck, EachCorruptionOnAFixedHeapIsReportedWhereItLies) {
  using tmprop::Source;
  const std::vector<HistoryBlock> history = {
      {Source::kMalloc, 48, 4}, {Source::kMalloc, 40000, 4}, {Source::kMalloc, 3 << 20, 4}, {Source::kMalloc, 200, 4}};
  for (const CorruptionInfo& kind : kCorruptions) {
    Case c;
    c.blocks = history;
    c.freed = {false, false, false, true};
    c.target_after = history.size();
    c.corruption = kind.corruption;
    c.target_size = 1000;
    c.pick = 3;
    const tmprop::ChildOutcome o = tmprop::run_in_child([&] { return run_case(c); });
    ASSERT_TRUE(o.returned) << kind.name << ": a heap check did not return (" << o.status << "):\n" << o.stderr_tail;
    EXPECT_EQ(o.result, "ok") << kind.name;
  }
}

RC_GTEST_PROP(HeapCheck, EveryCorruptionInAnyHeapStateIsReportedWhereItLies, ()) {
  const Case c = *gen_case();
  const tmprop::ChildOutcome o = tmprop::run_in_child([&] { return run_case(c); });
  RC_TAG(info(c.corruption).name);
  if (!o.returned) RC_FAIL("a heap check did not return (" + o.status + "):\n" + o.stderr_tail);
  RC_PRE(o.result.rfind("skipped: ", 0) != 0);
  RC_ASSERT(o.result == std::string("ok"));
}

}  // namespace
