// Medium tier: best-fit with splitting and immediate coalescing (see medium.h).
#include "medium.h"

#include <errno.h>

#include <cstring>

#include "arena.h"
#include "check.h"
#include "chunk_map.h"
#include "error.h"
#include "fit_index.h"
#include "free_block.h"
#include "heap_map.h"
#include "linked_list.h"
#include "options.h"
#include "os.h"
#include "plant.h"
#include "platform.h"
#include "sanitizer.h"
#include "segment_pool.h"
#include "spinlock.h"
#include "stats.h"
#include "thread_cache.h"
#include "tinymalloc.h"

namespace tmalloc {

namespace {

// On separate cache lines: one arena's counters next to the next arena's lock made every
// medium operation in one arena a cache miss for the threads of the other (measured:
// realloc_build with 2 threads ran 30% slower than two single-thread processes).
struct alignas(kCacheLineSize) MediumHeap {
  SpinLock lock;
  FitIndex index;
  MediumSegment* segments;
  size_t segment_count;
  size_t empty_segments;
  size_t live_blocks;
  size_t usable_bytes;
};

// One per arena. Zero-initialised; FitIndex and SpinLock have constexpr constructors: no
// global constructor.
constinit MediumHeap g_medium[kArenaSlots]{};

// The heap (arena) that owns a segment.
MediumHeap& heap_of(const MediumSegment* segment) { return g_medium[segment->arena]; }

// Block header at byte offset `offset` of a segment.
BlockHeader* block_at(MediumSegment* segment, size_t offset) {
  return reinterpret_cast<BlockHeader*>(reinterpret_cast<char*>(segment) + offset);
}

// Byte offset of a block within its segment.
size_t offset_of(const MediumSegment* segment, const void* block) { return addr_of(block) - addr_of(segment); }

// Segment that contains a block.
MediumSegment* segment_of(const void* block) {
  return reinterpret_cast<MediumSegment*>(addr_of(block) & ~(kSegmentSize - 1));
}

// Block-start bitmap access. Relaxed atomic loads and stores: only the arena's lock holder
// writes a segment's bits (a load and a store lose nothing), but a thread freeing into its
// medium cache reads its own block's bit without the lock (medium_cacheable_block).
uint64_t start_word(const MediumSegment* segment, size_t word) {
  return __atomic_load_n(&segment->start_bits[word], __ATOMIC_RELAXED);
}
bool start_bit(const MediumSegment* segment, size_t offset) {
  const size_t granule = offset / kBlockHeaderSize;
  return (start_word(segment, granule / 64) >> (granule % 64)) & 1u;
}
// Sets a block-start bit (lock held).
void set_start_bit(MediumSegment* segment, size_t offset) {
  const size_t granule = offset / kBlockHeaderSize;
  const uint64_t word = start_word(segment, granule / 64) | (uint64_t{1} << (granule % 64));
  __atomic_store_n(&segment->start_bits[granule / 64], word, __ATOMIC_RELAXED);
}
// Clears a block-start bit (lock held).
void clear_start_bit(MediumSegment* segment, size_t offset) {
  const size_t granule = offset / kBlockHeaderSize;
  const uint64_t word = start_word(segment, granule / 64) & ~(uint64_t{1} << (granule % 64));
  __atomic_store_n(&segment->start_bits[granule / 64], word, __ATOMIC_RELAXED);
}

// Total block size (header included) for `requested` payload bytes.
size_t block_size_for(size_t requested) {
  const size_t size = align_up(requested + kBlockHeaderSize, kBlockHeaderSize);
  return size < kMediumMinBlock ? kMediumMinBlock : size;
}

// Notes that the allocator or a user may write up to `end` (segment offset).
void mark_dirty(MediumSegment* segment, size_t end) {
  if (end > segment->dirty_end) segment->dirty_end = end;
}

// Turns `block` into a free block of `size` bytes, fixes its successor's prev_size and
// files it in the index. Does not coalesce.
TM_NO_ASAN void make_free(MediumSegment* segment, BlockHeader* block, size_t size) {
  MediumHeap& heap = heap_of(segment);
  poison(block, sizeof(FreeBlock));  // header and links: the rest was poisoned when freed
  block->set(size, true);
  block->next_physical()->prev_size = size;
  set_start_bit(segment, offset_of(segment, block));
  heap.index.insert(static_cast<FreeBlock*>(block));
  mark_dirty(segment, offset_of(segment, block) + sizeof(FreeBlock));
}

// Forgets that the idle sweep purged pages inside the free block: they count as committed
// again (their next owner writes them).
TM_NO_ASAN void forget_purge(MediumSegment* segment, BlockHeader* block) {
  const size_t purged = block->purged_bytes();
  if (purged == 0) return;
  block->set_purged_bytes(0);
  segment->purged_block_bytes -= purged;
  os_note_recommitted(purged);
}

// Takes a free block off the index (to allocate it or merge it).
TM_NO_ASAN void unlink_free(MediumSegment* segment, BlockHeader* block) {
  heap_of(segment).index.remove(static_cast<FreeBlock*>(block));
  forget_purge(segment, block);
}

// Splits `block` (not on the index) to `size` bytes when the rest is at least a minimum
// block; the rest becomes a free block, merged with a free successor.
TM_NO_ASAN void split_tail(MediumSegment* segment, BlockHeader* block, size_t size) {
  const size_t total = block->size();
  if (total - size < kMediumMinBlock) return;
  const size_t tail_offset = TM_PLANT_IF(1) ? size - kBlockHeaderSize : size;
  block->set_size_only(size);
  auto* tail = reinterpret_cast<BlockHeader*>(reinterpret_cast<char*>(block) + tail_offset);
  tail->prev_size = size;
  size_t tail_size = total - tail_offset;
  BlockHeader* after = reinterpret_cast<BlockHeader*>(reinterpret_cast<char*>(tail) + tail_size);
  if (after->is_free()) {
    unlink_free(segment, after);
    clear_start_bit(segment, offset_of(segment, after));
    tail_size += after->size();
  }
  make_free(segment, tail, tail_size);
}

// Takes a segment from the global pool or maps a new one, holding one free block spanning
// it, for arena `arena_index` (its medium lock held).
TM_NO_ASAN MediumSegment* segment_create(unsigned arena_index) {
  if (!chunk_map_ensure()) return nullptr;
  const PooledSegment pooled = pool_take(kSegmentSize, kSegmentSize);
  MediumSegment* segment;
  bool clean = true;
  if (pooled.address != nullptr) {
    segment = static_cast<MediumSegment*>(pooled.address);
    clean = pooled.purged;
    std::memset(segment->start_bits, 0, sizeof segment->start_bits);
  } else {
    segment = static_cast<MediumSegment*>(os_map_aligned(kSegmentSize, kSegmentSize));
    if (segment == nullptr) return nullptr;
  }
  MediumHeap& heap = g_medium[arena_index];
  segment->magic = kSegmentMagic;
  segment->kind = SegmentKind::kMedium;
  segment->arena = arena_index;
  segment->sweep_mark = 0;
  segment->purged = 0;
  segment->purged_block_bytes = 0;
  // A pooled segment that was not purged holds old data everywhere.
  segment->dirty_end = clean ? kMediumFirstBlock : kSegmentSize;
  BlockHeader* sentinel = block_at(segment, kMediumSentinel);
  sentinel->prev_size = kMediumMaxBlock;
  sentinel->store_flags_word(0);
  BlockHeader* first = block_at(segment, kMediumFirstBlock);
  first->prev_size = 0;
  // Under ASan memory nobody used yet stays addressable: headers, links and the slack of
  // blocks handed out are poisoned as they are written (make_free, medium_alloc_in), freed
  // blocks when freed. Poisoning the whole segment here would write 496 KiB of shadow for
  // every new segment.
  poison(sentinel, kBlockHeaderSize);
  make_free(segment, first, kMediumMaxBlock);
  chunk_map_set(segment, kSegmentSize, segment);
  segment->prev = nullptr;
  segment->next = heap.segments;
  if (heap.segments != nullptr) heap.segments->prev = segment;
  heap.segments = segment;
  ++heap.segment_count;
  ++heap.empty_segments;
  return segment;
}

// True when `block` is the only block of its segment (the segment is empty).
TM_NO_ASAN bool spans_segment(MediumSegment* segment, BlockHeader* block) {
  return offset_of(segment, block) == kMediumFirstBlock && block->size() == kMediumMaxBlock;
}

// The range of an empty segment the idle sweep purges: everything but the page of the
// spanning free block's header and the page of the end sentinel.
constexpr size_t kMediumPurgeStart = kMediumFirstBlock + kPageSize;
constexpr size_t kMediumPurgeEnd = kSegmentSize - kPageSize;

// The pool accounts a given segment as committed: a segment the idle sweep purged counts
// the purged range as committed again before it goes there.
void note_unpurged(MediumSegment* segment) {
  if (segment->purged == 0) return;
  segment->purged = 0;
  os_note_recommitted(kMediumPurgeEnd - kMediumPurgeStart);
}

// Unregisters an empty segment whose single free block is filed and moves it to the
// global pool (lock held).
TM_NO_ASAN void segment_destroy(MediumSegment* segment) {
  MediumHeap& heap = heap_of(segment);
  unlink_free(segment, block_at(segment, kMediumFirstBlock));
  list_unlink(heap.segments, segment, "medium segment list");
  chunk_map_set(segment, kSegmentSize, nullptr);
  --heap.segment_count;
  --heap.empty_segments;
  note_unpurged(segment);
  pool_give(segment, kSegmentSize);  // poisons its edges under ASan
}

// Offset of the block that contains segment offset `offset` (the nearest block start at
// or below it), or 0 when there is none. Error path only: scans the start bitmap.
TM_NO_COVERAGE size_t containing_block(const MediumSegment* segment, size_t offset) {
  size_t granule = offset / kBlockHeaderSize;
  size_t word = granule / 64;
  uint64_t bits = start_word(segment, word) & (~uint64_t{0} >> (63 - granule % 64));
  for (;;) {
    if (bits != 0) return (word * 64 + 63 - static_cast<size_t>(__builtin_clzll(bits))) * kBlockHeaderSize;
    if (word == 0) return 0;
    bits = start_word(segment, --word);
  }
}

// Reports a corrupted boundary tag at the block p belongs to (lock held; released).
[[noreturn]] TM_NO_ASAN void report_corrupt_tag(MediumHeap& heap, const void* p, const char* field, size_t value) {
  heap.lock.unlock();
  TextBuffer detail;
  detail.str("boundary tag of a medium block is corrupted: ").str(field).str(" ").dec(value);
  detail.str("; was a neighbouring block overrun or underrun?");
  report_misuse("heap corruption", p, detail);
}

// Validates that p is the payload of a live block of `segment` (lock held) and returns its
// header; otherwise releases the lock and reports misuse: a pointer inside a block, a
// block already free (a double free when `what` is "invalid free"), or headers that no
// longer round-trip (heap corruption), before anything follows a damaged link.
TM_NO_ASAN BlockHeader* checked_block(MediumSegment* segment, const void* p, const char* what) {
  MediumHeap& heap = heap_of(segment);
  const size_t offset = addr_of(p) - addr_of(segment);
  const bool in_range = offset >= kMediumFirstBlock + kBlockHeaderSize && offset < kMediumSentinel;
  if ((offset & (kBlockHeaderSize - 1)) != 0 || !in_range || !start_bit(segment, offset - kBlockHeaderSize)) {
    const size_t around = in_range ? containing_block(segment, offset - kBlockHeaderSize) : 0;
    if (around >= kMediumFirstBlock && block_at(segment, around)->is_free() && (offset & (kBlockHeaderSize - 1)) == 0 &&
        std::strcmp(what, "invalid free") == 0) {
      // The block was freed and merged into the free block before it.
      heap.lock.unlock();
      TextBuffer detail;
      detail.str("medium block already freed and merged into a free block of ").dec(block_at(segment, around)->size());
      detail.str(" bytes");
      report_misuse("double free", p, detail);
    }
    heap.lock.unlock();
    report_misuse(what, p, in_range ? "inside a medium block: not its start" : "pointer into medium segment metadata");
  }
  const size_t header_offset = offset - kBlockHeaderSize;
  BlockHeader* block = BlockHeader::from_payload(p);
  const size_t size = block->size();
  if (size < kMediumMinBlock || size > kMediumSentinel - header_offset) report_corrupt_tag(heap, p, "size", size);
  if (block->next_physical()->prev_size != size) {
    report_corrupt_tag(heap, p, "successor's prev_size", block->next_physical()->prev_size);
  }
  const size_t prev_size = block->prev_size;
  if (prev_size == 0 ? header_offset != kMediumFirstBlock
                     : (prev_size % kBlockHeaderSize != 0 || prev_size > header_offset - kMediumFirstBlock ||
                        !start_bit(segment, header_offset - prev_size) ||
                        block_at(segment, header_offset - prev_size)->size() != prev_size)) {
    report_corrupt_tag(heap, p, "prev_size", prev_size);
  }
  // The slack shares the size's word, the last bytes before the payload: an underrun of this
  // block lands there and would skew the requested-byte counters for good.
  if (!block->is_free() && block->slack() > size - kBlockHeaderSize) {
    report_corrupt_tag(heap, p, "slack", block->slack());
  }
  ReportBlock reported;  // for the JSON form of the reports below
  reported.size = size - kBlockHeaderSize;
  if (block->is_free()) {
    heap.lock.unlock();
    report_context(reported);
    TextBuffer detail;
    detail.str("medium block already free (").dec(size - kBlockHeaderSize).str(" bytes)");
    report_misuse(std::strcmp(what, "invalid free") == 0 ? "double free" : what, p, detail);
  }
  if (free_block_has_key(p)) {
    // Freed into a thread's medium cache (its flush clears the key before freeing it here).
    heap.lock.unlock();
    report_context(reported);
    TextBuffer detail;
    detail.str("medium block already freed into a thread cache (").dec(size - kBlockHeaderSize).str(" bytes)");
    report_misuse(std::strcmp(what, "invalid free") == 0 ? "double free" : what, p, detail);
  }
  return block;
}

// Heap checks: whether a best-fit link read from a block may be followed. It must name a block
// start in a medium segment: a live block taken for a free one (its free flag overwritten)
// holds user data where the links would be, and a write after free may have changed them.
TM_NO_ASAN TM_NO_COVERAGE bool plausible_free_link(const FreeBlock* link) {
  if ((addr_of(link) & (kBlockHeaderSize - 1)) != 0) return false;
  const SegmentBase* owner = chunk_owner(link);
  if (owner == nullptr || owner->magic != kSegmentMagic || owner->kind != SegmentKind::kMedium) return false;
  const auto* segment = static_cast<const MediumSegment*>(owner);
  const size_t offset = offset_of(segment, link);
  return offset >= kMediumFirstBlock && offset < kMediumSentinel && start_bit(segment, offset);
}

// Heap walk of one arena's medium heap (its lock held); adds its live requested bytes.
TM_NO_ASAN TM_NO_COVERAGE int medium_check_heap(CheckResult* result, MediumHeap& heap, unsigned arena_index,
                                                size_t* requested_total) {
  // The segment headers first: a damaged header is named as such, not by the index check,
  // whose links into that segment then stop looking plausible.
  size_t segments = 0;
  for (MediumSegment* segment = heap.segments; segment != nullptr; segment = segment->next) {
    if (++segments > heap.segment_count)
      return result->fail(TM_CHECK_SEGMENT, segment, "medium segment list is longer than its count (cycle?)");
    if (segment->magic != kSegmentMagic || segment->kind != SegmentKind::kMedium || segment->arena != arena_index) {
      return result->fail(TM_CHECK_SEGMENT, segment, "medium segment header has a bad magic, kind or arena");
    }
    if (chunk_owner(segment) != segment)
      return result->fail(TM_CHECK_SEGMENT, segment, "address map entry does not name this medium segment");
    if (segment->next != nullptr && segment->next->prev != segment)
      return result->fail(TM_CHECK_SEGMENT, segment, "medium segment list links do not round-trip");
  }
  const void* bad = heap.index.validate(plausible_free_link);
  if (bad != nullptr)
    return result->fail(TM_CHECK_FIT_INDEX, bad, "best-fit index is inconsistent (bitmap, list placement or links)");
  size_t empty = 0;
  size_t free_blocks = 0;
  size_t free_bytes = 0;
  size_t live = 0;
  size_t usable_total = 0;
  size_t requested = 0;
  for (MediumSegment* segment = heap.segments; segment != nullptr; segment = segment->next) {
    size_t offset = kMediumFirstBlock;
    size_t prev_size = 0;
    bool prev_free = false;
    size_t blocks = 0;
    while (offset < kMediumSentinel) {
      BlockHeader* block = block_at(segment, offset);
      const size_t size = block->size();
      if (block->prev_size != prev_size)
        return result->fail(TM_CHECK_BOUNDARY_TAG, block,
                            "medium block's prev_size differs from its predecessor's size");
      if (size < kMediumMinBlock || offset + size > kMediumSentinel) {
        return result->fail(TM_CHECK_BOUNDARY_TAG, block,
                            "medium block size is out of range or runs past the segment end");
      }
      if (!start_bit(segment, offset))
        return result->fail(TM_CHECK_BOUNDARY_TAG, block, "medium block start is missing from the block-start bitmap");
      ++blocks;
      if (block->is_free()) {
        if (prev_free)
          return result->fail(TM_CHECK_UNCOALESCED, block, "two adjacent free medium blocks (missed coalesce)");
        // Membership: walking back along the list must reach the head of the list its size maps to.
        const FitIndex::Slot slot = FitIndex::slot_for_size(size);
        const FreeBlock* walk = static_cast<FreeBlock*>(block);
        size_t steps = 0;
        while (walk->prev_free != nullptr && steps <= heap.index.count()) {
          if (!plausible_free_link(walk->prev_free)) break;  // not followed: the head check below fails
          walk = walk->prev_free;
          ++steps;
        }
        if (walk != heap.index.head(slot.first, slot.second)) {
          return result->fail(TM_CHECK_FIT_INDEX, block,
                              "free medium block is not on the best-fit index list for its size");
        }
        ++free_blocks;
        free_bytes += size;
      } else {
        if (block->slack() > size - kBlockHeaderSize)
          return result->fail(TM_CHECK_BOUNDARY_TAG, block, "used medium block's slack exceeds its size");
        ++live;
        usable_total += size - kBlockHeaderSize;
        requested += size - kBlockHeaderSize - block->slack();
      }
      prev_free = block->is_free();
      prev_size = size;
      offset += size;
    }
    if (offset != kMediumSentinel)
      return result->fail(TM_CHECK_BOUNDARY_TAG, block_at(segment, offset),
                          "medium blocks do not end at the segment sentinel");
    BlockHeader* sentinel = block_at(segment, kMediumSentinel);
    if (sentinel->flags_word() != 0 || sentinel->prev_size != prev_size) {
      return result->fail(TM_CHECK_BOUNDARY_TAG, sentinel, "medium segment end sentinel is corrupted");
    }
    size_t start_count = 0;
    for (uint64_t word : segment->start_bits) start_count += static_cast<size_t>(__builtin_popcountll(word));
    if (start_count != blocks)
      return result->fail(TM_CHECK_BOUNDARY_TAG, segment,
                          "block-start bitmap marks positions that are not block starts");
    if (blocks == 1 && block_at(segment, kMediumFirstBlock)->is_free()) ++empty;
  }
  if (segments != heap.segment_count)
    return result->fail(TM_CHECK_STATS, &g_medium, "medium segment count differs from the segment list");
  if (free_blocks != heap.index.count() || free_bytes != heap.index.bytes()) {
    return result->fail(TM_CHECK_FIT_INDEX, &heap.index, "best-fit index does not hold exactly the free medium blocks");
  }
  if (empty != heap.empty_segments)
    return result->fail(TM_CHECK_STATS, &g_medium, "empty medium segment count differs from the walk");
  if (live != heap.live_blocks || usable_total != heap.usable_bytes) {
    return result->fail(TM_CHECK_STATS, &g_medium, "medium live counters differ from the block walk");
  }
  *requested_total += requested;
  return 0;
}

}  // namespace

bool medium_fits(size_t requested, size_t alignment) {
  if (alignment <= kBlockHeaderSize) return requested <= kMediumMax;
  return alignment <= kRunSize && requested <= kMediumMax && requested + alignment <= kMediumMax;
}

TM_NO_ASAN void* medium_alloc(size_t requested, size_t alignment, bool zero) {
  heap_maintain();
  return medium_alloc_in(current_arena(), requested, alignment, zero);
}

TM_NO_ASAN void* medium_alloc_in(unsigned arena_index, size_t requested, size_t alignment, bool zero) {
  return medium_alloc_carved(arena_index, requested, requested, alignment, zero);
}

TM_NO_ASAN void* medium_alloc_carved(unsigned arena_index, size_t requested, size_t carve, size_t alignment,
                                     bool zero) {
  arena_note_used(arena_index);
  MediumHeap& heap = g_medium[arena_index];
  const size_t size = block_size_for(carve);
  // Aligned: room to move the payload to an aligned address while the skipped head is
  // either empty or large enough to be a free block of its own.
  const size_t search = alignment > kBlockHeaderSize ? size + alignment + kMediumMinBlock : size;
  if (!heap.lock.try_lock()) {
    heap.lock.lock();
    note_arena_contention();  // repeatedly contended: this thread moves to another arena
  }
  LockGuard guard(heap.lock, kAdoptLock);
  FreeBlock* found = heap.index.find_fit(search);
  if (found == nullptr) {
    MediumSegment* fresh = segment_create(arena_index);
    if (fresh == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    found = static_cast<FreeBlock*>(block_at(fresh, kMediumFirstBlock));
  }
  MediumSegment* segment = segment_of(found);
  // The index hands out a free block whose tag ends inside the block area where its
  // successor's prev_size says; a tag smashed while the block sat in the index (an overrun of
  // the block before it) is reported before anything is split off it or handed out.
  const size_t found_size = found->size();
  if (TM_UNLIKELY(!found->is_free() || found_size < kMediumMinBlock ||
                  found_size > kMediumSentinel - offset_of(segment, found) ||
                  found->next_physical()->prev_size != found_size)) {
    report_corrupt_tag(heap, found, "size of a free block", found_size);
  }
  // Memory at or past dirty_end is still zero from the OS (measured before this call's
  // own header and link writes).
  const size_t dirty_before = segment->dirty_end;
  if (spans_segment(segment, found)) {
    --heap.empty_segments;
    segment->sweep_mark = 0;
    if (segment->purged != 0) {
      segment->purged = 0;
      os_note_recommitted(kMediumPurgeEnd - kMediumPurgeStart);
    }
  }
  unlink_free(segment, found);
  BlockHeader* block = found;
  if (alignment > kBlockHeaderSize) {
    const uintptr_t payload = addr_of(block->payload());
    uintptr_t aligned = align_up(payload, alignment);
    if (aligned != payload && aligned - payload < kMediumMinBlock)
      aligned = align_up(payload + kMediumMinBlock, alignment);
    if (TM_PLANT_IF(8) && alignment > kPageSize) aligned += kBlockHeaderSize;
    const size_t gap = aligned - payload;
    if (gap != 0) {
      // The skipped head stays free; its predecessor is used (blocks never sit free side
      // by side), so it needs no coalescing.
      const size_t total = block->size();
      auto* moved = reinterpret_cast<BlockHeader*>(reinterpret_cast<char*>(block) + gap);
      moved->prev_size = gap;
      moved->set(total - gap, false);
      moved->next_physical()->prev_size = total - gap;
      set_start_bit(segment, offset_of(segment, moved));
      make_free(segment, block, gap);
      block = moved;
    }
  }
  split_tail(segment, block, size);
  block->set(block->size(), false);
  const size_t usable = block->size() - kBlockHeaderSize;
  block->set_slack(usable - requested);
  set_start_bit(segment, offset_of(segment, block));
  char* payload = static_cast<char*>(block->payload());
  const size_t payload_offset = offset_of(segment, payload);
  const size_t dirty_bytes = dirty_before > payload_offset ? dirty_before - payload_offset : 0;
  // The payload may start where a freed small block kept its key in an earlier life of this
  // memory (segments of every tier share the segment pool, unzeroed): a live block carrying
  // the key would be taken for a cached one and its free reported as a double free.
  free_block_clear_key(payload);
  mark_dirty(segment, payload_offset + usable);
  ++heap.live_blocks;
  heap.usable_bytes += usable;
  stats_add_requested(requested);  // under the lock: heap checks see block and counter agree
  // Its header and the slack past the request are unaddressable under ASan, and so is the
  // next block's header (memory that was never used before is not poisoned yet).
  poison(block, kBlockHeaderSize);
  poison(block->next_physical(), kBlockHeaderSize);
  unpoison(payload, requested);
  poison(payload + requested, usable - requested);
  if (zero && !TM_PLANT_IF(7)) std::memset(payload, 0, dirty_bytes < requested ? dirty_bytes : requested);
  return payload;
}

TM_NO_ASAN void medium_free(MediumSegment* segment, void* p, const char* what) {
  MediumHeap& heap = heap_of(segment);
  heap.lock.lock();
  BlockHeader* block = checked_block(segment, p, what);
  const size_t usable = block->size() - kBlockHeaderSize;
  const size_t requested = usable - block->slack();
  --heap.live_blocks;
  heap.usable_bytes -= usable;
  poison(p, usable);

  size_t size = block->size();
  BlockHeader* next = block->next_physical();
  if (next->is_free() && !TM_PLANT_IF(2)) {
    unlink_free(segment, next);
    clear_start_bit(segment, offset_of(segment, next));
    size += next->size();
  } else if (TM_PLANT_IF(3) && next->size() == 0) {
    size += kBlockHeaderSize;  // swallows the end sentinel: coalescing across the segment end
  }
  if (block->prev_size != 0) {
    BlockHeader* prev = block->prev_physical();
    if (prev->is_free()) {
      unlink_free(segment, prev);
      clear_start_bit(segment, offset_of(segment, block));
      size += prev->size();
      block = prev;
    }
  }
  make_free(segment, block, size);
  if (spans_segment(segment, block)) {
    ++heap.empty_segments;
    if (heap.empty_segments > static_cast<size_t>(option(OptionId::kArenaRetain))) segment_destroy(segment);
  }
  stats_sub_requested(requested);
  heap.lock.unlock();
}

TM_NO_ASAN BlockHeader* medium_cacheable_block(MediumSegment* segment, const void* p) {
  const size_t offset = addr_of(p) - addr_of(segment);
  if ((offset & (kBlockHeaderSize - 1)) != 0 || offset < kMediumFirstBlock + kBlockHeaderSize ||
      offset >= kMediumSentinel || !start_bit(segment, offset - kBlockHeaderSize)) {
    return nullptr;
  }
  BlockHeader* block = BlockHeader::from_payload(p);
  const size_t size = block->size();
  if (block->is_free() || size < kMediumMinBlock || size > kMediumSentinel - (offset - kBlockHeaderSize) ||
      block->next_physical()->prev_size != size || block->slack() > size - kBlockHeaderSize) {
    return nullptr;  // medium_free's checked_block reports it
  }
  return block;
}

TM_NO_ASAN size_t medium_usable_size(MediumSegment* segment, const void* p, const char* what) {
  MediumHeap& heap = heap_of(segment);
  heap.lock.lock();
  const size_t usable = checked_block(segment, p, what)->size() - kBlockHeaderSize;
  heap.lock.unlock();
  unpoison(p, usable);  // the caller may now use every usable byte
  return usable;
}

TM_NO_ASAN size_t medium_requested_size(MediumSegment* segment, const void* p, const char* what) {
  MediumHeap& heap = heap_of(segment);
  heap.lock.lock();
  BlockHeader* block = checked_block(segment, p, what);
  const size_t requested = block->size() - kBlockHeaderSize - block->slack();
  heap.lock.unlock();
  return requested;
}

// medium_resize_in_place: headroom kept on growth and tolerated on shrink, as a fraction of the
// block (1/8: the small size classes' spacing above 128 B).
constexpr size_t kResizeHeadroomDivisor = 8;

TM_NO_ASAN bool medium_resize_in_place(MediumSegment* segment, void* p, size_t requested) {
  if (requested > kMediumMax) return false;
  MediumHeap& heap = heap_of(segment);
  // checked_block releases the lock itself before it reports misuse (and aborts).
  LockGuard guard(heap.lock);
  BlockHeader* block = checked_block(segment, p, "invalid realloc");
  const size_t old_usable = block->size() - kBlockHeaderSize;
  const size_t old_requested = old_usable - block->slack();
  const size_t want = block_size_for(requested);
  if (want > block->size()) {
    BlockHeader* next = block->next_physical();
    const bool next_free = next->is_free() || (TM_PLANT_IF(6) && next->size() != 0);
    if (!next_free || block->size() + next->size() < want) return false;
    if (next->is_free()) unlink_free(segment, next);
    clear_start_bit(segment, offset_of(segment, next));
    const size_t merged = block->size() + next->size();
    block->set(merged, false);
    block->next_physical()->prev_size = merged;
    // A block grown in place keeps an eighth more (when the successor had it) and a shrink
    // gives back only a tail of at least an eighth: a buffer grown by small appends then
    // merges and splits once per eighth of growth instead of at every 16-byte step.
    const size_t roomy_request = requested + requested / kResizeHeadroomDivisor;
    const size_t roomy = block_size_for(roomy_request < kMediumMax ? roomy_request : kMediumMax);
    split_tail(segment, block, roomy < block->size() ? (roomy > want ? roomy : want) : block->size());
  } else if (block->size() - want >= block->size() / kResizeHeadroomDivisor) {
    split_tail(segment, block, want);
  }
  block->set(block->size(), false);
  const size_t usable = block->size() - kBlockHeaderSize;
  block->set_slack(usable - requested);
  mark_dirty(segment, offset_of(segment, p) + usable);
  heap.usable_bytes = heap.usable_bytes - old_usable + usable;
  if (!TM_PLANT_IF(10)) {
    stats_sub_requested(old_requested);
    stats_add_requested(requested);
  }
  // Poison everything past the request that belonged to the block before or after: the
  // slack, and on a shrink the tail just split off (the caller could reach it before).
  unpoison(p, requested);
  poison(static_cast<char*>(p) + requested, (usable > old_usable ? usable : old_usable) - requested);
  return true;
}

bool medium_owns(const MediumSegment* segment, const void* p) {
  const size_t offset = addr_of(p) - addr_of(segment);
  return offset >= kMediumFirstBlock && offset < kMediumSentinel;
}

TM_NO_COVERAGE void medium_lock_all(unsigned arenas) {
  for (unsigned a = 0; a < arenas; ++a) {
    if (arena_touched(a)) g_medium[a].lock.lock();
  }
}
TM_NO_COVERAGE void medium_unlock_all(unsigned arenas) {
  for (unsigned a = arenas; a-- > 0;) {
    if (arena_touched(a)) g_medium[a].lock.unlock();
  }
}

TM_NO_COVERAGE void medium_totals(MediumTotals* out, unsigned arenas) {
  *out = MediumTotals{};
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    const MediumHeap& heap = g_medium[a];
    out->live_blocks += heap.live_blocks;
    out->usable_bytes += heap.usable_bytes;
    out->free_blocks += heap.index.count();
    out->free_bytes += heap.index.bytes();
    const size_t largest = heap.index.largest();
    if (largest > out->largest_free) out->largest_free = largest;
    out->segments += heap.segment_count;
  }
}

TM_NO_ASAN void medium_release_cached() {
  const unsigned arenas = arenas_used();
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    MediumHeap& heap = g_medium[a];
    LockGuard guard(heap.lock);
    for (MediumSegment* segment = heap.segments; segment != nullptr;) {
      MediumSegment* next = segment->next;
      if (spans_segment(segment, block_at(segment, kMediumFirstBlock)) &&
          block_at(segment, kMediumFirstBlock)->is_free()) {
        segment_destroy(segment);
      }
      segment = next;
    }
  }
}

void medium_arena_totals(unsigned arena, MediumTotals* out) {
  LockGuard guard(g_medium[arena].lock);
  const MediumHeap& heap = g_medium[arena];
  *out = MediumTotals{};
  out->live_blocks = heap.live_blocks;
  out->usable_bytes = heap.usable_bytes;
  out->free_blocks = heap.index.count();
  out->free_bytes = heap.index.bytes();
  out->largest_free = heap.index.largest();
  out->segments = heap.segment_count;
}

TM_NO_COVERAGE void medium_os_bytes(unsigned arenas, OsBytes* out) {
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    for (const MediumSegment* segment = g_medium[a].segments; segment != nullptr; segment = segment->next) {
      out->mapped += kSegmentSize;
      // The idle sweep purges [kMediumPurgeStart, kMediumPurgeEnd) of an empty segment, and the
      // interior pages of free blocks that stay free.
      out->committed +=
          kSegmentSize - (segment->purged != 0 ? kMediumPurgeEnd - kMediumPurgeStart : 0) - segment->purged_block_bytes;
    }
  }
}

TM_NO_ASAN TM_NO_COVERAGE void medium_map(HeapMap& map, unsigned arenas) {
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    for (MediumSegment* segment = g_medium[a].segments; segment != nullptr; segment = segment->next) {
      map.medium_segment(a, addr_of(segment));
      // The same walk as the heap check, bounded by the sentinel (a damaged tag ends the row).
      for (size_t offset = kMediumFirstBlock; offset < kMediumSentinel;) {
        const BlockHeader* block = block_at(segment, offset);
        const size_t size = block->size();
        if (size < kMediumMinBlock || offset + size > kMediumSentinel) break;
        const bool free_block = block->is_free();
        size_t purged = free_block ? block->purged_bytes() : 0;
        if (free_block && segment->purged != 0) purged = size;
        map.medium_block(offset, size, !free_block, purged);
        offset += size;
      }
      map.end_row();
    }
  }
}

TM_NO_COVERAGE TM_NO_ASAN void medium_arena_snapshot(unsigned arena, MediumTotals* out, size_t* committed_bytes) {
  const MediumHeap& heap = g_medium[arena];
  *out = MediumTotals{};
  out->live_blocks = heap.live_blocks;
  out->usable_bytes = heap.usable_bytes;
  out->free_blocks = heap.index.count();
  out->free_bytes = heap.index.bytes();
  out->largest_free = heap.index.largest();
  out->segments = heap.segment_count;
  *committed_bytes = 0;
  for (const MediumSegment* segment = heap.segments; segment != nullptr; segment = segment->next) {
    // The idle sweep purges [kMediumPurgeStart, kMediumPurgeEnd) of an empty segment, and
    // the interior pages of free blocks that stay free.
    *committed_bytes +=
        kSegmentSize - (segment->purged != 0 ? kMediumPurgeEnd - kMediumPurgeStart : 0) - segment->purged_block_bytes;
  }
}

TM_NO_ASAN size_t medium_reset_arena(unsigned arena) {
  MediumHeap& heap = g_medium[arena];
  LockGuard guard(heap.lock);
  size_t requested = 0;
  while (heap.segments != nullptr) {
    MediumSegment* segment = heap.segments;
    // Live blocks' requested bytes leave the statistics with them.
    for (size_t offset = kMediumFirstBlock; offset < kMediumSentinel;) {
      BlockHeader* block = block_at(segment, offset);
      if (!block->is_free()) requested += block->size() - kBlockHeaderSize - block->slack();
      offset += block->size();
    }
    heap.segments = segment->next;
    chunk_map_set(segment, kSegmentSize, nullptr);
    note_unpurged(segment);
    os_note_recommitted(segment->purged_block_bytes);  // the pool counts it committed
    segment->purged_block_bytes = 0;
    pool_give(segment, kSegmentSize);  // poisons its edges under ASan
  }
  heap.index = FitIndex{};
  heap.segment_count = 0;
  heap.empty_segments = 0;
  heap.live_blocks = 0;
  heap.usable_bytes = 0;
  return requested;
}

bool medium_idle() {
  const unsigned arenas = arenas_used();
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    LockGuard guard(g_medium[a].lock);
    if (g_medium[a].live_blocks != 0) return false;
  }
  return true;
}

TM_NO_ASAN TM_NO_COVERAGE void medium_reset_for_test() {
  const unsigned arenas = arenas_used();
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    MediumHeap& heap = g_medium[a];
    while (heap.segments != nullptr) {
      MediumSegment* segment = heap.segments;
      heap.segments = segment->next;
      chunk_map_set(segment, kSegmentSize, nullptr);
      note_unpurged(segment);                            // os_unmap takes the whole segment off
      os_note_recommitted(segment->purged_block_bytes);  // the committed bytes
      os_unmap(segment, kSegmentSize);
    }
    heap.lock.reset();
    heap.index = FitIndex{};
    heap.segment_count = 0;
    heap.empty_segments = 0;
    heap.live_blocks = 0;
    heap.usable_bytes = 0;
  }
}

namespace {

// Free blocks at least this large have their interior pages purged when they stay free.
constexpr size_t kMediumPurgeMinBlock = 64 * 1024;

// Purges the empty segment's range past its header when a previous sweep found it empty
// too (heap lock held).
TM_NO_ASAN void purge_if_idle_empty(MediumSegment* segment, BlockHeader* first) {
  if (segment->purged != 0) return;
  if (segment->sweep_mark == 0) {
    segment->sweep_mark = 1;  // empty now: purged if still empty at the next sweep
    return;
  }
  forget_purge(segment, first);  // counted again here, then purged with the whole range
  char* start = reinterpret_cast<char*>(segment) + kMediumPurgeStart;
  os_purge(start, kMediumPurgeEnd - kMediumPurgeStart);
  // The sentinel's page stays: clear what a block may have left there, so everything
  // past kMediumPurgeStart reads as zero (dirty_end below).
  char* tail = reinterpret_cast<char*>(segment) + kMediumPurgeEnd;
  unpoison(tail, kMediumSentinel - kMediumPurgeEnd);
  std::memset(tail, 0, kMediumSentinel - kMediumPurgeEnd);
  poison(tail, kMediumSentinel - kMediumPurgeEnd);
  segment->purged = 1;
  if (segment->dirty_end > kMediumPurgeStart) segment->dirty_end = kMediumPurgeStart;
}

// Purges the interior pages of the segment's large free blocks that a previous sweep
// found free too (heap lock held). Merging, splitting or allocating a block writes a new
// header, which drops its mark: only blocks untouched for a whole purge delay go.
TM_NO_ASAN void purge_idle_free_blocks(MediumSegment* segment) {
  for (size_t offset = kMediumFirstBlock; offset < kMediumSentinel;) {
    BlockHeader* block = block_at(segment, offset);
    const size_t size = block->size();
    if (size == 0) break;  // a damaged chain: the heap check reports it
    offset += size;
    if (!block->is_free() || size < kMediumPurgeMinBlock || block->purged_bytes() != 0) continue;
    if (!block->sweep_marked()) {
      block->set_sweep_mark();
      continue;
    }
    // The header and the index links stay; the next block's header lies past `end`.
    const uintptr_t start = align_up(addr_of(block) + sizeof(FreeBlock), kPageSize);
    const uintptr_t end = align_down(addr_of(block) + size, kPageSize);
    if (end <= start) continue;
    os_purge(reinterpret_cast<void*>(start), end - start);
    block->set_purged_bytes(end - start);
    segment->purged_block_bytes += end - start;
  }
}

}  // namespace

TM_NO_ASAN void medium_sweep_idle() {
  const unsigned arenas = arenas_used();
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    MediumHeap& heap = g_medium[a];
    // Every half purge delay: the lock is cheap next to a peek that would race.
    LockGuard guard(heap.lock);
    for (MediumSegment* segment = heap.segments; segment != nullptr; segment = segment->next) {
      BlockHeader* first = block_at(segment, kMediumFirstBlock);
      if (first->is_free() && spans_segment(segment, first)) {
        purge_if_idle_empty(segment, first);
      } else {
        purge_idle_free_blocks(segment);
      }
    }
  }
}

namespace {

// Checks the block at `offset` of `segment` and its boundary tags against its physical
// neighbours, and a free block's place in the index (heap lock held). 0 or a code.
TM_NO_ASAN TM_NO_COVERAGE int check_block_tags(CheckResult* result, MediumSegment* segment, size_t offset) {
  BlockHeader* block = block_at(segment, offset);
  const size_t size = block->size();
  if (size < kMediumMinBlock || offset + size > kMediumSentinel)
    return result->fail(TM_CHECK_BOUNDARY_TAG, block, "medium block size is out of range or runs past the segment end");
  if (!start_bit(segment, offset))
    return result->fail(TM_CHECK_BOUNDARY_TAG, block, "medium block start is missing from the block-start bitmap");
  const size_t prev_size = block->prev_size;
  if (prev_size == 0
          ? offset != kMediumFirstBlock
          : (prev_size % kBlockHeaderSize != 0 || prev_size > offset - kMediumFirstBlock ||
             !start_bit(segment, offset - prev_size) || block_at(segment, offset - prev_size)->size() != prev_size)) {
    return result->fail(TM_CHECK_BOUNDARY_TAG, block, "medium block's prev_size differs from its predecessor's size");
  }
  BlockHeader* next = block->next_physical();
  if (next->prev_size != size)
    return result->fail(TM_CHECK_BOUNDARY_TAG, next, "medium block's successor does not name its size in prev_size");
  if (offset + size == kMediumSentinel) {
    if (next->flags_word() != 0)
      return result->fail(TM_CHECK_BOUNDARY_TAG, next, "medium segment end sentinel is corrupted");
  } else if (!start_bit(segment, offset + size)) {
    return result->fail(TM_CHECK_BOUNDARY_TAG, next, "medium block start is missing from the block-start bitmap");
  }
  if (block->is_free()) {
    if (!heap_of(segment).index.holds(static_cast<FreeBlock*>(block), plausible_free_link))
      return result->fail(TM_CHECK_FIT_INDEX, block,
                          "free medium block is not on the best-fit index list for its size");
    if (next->is_free())
      return result->fail(TM_CHECK_UNCOALESCED, next, "two adjacent free medium blocks (missed coalesce)");
  } else if (block->slack() > size - kBlockHeaderSize) {
    return result->fail(TM_CHECK_BOUNDARY_TAG, block, "used medium block's slack exceeds its size");
  }
  return 0;
}

}  // namespace

TM_NO_ASAN TM_NO_COVERAGE int medium_check_around(CheckResult* result, MediumSegment* segment, const void* p) {
  if (segment->magic != kSegmentMagic || segment->kind != SegmentKind::kMedium || segment->arena >= kArenaSlots)
    return result->fail(TM_CHECK_SEGMENT, segment, "medium segment header has a bad magic, kind or arena");
  if (chunk_owner(segment) != segment)
    return result->fail(TM_CHECK_SEGMENT, segment, "address map entry does not name this medium segment");
  const size_t offset = offset_of(segment, p);
  if (offset < kMediumFirstBlock || offset >= kMediumSentinel) return 0;  // header or sentinel
  MediumHeap& heap = heap_of(segment);
  LockGuard guard(heap.lock);
  // The block p lies in (p may be a freed block's payload, merged into a free block since).
  const size_t at = containing_block(segment, offset);
  if (at < kMediumFirstBlock)
    return result->fail(TM_CHECK_BOUNDARY_TAG, p, "no medium block start at or below this address");
  const size_t size = block_at(segment, at)->size();
  if (size < kMediumMinBlock || at + size > kMediumSentinel || at + size <= offset)
    return result->fail(TM_CHECK_BOUNDARY_TAG, block_at(segment, at),
                        "the block-start bitmap names a block that does not reach this address");
  // The block and both neighbours: their tags, coalescing and index membership.
  const size_t prev_size = block_at(segment, at)->prev_size;
  if (prev_size != 0 && prev_size <= at - kMediumFirstBlock) {
    const int code = check_block_tags(result, segment, at - prev_size);
    if (code != 0) return code;
  }
  int code = check_block_tags(result, segment, at);
  if (code == 0 && at + size < kMediumSentinel) code = check_block_tags(result, segment, at + size);
  return code;
}

TM_NO_ASAN TM_NO_COVERAGE int medium_check(CheckResult* result, unsigned arenas, size_t* requested_total) {
  *requested_total = 0;
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    const int code = medium_check_heap(result, g_medium[a], a, requested_total);
    if (code != 0) return code;
  }
  return 0;
}

}  // namespace tmalloc
