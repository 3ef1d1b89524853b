// Small tier: blocks up to kSmallMax bytes in 64 KiB runs of one size class, carved from
// 4 MiB small segments. Each run tracks its blocks with 64-bit bitmap words (bit set =
// free); allocation takes the lowest free block with __builtin_ffsll from a hint word.
// Run metadata lives out of band in the segment header, so a block overflow cannot
// corrupt it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "bitmap.h"
#include "config.h"
#include "error.h"
#include "platform.h"
#include "segment.h"
#include "size_class.h"
#include "spinlock.h"

namespace tmalloc {

// Largest block size whose run records slack in single bytes.
inline constexpr size_t kByteSlackMaxBlock = 48;

// Cache-line aligned, with the fields every free reads apart from the ones refills and
// returns write: another thread's refill of the run then does not evict what a freeing
// thread's lock-free validation needs.
struct alignas(kCacheLineSize) RunDesc {
  // Read by every free; written only when the run is assigned to a class.
  uint64_t divider;  // class_divider: offset / block_size and its exactness (divide_run_offset)
  uint32_t block_size;
  uint32_t block_count;
  uint16_t class_index;
  // Byte offset in ThreadCache of the bin free's fast path pushes this run's blocks onto: the
  // class's bin, or for a memory pool's run the pool bin, whose limit is always 0 (its blocks
  // go back to the pool, never into a cache). Spares the fast path a test of the arena.
  uint16_t cache_bin_offset;
  uint8_t in_use;  // assigned to a class
  // Written under the class lock as blocks leave and return.
  alignas(kCacheLineSize) RunDesc* next;  // on the class's partial list (runs with free blocks)
  RunDesc* prev;
  uint32_t free_count;
  uint32_t hint_word;  // no free bit below this word
  uint32_t watermark;  // blocks at or above this index were never handed out (zeroed)
  uint8_t on_partial;  // linked on the class's partial list
  // Bit set = block free in the run. Blocks in thread caches and remote-free lists are
  // clear here (the run handed them out). Written under the class lock; free's lock-free
  // validation reads single words, so every access is a relaxed atomic (see bitmap.h).
  uint64_t bitmap[kRunBitmapWords];
  // Slack (block_size - requested) of each live block: 8-bit entries for classes of at most
  // kByteSlackMaxBlock bytes (up to 4096 blocks), 16-bit entries otherwise (at most 1024
  // blocks). Keeps the requested-bytes statistic exact. A block in a thread cache or a
  // remote-free list records slack == block_size (0 requested bytes). Written by the
  // thread that owns the block, read by heap walks: relaxed atomics.
  union {
    uint8_t bytes[4096];
    uint16_t halves[2048];
  } slack;
};

struct SmallSegment : SegmentBase {
  uint32_t arena;  // owning arena (its class locks guard the runs); read by every free
  // The rest changes under the arena's segments lock: on another cache line than the
  // fields above, which every free reads.
  alignas(kCacheLineSize) SmallSegment* next;  // the arena's segment list: segments with free runs first
  SmallSegment* prev;
  uint64_t free_runs;   // bit i: run i is not assigned to any class
  uint64_t clean_runs;  // bit i: run i's memory is untouched since it was mapped (zero)
  // Idle sweep (small_sweep_idle): set when the segment was found empty by a sweep; an
  // empty segment still marked at the next sweep has its runs purged (`purged`).
  uint8_t sweep_mark;
  uint8_t purged;
  // Free runs of a segment in use: bit i set when the last sweep found run i free and
  // dirty (cleared when the run is taken); such a run still free at the next sweep has its
  // memory purged and its bit moves to purged_runs (and clean_runs: it reads as zero).
  uint64_t idle_runs;
  uint64_t purged_runs;
  RunDesc runs[kRunsPerSegment];
};

// Runs at the start of a segment occupied by its header.
inline constexpr size_t kSmallReservedRuns = (sizeof(SmallSegment) + kRunSize - 1) / kRunSize;
// Bit mask of the runs that can hold blocks.
inline constexpr uint64_t kSmallUsableRunsMask = ~uint64_t{0} << kSmallReservedRuns;

// Largest slack a run of this block size can record.
constexpr size_t slack_capacity(size_t block_size) { return block_size <= kByteSlackMaxBlock ? 255 : 65535; }

// Records the slack of block `index` (owner of the block, or class lock held).
TM_ALWAYS_INLINE void set_slack(RunDesc* run, size_t index, size_t slack) {
  if (run->block_size <= kByteSlackMaxBlock) {
    __atomic_store_n(&run->slack.bytes[index], static_cast<uint8_t>(slack), __ATOMIC_RELAXED);
  } else {
    __atomic_store_n(&run->slack.halves[index], static_cast<uint16_t>(slack), __ATOMIC_RELAXED);
  }
}

// Slack recorded for block `index`.
TM_ALWAYS_INLINE size_t get_slack(const RunDesc* run, size_t index) {
  if (run->block_size <= kByteSlackMaxBlock) return __atomic_load_n(&run->slack.bytes[index], __ATOMIC_RELAXED);
  return __atomic_load_n(&run->slack.halves[index], __ATOMIC_RELAXED);
}

// Whether a run is assigned to a class. Read without the class lock by tm_owns and by
// free's validation, so it is accessed atomically: the release on publish pairs with the
// acquire here, making the run's fields (written before) visible to the reader.
TM_ALWAYS_INLINE bool run_in_use(const RunDesc* run) { return __atomic_load_n(&run->in_use, __ATOMIC_ACQUIRE) != 0; }

// Where a pointer lands inside a small segment.
struct BlockRef {
  RunDesc* run;
  size_t index;
};

// Reports a pointer that is not the start of a block of an assigned run.
[[noreturn]] TM_NOINLINE void report_bad_small_pointer(SmallSegment* segment, const void* p, const char* what);

// Run descriptor and index of a block known to be valid (cached or remote-freed).
TM_ALWAYS_INLINE BlockRef block_ref(void* block) {
  auto* segment = reinterpret_cast<SmallSegment*>(addr_of(block) & ~(kSegmentSize - 1));
  RunDesc* run = &segment->runs[(addr_of(block) >> kRunShift) & (kRunsPerSegment - 1)];
  return BlockRef{run, divide_run_offset(addr_of(block) & (kRunSize - 1), run->divider).index};
}

// Locates the block p starts, without locks, reporting misuse for pointers into metadata,
// unassigned runs or the middle of a block. Safe for any p inside `segment`. The bound
// check covers the first two: a run that is not in use has a block count of 0 (never
// assigned, as the header's first kSmallReservedRuns runs, or set_run_unused).
TM_ALWAYS_INLINE BlockRef small_locate(SmallSegment* segment, const void* p, const char* what) {
  const uintptr_t offset_in_segment = addr_of(p) - addr_of(segment);
  RunDesc* run = &segment->runs[offset_in_segment >> kRunShift];
  const RunDivision division = divide_run_offset(offset_in_segment & (kRunSize - 1), run->divider);
  if (TM_UNLIKELY(!division.exact || division.index >= run->block_count)) report_bad_small_pointer(segment, p, what);
  return BlockRef{run, division.index};
}

// Reports a free of a block that is already free (in its run, a thread cache or a
// remote-free list); `what` names the operation.
[[noreturn]] TM_NOINLINE void report_small_double_free(BlockRef ref, const void* p, const char* what);

// Allocates a block of class `class_index` for `requested` bytes from arena `arena`
// without a thread cache (every call takes the class lock); zeroes the first `requested`
// bytes when `zero` (skipped for never-used memory). nullptr + ENOMEM on failure.
void* small_alloc(unsigned arena, size_t class_index, size_t requested, bool zero);

// Frees p, which lies in `segment`, straight into its run under the owning arena's class
// lock (no thread cache); `what` names the operation for misuse reports.
void small_free(SmallSegment* segment, void* p, const char* what);

// Frees the small block p of an arena's segment (validated by the caller) onto that
// arena's remote-free list, without a lock: the next refill of the arena hands it out
// behind the fresh blocks of its batch.
void small_defer_free(SmallSegment* segment, void* p);

// Moves up to `max` free blocks of class `class_index` from arena `arena` (its remote-free
// list first, then its runs) onto the singly linked list *head (link in each block's first
// word, the free-block key in its second). Returns how many; 0 + ENOMEM when none could be
// had. `contended` is set when the arena's class lock was busy.
size_t small_refill(unsigned arena, size_t class_index, void** head, size_t max, bool* contended);

// How small_return hands blocks back.
enum class ReturnRoute : bool {
  // Every block onto its arena's lock-free remote-free list (one CAS per run of same-arena
  // blocks), which that arena's next refill takes straight into a cache. The returning
  // thread holds no class lock, so a class lock is contended only by two threads
  // refilling from one arena: the signal that moves a thread to another arena.
  kRemoteLists,
  // Into their runs: blocks of arena `home` under its class lock, other arenas' blocks
  // under theirs when free, else onto their remote-free lists. For a thread that exits or
  // flushes, whose blocks should not wait for a refill that may never come.
  kRuns,
};

// Returns a list of `count` cached blocks of class `class_index` (linked as small_refill
// links them) to the heap by `route`; `home` is the calling thread's arena.
void small_return(size_t class_index, void* head, size_t count, unsigned home, ReturnRoute route);

// Frees every remote-free list into its runs (tm_release_cached, heap checks of tests).
void small_drain_remote();

// Usable size of the live block p in `segment` (reports misuse otherwise).
size_t small_usable_size(SmallSegment* segment, const void* p, const char* what);

// Requested size recorded for the live block p.
size_t small_requested_size(SmallSegment* segment, const void* p, const char* what);

// Tries to resize the live block p in place to `requested` bytes; true on success.
bool small_resize_in_place(SmallSegment* segment, void* p, size_t requested);

// True when p points inside a block area of an assigned run.
bool small_owns(const SmallSegment* segment, const void* p);

// Smallest class >= max(size, 64) whose blocks are all aligned to `alignment`
// (class sizes that are multiples of it); kSmallClassCount when none.
size_t small_class_for_alignment(size_t size, size_t alignment);

// Counters for tm_stats (call with every class lock held, see small_lock_all). Blocks
// handed out by runs, per class, over all arenas: live blocks plus blocks sitting in
// thread caches and remote-free lists.
struct SmallTotals {
  size_t handed_out[kSmallClassCount];
  size_t remote[kSmallClassCount];  // of those, blocks in remote-free lists
  size_t segments;
};
void small_totals(SmallTotals* out);

// Takes / releases every small-tier lock of arenas [0, arenas) in the global order
// (per arena: classes, then segments).
void small_lock_all(unsigned arenas);
void small_unlock_all(unsigned arenas);

// Returns the arenas' empty small segments to the global pool.
void small_release_cached();

// Memory pools: releases every segment of arena slot `arena` to the global pool at once and
// returns the requested bytes its live blocks held. No other thread may use the slot.
size_t small_reset_arena(unsigned arena);
// tm_test_reset: true when no small block is out of its run in any arena (none live, cached
// or in a remote-free list; flush the caller's cache and drain the remote lists first).
bool small_idle();
// tm_test_reset (small_idle() held, no other thread in the allocator): unmaps every small
// segment of every arena slot and puts every class and arena back in its zero state.
void small_reset_for_test();
// Blocks handed out, their usable bytes and the segments of one arena slot (takes its locks).
struct SmallArenaTotals {
  size_t live_blocks;
  size_t usable_bytes;
  size_t segments;
};
void small_arena_totals(unsigned arena, SmallArenaTotals* out);

// Purges the memory of empty segments an arena retains that stayed empty since the
// previous sweep (called every half purge delay; takes each arena's segments lock).
void small_sweep_idle();

// Heap walk for tm_check_heap (locks must be held): returns 0 or a tm_check_code and
// describes the violation in `message`/`address`.
struct CheckResult;
struct OsBytes;
int small_check(CheckResult* result, unsigned arenas);

// Scoped heap check (tm_check_heap_around) of the run of `segment` that p lies in, under
// that run's class lock and the arena's segments lock: its descriptor, bitmap, partial-list
// links and its class's remote-free list. 0 or a tm_check_code; *class_of_run is the run's
// class (kSmallClassCount when p is in no assigned run).
int small_check_around(CheckResult* result, SmallSegment* segment, const void* p, size_t* class_of_run);

// Sum of requested bytes of live small blocks (locks held); used by the stats check.
size_t small_requested_walk(
    unsigned arenas);  // Adds the address space of every small segment (pools' included) to *out (heap locks held).
void small_os_bytes(unsigned arenas, OsBytes* out);

// Validates one block held in a cache or remote list of class `class_index` (the key and
// the run state); 0 or a tm_check_code.
int small_check_cached_block(CheckResult* result, const void* block, size_t class_index);

}  // namespace tmalloc
