// Large tier: blocks above kMediumMax get their own mapping, with a header just before the
// user pointer. free gives the mapping to the global pool (segment_pool.h), which unmaps
// or purges it later; realloc resizes the mapping with mremap (no copy).
#pragma once

#include <cstddef>
#include <cstdint>

#include "segment.h"

namespace tmalloc {

struct LargeHeader : SegmentBase {
  uint32_t pool;      // memory pool (tm_heap) slot + 1 that owns the block, 0 = none
  LargeHeader* next;  // list of live large blocks (heap walk)
  LargeHeader* prev;
  char* mapping;        // start of the mapping (segment-aligned)
  size_t mapping_size;  // bytes mapped
  void* user;           // the pointer handed out
  size_t requested;     // bytes requested
};

static_assert(sizeof(LargeHeader) <= 64);

// Allocates `requested` bytes aligned to `alignment` in a mapping of its own.
// Memory is fresh from the OS, hence zero. nullptr + ENOMEM on failure.
// The mapping comes from the global pool when one fits (freed large blocks are reused
// there until the purge delay), otherwise from the OS. `zero`: the requested bytes read as
// zero (free for fresh or purged memory, cleared otherwise).
void* large_alloc(size_t requested, size_t alignment, bool zero, uint32_t pool = 0);

// Memory pools: frees every large block of pool tag `pool` (slot + 1), statistics
// included; returns how many.
size_t large_release_pool(uint32_t pool);
// Live blocks and usable bytes of pool tag `pool`.
void large_pool_totals(uint32_t pool, size_t* blocks, size_t* usable, size_t* mapped);

// Frees the large block p whose address-map entry is `header`.
void large_free(LargeHeader* header, void* p, const char* what);

// Usable / requested size of the live large block p.
size_t large_usable_size(LargeHeader* header, const void* p, const char* what);
size_t large_requested_size(LargeHeader* header, const void* p, const char* what);

// Resizes the large block p to `requested` bytes with mremap (or, where the kernel
// refuses, a new block of the same memory pool and a copy); returns the new pointer
// (contents preserved), or nullptr + ENOMEM leaving p intact.
void* large_resize(LargeHeader* header, void* p, size_t requested);

// True when p lies inside the user area of the block.
bool large_owns(const LargeHeader* header, const void* p);

// True when p was a large block recently unmapped (a likely double free).
bool large_recently_freed(const void* p);

struct LargeTotals {
  size_t live_blocks;
  size_t usable_bytes;
};
void large_totals(LargeTotals* out);

// tm_test_reset: true when no large block is live; and the reset of the tier's counters and
// of the ring of recently freed blocks (large_idle() held, no other thread in the allocator).
bool large_idle();
void large_reset_for_test();

void large_lock();
void large_unlock();

struct CheckResult;
struct OsBytes;
// Scoped heap check (tm_check_heap_around) of the large block whose address-map entry is
// `header`, p inside its mapping (takes the large lock): header, map entries, list links.
int large_check_around(CheckResult* result, LargeHeader* header, const void* p);
// Heap walk for tm_check_heap (large lock held): 0 or a tm_check_code.
int large_check(CheckResult* result, size_t* requested_total);
// Adds the mappings of the live large blocks to *out (large lock held).
void large_os_bytes(OsBytes* out);

}  // namespace tmalloc
