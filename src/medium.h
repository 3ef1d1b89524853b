// Medium tier: blocks of kSmallMax+1 .. kMediumMax bytes, best-fit from a two-level index
// over boundary-tagged blocks inside 4 MiB medium segments. Allocation splits off a
// remainder when it is at least kMediumMinBlock; free coalesces at once with both free
// neighbours, so no two adjacent blocks are ever both free. A per-segment bitmap of block
// starts makes validating a pointer O(1).
#pragma once

#include <cstddef>
#include <cstdint>

#include "config.h"
#include "medium_block.h"
#include "segment.h"

namespace tmalloc {

struct MediumSegment : SegmentBase {
  uint32_t arena;  // owning arena (its medium lock guards every block here)
  MediumSegment* next;
  MediumSegment* prev;
  // Offset below which the allocator or a user may have written; memory above it is
  // still zero from the OS, so calloc need not clear it.
  size_t dirty_end;
  // Idle sweep (medium_sweep_idle): found empty by the last sweep / memory purged since.
  uint8_t sweep_mark;
  uint8_t purged;
  // Bytes inside free blocks the idle sweep returned to the OS (BlockHeader::purged_bytes
  // summed over this segment's free blocks).
  size_t purged_block_bytes;
  // Bit per 16-byte granule: a block header starts there.
  uint64_t start_bits[kSegmentSize / kBlockHeaderSize / 64];
};

static_assert(sizeof(MediumSegment) <= kMediumHeaderSize);

// Offset of the first block and of the end sentinel (a size-0 used header).
inline constexpr size_t kMediumFirstBlock = kMediumHeaderSize;
inline constexpr size_t kMediumSentinel = kSegmentSize - kBlockHeaderSize;
// Largest block a segment can hold.
inline constexpr size_t kMediumMaxBlock = kMediumSentinel - kMediumFirstBlock;

// Allocates `requested` bytes aligned to `alignment` (a power of two); zeroes them when
// `zero` (skipping memory fresh from the OS). nullptr + ENOMEM on failure.
// The block comes from the calling thread's arena (see arena.h).
void* medium_alloc(size_t requested, size_t alignment, bool zero);
// The same from arena (or memory pool) slot `arena`.
void* medium_alloc_in(unsigned arena, size_t requested, size_t alignment, bool zero);

// The same, carving a block for `carve` >= `requested` bytes (a medium cache class's size,
// so that the block can serve any request of its class once it is cached).
void* medium_alloc_carved(unsigned arena, size_t requested, size_t carve, size_t alignment, bool zero);

// Memory pools: releases every segment of arena slot `arena` to the global pool at once
// (the blocks in it die) and returns the requested bytes its live blocks held. No other
// thread may use the slot meanwhile.
size_t medium_reset_arena(unsigned arena);

// tm_test_reset: true when no arena slot holds a live medium block.
bool medium_idle();
// tm_test_reset (medium_idle() held, no other thread in the allocator): unmaps every medium
// segment and puts every arena slot's medium heap back in its zero state.
void medium_reset_for_test();

// True when a request of `requested` bytes at `alignment` fits the medium tier.
bool medium_fits(size_t requested, size_t alignment);

// Frees p in `segment` under the lock of the arena that owns it, whichever thread frees
// (`what` names the operation for misuse reports); the block is coalesced and back in the
// index at once. Frees of the malloc family go through the thread's medium cache first
// (medium_cache.h), which calls this when it does not keep the block.
void medium_free(MediumSegment* segment, void* p, const char* what);

// Medium cache (medium_cache.cc), without the lock: the header of p when p is the start of a
// block of `segment` that is not free in the index, with consistent boundary tags; nullptr
// otherwise (the caller then takes medium_free, which reports the misuse). A block a thread
// holds keeps all of these stable, so the answer is exact for every valid pointer.
struct BlockHeader;
BlockHeader* medium_cacheable_block(MediumSegment* segment, const void* p);

// Usable and requested size of the live block p.
size_t medium_usable_size(MediumSegment* segment, const void* p, const char* what);
size_t medium_requested_size(MediumSegment* segment, const void* p, const char* what);

// Resizes the live block p in place (shrink by splitting off the tail, grow into a free
// successor); true on success.
bool medium_resize_in_place(MediumSegment* segment, void* p, size_t requested);

// True when p lies in the block area of `segment`.
bool medium_owns(const MediumSegment* segment, const void* p);

struct MediumTotals {
  size_t live_blocks;
  size_t usable_bytes;
  size_t free_blocks;
  size_t free_bytes;
  size_t largest_free;
  size_t segments;
};
// Counters for tm_stats over arenas [0, arenas) (their medium locks held).
void medium_totals(MediumTotals* out, unsigned arenas);
// The same for one arena slot (takes its lock).
void medium_arena_totals(unsigned arena, MediumTotals* out);
// The same for one arena slot with its medium lock held, and the committed bytes of its
// segments (less the ranges the idle sweep purged).
void medium_arena_snapshot(unsigned arena, MediumTotals* out, size_t* committed_bytes);

// Takes / releases the medium locks of arenas [0, arenas) in order.
void medium_lock_all(unsigned arenas);
void medium_unlock_all(unsigned arenas);
// Moves the arenas' empty medium segments to the global pool.
void medium_release_cached();

// Purges the memory of retained empty segments that stayed empty since the previous
// sweep, and the interior pages of free blocks of at least 64 KiB that stayed free since
// then (every half purge delay; takes each arena's medium lock).
void medium_sweep_idle();

struct CheckResult;
struct OsBytes;
// Scoped heap check (tm_check_heap_around) of the medium block p lies in and its two
// physical neighbours, under the owning arena's medium lock: boundary tags, block starts,
// coalescing and the free ones' place in the best-fit index. 0 or a tm_check_code.
int medium_check_around(CheckResult* result, MediumSegment* segment, const void* p);
// Heap walk for tm_check_heap (medium locks held): 0 or a tm_check_code.
int medium_check(CheckResult* result, unsigned arenas, size_t* requested_total);
// Adds the address space of every medium segment (pools' included) to *out (heap locks held).
void medium_os_bytes(unsigned arenas, OsBytes* out);

}  // namespace tmalloc
