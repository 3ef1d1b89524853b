// A random allocation history for the properties that put one event into "any heap state"
// (prop_misuse: one misuse; prop_heap_check: one corrupted structure): blocks of every tier
// from malloc, calloc, aligned_alloc, realloc and a memory pool, allocated in order, some of
// them freed afterwards. Runs in a forked child (prop_isolate.h): nothing is freed at the end.
#pragma once

#include <rapidcheck.h>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <vector>

#include "prop_common.h"
#include "tinymalloc.h"

namespace tmprop {

enum class Source { kMalloc, kCalloc, kAligned, kReallocGrown, kPool };

struct HistoryBlock {
  Source source = Source::kMalloc;
  size_t size = 1;
  unsigned log2_align = 4;  // kAligned
};

// The source's name in a case's description.
inline const char* name_of(Source s) {
  switch (s) {
    case Source::kMalloc:
      return "malloc";
    case Source::kCalloc:
      return "calloc";
    case Source::kAligned:
      return "aligned_alloc";
    case Source::kReallocGrown:
      return "realloc";
    case Source::kPool:
      return "pool";
  }
  return "?";
}

// "  <i>: <source>(<size>[, align <a>])" per block, with " freed" after the ones in `freed`.
inline void show_history(const std::vector<HistoryBlock>& blocks, const std::vector<bool>& freed, size_t skip,
                         std::ostream& os) {
  for (size_t i = 0; i < blocks.size(); ++i) {
    const HistoryBlock& b = blocks[i];
    os << "  " << i << ": " << name_of(b.source) << "(" << b.size;
    if (b.source == Source::kAligned) os << ", align " << (size_t{1} << b.log2_align);
    os << ")" << (i != skip && i < freed.size() && freed[i] ? " freed" : "") << "\n";
  }
}

// A request size in one of the three tiers (small most often).
inline rc::Gen<size_t> tier_size() {
  return rc::gen::weightedOneOf<size_t>({{5, rc::gen::inRange<size_t>(1, 8193)},                     // small
                                         {3, rc::gen::inRange<size_t>(8193, (512 << 10) + 1)},       // medium
                                         {1, rc::gen::inRange<size_t>((512 << 10) + 1, 4 << 20)}});  // large
}

// One block of a history.
inline rc::Gen<HistoryBlock> gen_history_block() {
  return rc::gen::build<HistoryBlock>(
      rc::gen::set(&HistoryBlock::source, rc::gen::element(Source::kMalloc, Source::kCalloc, Source::kAligned,
                                                           Source::kReallocGrown, Source::kPool)),
      rc::gen::set(&HistoryBlock::size, tier_size()),
      rc::gen::set(&HistoryBlock::log2_align, rc::gen::inRange<unsigned>(3, 17)));
}

// A non-empty history of at most `max` blocks.
inline rc::Gen<std::vector<HistoryBlock>> gen_history(int max = 12) {
  return list_of(max, gen_history_block(), /*non_empty=*/true);
}

// The blocks of a history once allocated, and the two pools (blocks of Source::kPool come
// from `pool`; `other_pool` stays empty).
struct History {
  std::vector<HistoryBlock> blocks;
  std::vector<char*> p;
  std::vector<size_t> requested;  // bytes asked for (an aligned request is rounded up to its alignment)
  tm_heap_t* pool = nullptr;
  tm_heap_t* other_pool = nullptr;

  // Allocates every block, in order, and writes its first byte. False when a pool or a block
  // could not be had.
  bool allocate(const std::vector<HistoryBlock>& wanted) {
    blocks = wanted;
    pool = tm_heap_create();
    other_pool = tm_heap_create();
    if (pool == nullptr || other_pool == nullptr) return false;
    p.assign(blocks.size(), nullptr);
    requested.assign(blocks.size(), 0);
    for (size_t i = 0; i < blocks.size(); ++i) {
      const HistoryBlock& b = blocks[i];
      requested[i] = b.size;
      switch (b.source) {
        case Source::kMalloc:
          p[i] = static_cast<char*>(tm_malloc(b.size));
          break;
        case Source::kCalloc:
          p[i] = static_cast<char*>(tm_calloc(1, b.size));
          break;
        case Source::kAligned: {
          const size_t align = size_t{1} << b.log2_align;
          requested[i] = (b.size + align - 1) / align * align;
          p[i] = static_cast<char*>(tm_aligned_alloc(align, requested[i]));
          break;
        }
        case Source::kReallocGrown:
          p[i] = static_cast<char*>(tm_realloc(tm_malloc(b.size / 2 + 1), b.size));
          break;
        case Source::kPool:
          p[i] = static_cast<char*>(tm_heap_malloc(pool, b.size));
          break;
      }
      if (p[i] == nullptr) return false;
      p[i][0] = 1;
    }
    return true;
  }

  // Frees block i the way it was allocated.
  void release(size_t i) const {
    if (blocks[i].source == Source::kPool) {
      tm_heap_free(pool, p[i]);
    } else {
      tm_free(p[i]);
    }
  }
};

}  // namespace tmprop
