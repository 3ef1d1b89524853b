// Per-thread medium-block caches (see medium_cache.h).
#include "medium_cache.h"

#include <errno.h>

#include <cstring>

#include "check.h"
#include "chunk_map.h"
#include "free_block.h"
#include "medium.h"
#include "medium_block.h"
#include "options.h"
#include "plant.h"
#include "sanitizer.h"
#include "thread_cache.h"
#include "tinymalloc.h"

namespace tmalloc {

namespace {

// Segment of a medium block (every medium segment is one segment-aligned mapping).
MediumSegment* medium_segment_of(const void* p) {
  return reinterpret_cast<MediumSegment*>(addr_of(p) & ~(kSegmentSize - 1));
}

// Usable bytes of a cached block (its header is the owner's: no lock needed).
TM_NO_ASAN size_t cached_usable(const void* p) { return BlockHeader::from_payload(p)->size() - kBlockHeaderSize; }

// Takes the first block off `bin` of `cache` and frees it into its arena's index
// (coalescing it).
void release_first(ThreadCache& cache, CacheBin& bin) {
  void* p = bin.head;
  bin.head = free_block_next(p);
  bin.count.store(bin.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  cache.medium_bytes.store(cache.medium_bytes.load(std::memory_order_relaxed) - cached_usable(p),
                           std::memory_order_relaxed);
  free_block_clear_key(p);  // medium_free reports a block that carries the key
  medium_free(medium_segment_of(p), p, "invalid free");
}

// Releases blocks of `bin` until it holds `keep` of them.
void release_down_to(ThreadCache& cache, CacheBin& bin, uint32_t keep) {
  while (bin.head != nullptr && bin.count.load(std::memory_order_relaxed) > keep) release_first(cache, bin);
}

}  // namespace

TM_NO_ASAN void* medium_cached_alloc(size_t requested, bool zero) {
  ThreadCache& cache = t_cache;
  if (TM_UNLIKELY(cache.state == CacheState::kUnset)) cache_ensure_current();
  if (cache.state != CacheState::kActive || option(OptionId::kMediumCache) == 0) {
    return medium_alloc(requested, kBlockHeaderSize, zero);
  }
  const size_t class_index = medium_cache_class(requested);
  CacheBin& bin = cache.medium_bins[class_index];
  if (bin.head == nullptr) {
    return medium_alloc_carved(current_arena(), requested, medium_cache_class_size(class_index), kBlockHeaderSize,
                               zero);
  }
  cache_tick(cache);
  void* p = bin.head;
  bin.head = free_block_next(p);
  bin.count.store(bin.count.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  free_block_clear_key(p);
  BlockHeader* block = BlockHeader::from_payload(p);
  const size_t usable = block->size() - kBlockHeaderSize;
  cache.medium_bytes.store(cache.medium_bytes.load(std::memory_order_relaxed) - usable, std::memory_order_relaxed);
  block->set_slack(usable - requested);
  requested_add(static_cast<int64_t>(requested));
  unpoison(p, requested);  // the rest of the block stays poisoned since its free
  // Cached blocks hold old data: calloc clears what it hands out.
  if (zero && !TM_PLANT_IF(7)) std::memset(p, 0, requested);
  return p;
}

TM_NO_ASAN void medium_cached_free(MediumSegment* segment, void* p, const char* what) {
  ThreadCache& cache = t_cache;
  if (TM_UNLIKELY(cache.state == CacheState::kUnset)) cache_ensure_current();
  BlockHeader* block = nullptr;
  // Pools' blocks die with their pool; a pointer that is not a sound used block, and a
  // block carrying the free key (a double free), go to medium_free, which reports them.
  if (cache.state == CacheState::kActive && segment->arena < kMaxArenas && option(OptionId::kMediumCache) != 0) {
    block = medium_cacheable_block(segment, p);
    if (block != nullptr && free_block_has_key(p)) block = nullptr;
  }
  const size_t usable = block != nullptr ? block->size() - kBlockHeaderSize : 0;
  const size_t bin_index = medium_cache_bin_for_usable(usable);
  if (block == nullptr || bin_index == kMediumCacheClasses) return medium_free(segment, p, what);
  CacheBin& bin = cache.medium_bins[bin_index];
  // A full bin hands half of its blocks back (the latest ones: the list is LIFO); the
  // thread's byte bound empties the bin.
  if (bin.count.load(std::memory_order_relaxed) >= bin.limit) release_down_to(cache, bin, bin.limit / 2);
  if (cache.medium_bytes.load(std::memory_order_relaxed) + usable > kMediumCacheThreadBytes) {
    release_down_to(cache, bin, 0);
    if (cache.medium_bytes.load(std::memory_order_relaxed) + usable > kMediumCacheThreadBytes) {
      return medium_free(segment, p, what);  // the other bins hold the bound
    }
  }
  const size_t requested = usable - block->slack();
  block->set_slack(usable);  // cached: 0 requested bytes
  requested_add(-static_cast<int64_t>(requested));
  poison(p, usable);
  free_block_write(p, bin.head);
  bin.head = p;
  bin.count.store(bin.count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  cache.medium_bytes.store(cache.medium_bytes.load(std::memory_order_relaxed) + usable, std::memory_order_relaxed);
}

void medium_cache_flush(ThreadCache& cache) {
  for (CacheBin& bin : cache.medium_bins) {
    // Bounded by the limit in case a fork child sees a bin its dead thread was changing.
    uint32_t budget = medium_cache_bin_limit(&bin - cache.medium_bins) + 1;
    while (bin.head != nullptr && budget-- != 0) release_first(cache, bin);
    bin.head = nullptr;
    bin.count.store(0, std::memory_order_relaxed);
  }
  cache.medium_bytes.store(0, std::memory_order_relaxed);
}

TM_NO_ASAN TM_NO_COVERAGE int medium_cache_check_current(CheckResult* result) {
  ThreadCache& cache = t_cache;
  size_t bytes = 0;
  for (size_t c = 0; c < kMediumCacheClasses; ++c) {
    const CacheBin& bin = cache.medium_bins[c];
    const uint32_t count = bin.count.load(std::memory_order_relaxed);
    if (count > bin.limit && count > 0)
      return result->fail(TM_CHECK_FREE_LINKS, &bin, "medium cache bin holds more than its limit");
    size_t walked = 0;
    for (void* p = bin.head; p != nullptr; p = free_block_next(p)) {
      if (++walked > count) return result->fail(TM_CHECK_FREE_LINKS, p, "medium cache bin is longer than its count");
      auto* segment = medium_segment_of(p);
      const SegmentBase* owner = chunk_owner(p);
      if (owner != segment || owner->kind != SegmentKind::kMedium || medium_cacheable_block(segment, p) == nullptr)
        return result->fail(TM_CHECK_FREE_LINKS, p, "medium cache holds a pointer that is not a used medium block");
      if (!free_block_has_key(p))
        return result->fail(TM_CHECK_FREE_LINKS, p,
                            "cached medium block lost its free-block key (written after free?)");
      if (!free_link_plausible(free_block_link(p)))
        return result->fail(TM_CHECK_FREE_LINKS, p,
                            "medium cache link does not decode to a block (written after free?)");
      const BlockHeader* block = BlockHeader::from_payload(p);
      const size_t usable = block->size() - kBlockHeaderSize;
      if (block->slack() != usable)
        return result->fail(TM_CHECK_BOUNDARY_TAG, p, "cached medium block still counts requested bytes");
      if (medium_cache_bin_for_usable(usable) != c)
        return result->fail(TM_CHECK_FREE_LINKS, p, "cached medium block is in the bin of another size");
      bytes += usable;
    }
    if (walked != count) return result->fail(TM_CHECK_FREE_LINKS, &bin, "medium cache bin is shorter than its count");
  }
  if (bytes != cache.medium_bytes.load(std::memory_order_relaxed))
    return result->fail(TM_CHECK_STATS, &cache, "medium cache byte count differs from its blocks");
  if (bytes > kMediumCacheThreadBytes)
    return result->fail(TM_CHECK_FREE_LINKS, &cache, "medium cache holds more bytes than its thread bound");
  return 0;
}

TM_NO_ASAN TM_NO_COVERAGE void medium_cache_own_per_arena(size_t* blocks, size_t* bytes) {
  for (const CacheBin& bin : t_cache.medium_bins) {
    size_t walked = 0;
    const size_t count = bin.count.load(std::memory_order_relaxed);
    for (const void* p = bin.head; p != nullptr && walked < count; p = free_block_next(p)) {
      ++walked;
      const unsigned arena = medium_segment_of(p)->arena;
      if (arena >= kMaxArenas) continue;
      ++blocks[arena];
      bytes[arena] += cached_usable(p);
    }
  }
}

}  // namespace tmalloc
