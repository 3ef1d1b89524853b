// Sampled guarded allocations (the `sample_rate` option, GWP-ASan style): about one
// allocation in N is placed in a slot of its own in one 4 MiB region, next to an
// inaccessible page, and its pages are made inaccessible when it is freed. An overflow past
// its usable size, an underflow (slots alternate right and left placement) or a use after
// free then faults; the SIGSEGV handler recognises the address, prints
// "tinymalloc: <kind> at 0x<addr> (<block, allocation and free sites>)" and re-raises.
//
// Region: 64 slots of 64 KiB, each a guard page, 14 data pages, a guard page. A sampled
// block uses the pages it needs at the right end of the data pages (its end on the page end)
// or at their left end (its start on the page start); the other pages stay inaccessible.
// Blocks of up to kGuardedMaxSize bytes and alignments up to a page are sampled. A freed
// slot is reused last (least recently freed first), so a use after free faults for as long
// as possible; its pages stay resident (inaccessible) for the slot's next block, up to 1 MiB
// over all slots. tm_stats counts a sampled block in the tier its size belongs to.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "config.h"
#include "segment.h"

namespace tmalloc {

struct OsBytes;

inline constexpr size_t kGuardedSlots = 64;  // the region's slots (sample_rate)
// The region's slots when debug=guard was on when it was mapped (256 MiB of address space,
// committed only where blocks are).
inline constexpr size_t kGuardedMaxSlots = 4096;
inline constexpr size_t kNoSlot = kGuardedMaxSlots;
inline constexpr size_t kGuardedSlotSize = size_t{64} << 10;
inline constexpr size_t kGuardedDataPages = kGuardedSlotSize / kPageSize - 2;
inline constexpr size_t kGuardedMaxSize = kGuardedDataPages * kPageSize;
static_assert(kGuardedSlots * kGuardedSlotSize == kSegmentSize, "the default region is one chunk-map entry");
static_assert(kGuardedMaxSlots <= 65536, "slot indices are 16 bits in the free order");

// The sample_rate option latched at start-up (0 = off); read by the allocation slow paths.
// Every latch bumps the generation: a thread that sees a new one draws its countdown again.
extern std::atomic<long> g_sample_rate;
extern std::atomic<uint32_t> g_sample_generation;

// Latches the sample_rate option (runtime init; no effect under a sanitizer, which has its
// own SIGSEGV handling and guards).
void guarded_init();

// Allocations until the next sampled one: a pseudo-random count with mean sample_rate,
// drawn from `*state` (per-thread, seeded by guarded_seed).
long guarded_next_interval(uint64_t* state);

// Seed for a thread's sampling generator (deterministic sequence, restarted by tm_test_reset).
uint64_t guarded_seed();

// debug=guard (debug.cc): the region, when mapped from now on, has kGuardedMaxSlots slots, so
// that every block of up to kGuardedMaxSize bytes can have its own guard pages. A region
// already mapped keeps its size (until tm_test_reset unmaps it).
void guarded_set_guard_all(bool on);

// Bounds of the pages opened for the live block p of the region (debug=guard fills and checks
// the bytes around the block in them). False when p is not a live block's start.
bool guarded_block_pages(const void* p, char** first, char** last);

// Whether blocks can be placed in the region at all: not under a sanitizer (which has its own
// SIGSEGV handling and guards). Debug mode asks before it places a zero-size block there.
bool guarded_available();

// A sampled block of `size` bytes with `usable` usable bytes (>= size, a multiple of
// `alignment`), aligned to `alignment` (a power of two up to a page); it counts in the small
// class `class_index` (usable is its size), or among medium blocks with kSmallClassCount.
// `site` is the caller's return address. nullptr when every slot is live or the region
// cannot be mapped: the caller allocates normally. A zero-size block (usable 0, debug mode)
// opens no page: its address is the start of an inaccessible page, so any access faults.
void* guarded_alloc(size_t size, size_t usable, size_t alignment, size_t class_index, const void* site);

// Frees the sampled block p (its owner is the region); reports a double or invalid free.
void guarded_free(const SegmentBase* owner, void* p, const void* site, const char* what);

// Usable and requested size of the live sampled block p; report misuse like guarded_free.
size_t guarded_usable_size(const SegmentBase* owner, const void* p, const char* what);
size_t guarded_requested_size(const SegmentBase* owner, const void* p, const char* what);

// True when p is a usable byte of a live sampled block (tm_owns).
bool guarded_owns(const SegmentBase* owner, const void* p);

// Live sampled blocks for tm_stats: per small class (added to counts[]), of medium sizes,
// their usable bytes, and the usable bytes of the small ones (what requested_bytes counts
// for them without track_requested).
struct GuardedTotals {
  size_t small_live = 0;
  size_t medium_live = 0;
  size_t usable_bytes = 0;
  size_t small_usable_bytes = 0;
};
void guarded_totals(size_t* class_counts, GuardedTotals* out);

// Requested bytes of the live sampled blocks that the requested-bytes counters hold (medium
// sizes always, small ones with track_requested), for tm_check_heap.
size_t guarded_requested();
// Adds the sampled-block region to *out: mapped once the first block was sampled, committed
// in its resident pages. Takes the region's lock (call it before the heap locks).
void guarded_os_bytes(OsBytes* out);

// Fork handlers' lock: taken first. A holder makes OS calls only, never waits for another
// allocator lock, so it may also be taken inside them (tm_check_heap, tm_stats).
void guarded_lock();
void guarded_unlock();

// True when no sampled block is live (tm_test_reset); guarded_reset_for_test unmaps the region
// and puts the previous SIGSEGV action back (guarded_init then latches the restored option).
bool guarded_idle();
void guarded_reset_for_test();

}  // namespace tmalloc
