// Small tier: size-class runs with bitmap allocation, per arena (see small.h).
#include "small.h"

#include <errno.h>

#include <atomic>
#include <cstring>

#include "arena.h"
#include "chunk_map.h"
#include "error.h"
#include "free_block.h"
#include "linked_list.h"
#include "options.h"
#include "os.h"
#include "plant.h"
#include "platform.h"
#include "sanitizer.h"
#include "segment_pool.h"
#include "small_arena.h"
#include "small_stats.h"
#include "stats.h"
#include "thread_cache.h"
#include "tinymalloc.h"

namespace tmalloc {

// Zero-initialised, constexpr-constructible: no global constructor runs.
constinit SmallArena g_arenas[kArenaSlots]{};

namespace {

// Index of run `run` within its segment.
size_t run_index(const SmallSegment* segment, const RunDesc* run) { return static_cast<size_t>(run - segment->runs); }

// Segment containing an address of a run descriptor or block.
SmallSegment* segment_of(const void* p) { return reinterpret_cast<SmallSegment*>(addr_of(p) & ~(kSegmentSize - 1)); }

// Address of block `index` of `run`.
char* block_address(RunDesc* run, size_t index) {
  SmallSegment* segment = segment_of(run);
  return run_base(segment, run_index(segment, run)) + index * run->block_size;
}

void set_run_in_use(RunDesc* run, bool in_use) {
  __atomic_store_n(&run->in_use, static_cast<uint8_t>(in_use ? 1 : 0), __ATOMIC_RELEASE);
}

// Marks a run unassigned. Its block count drops to 0 as well: small_locate's bound check
// (index < block_count) then rejects every pointer into it, which spares the fast free path
// a separate test of in_use.
void set_run_unused(RunDesc* run) {
  run->block_count = 0;
  set_run_in_use(run, false);
}

// Moves a segment to the front (it has free runs) or the back (it has none) of its
// arena's list (segments lock held).
void segment_requeue(SmallArena& arena, SmallSegment* segment) {
  list_unlink(arena.segments, segment, "small segment list");
  segment->next = segment->prev = nullptr;
  if ((segment->free_runs & kSmallUsableRunsMask) != 0 || arena.segments == nullptr) {
    segment->next = arena.segments;
    if (arena.segments != nullptr) arena.segments->prev = segment;
    arena.segments = segment;
    return;
  }
  SmallSegment* tail = arena.segments;
  while (tail->next != nullptr) tail = tail->next;
  tail->next = segment;
  segment->prev = tail;
}

// Takes a segment from the global pool or maps a new one, and registers it for arena
// `arena_index` (segments lock held).
SmallSegment* segment_create(unsigned arena_index) {
  if (!chunk_map_ensure()) return nullptr;
  const PooledSegment pooled = pool_take(kSegmentSize, kSegmentSize);
  bool clean = true;
  SmallSegment* segment;
  if (pooled.address != nullptr) {
    segment = static_cast<SmallSegment*>(pooled.address);
    clean = pooled.purged;
  } else {
    segment = static_cast<SmallSegment*>(os_map_aligned(kSegmentSize, kSegmentSize));
    if (segment == nullptr) return nullptr;
  }
  SmallArena& arena = g_arenas[arena_index];
  segment->magic = kSegmentMagic;
  segment->kind = SegmentKind::kSmall;
  segment->arena = arena_index;
  segment->free_runs = kSmallUsableRunsMask;
  // A pooled segment that was not purged holds old data: its runs are not clean.
  segment->clean_runs = clean ? kSmallUsableRunsMask : 0;
  segment->sweep_mark = 0;
  segment->purged = 0;
  segment->idle_runs = 0;
  segment->purged_runs = 0;
  // Fresh or purged memory reads as zero, which is every run's initial state (not in use,
  // no blocks, on no partial list). Writing it anyway would make the pages of all 64 run descriptors
  // (290 KiB) resident in every segment, used runs or not; they stay untouched until
  // run_acquire takes their run.
  if (!clean) {
    for (RunDesc& run : segment->runs) {
      set_run_unused(&run);
      run.on_partial = 0;
    }
  }
  // Under ASan a run's memory is poisoned when the run is taken (run_acquire) and stays so
  // but for the blocks handed out: poisoning the whole run area here would write 480 KiB of
  // shadow for every new segment, however few runs it will serve.
  chunk_map_set(segment, kSegmentSize, segment);
  segment->prev = nullptr;
  segment->next = arena.segments;
  if (arena.segments != nullptr) arena.segments->prev = segment;
  arena.segments = segment;
  ++arena.segment_count;
  ++arena.empty_segments;
  return segment;
}

// Counts the runs the idle sweep purged one by one as committed again (a whole-segment
// purge or the pool takes over their accounting).
void forget_purged_runs(SmallSegment* segment) {
  os_note_recommitted(static_cast<size_t>(__builtin_popcountll(segment->purged_runs)) * kRunSize);
  segment->purged_runs = 0;
  segment->idle_runs = 0;
}

// The pool accounts a given segment as committed: a segment the idle sweep purged counts
// its run area as committed again before it goes there.
void note_unpurged(SmallSegment* segment) {
  forget_purged_runs(segment);
  if (segment->purged == 0) return;
  segment->purged = 0;
  os_note_recommitted(kSegmentSize - kSmallReservedRuns * kRunSize);
}

// Unregisters an empty segment and moves it to the global pool (segments lock held).
void segment_destroy(SmallArena& arena, SmallSegment* segment) {
  list_unlink(arena.segments, segment, "small segment list");
  chunk_map_set(segment, kSegmentSize, nullptr);
  --arena.segment_count;
  --arena.empty_segments;
  note_unpurged(segment);
  pool_give(segment, kSegmentSize);  // poisons its edges under ASan
}

// Takes a free run of arena `arena_index` for class `class_index` and initialises it
// (class lock held).
RunDesc* run_acquire(unsigned arena_index, size_t class_index) {
  SmallArena& arena = g_arenas[arena_index];
  LockGuard guard(arena.segments_lock);
  SmallSegment* segment = arena.segments;
  if (segment == nullptr || (segment->free_runs & kSmallUsableRunsMask) == 0) {
    segment = segment_create(arena_index);
    if (segment == nullptr) return nullptr;
  }
  if ((segment->free_runs & kSmallUsableRunsMask) == kSmallUsableRunsMask) {
    --arena.empty_segments;
    segment->sweep_mark = 0;
    if (segment->purged != 0) {
      segment->purged = 0;
      os_note_recommitted(kSegmentSize - kSmallReservedRuns * kRunSize);
    }
  }
  // Prefer clean runs: their blocks need no zeroing for calloc.
  const uint64_t candidates = segment->free_runs & kSmallUsableRunsMask;
  const uint64_t clean = candidates & segment->clean_runs;
  const size_t index = static_cast<size_t>(__builtin_ctzll(clean != 0 ? clean : candidates));
  const uint64_t bit = uint64_t{1} << index;
  segment->free_runs &= ~bit;
  const bool was_clean = (segment->clean_runs & bit) != 0;
  segment->clean_runs &= ~bit;
  segment->idle_runs &= ~bit;
  if ((segment->purged_runs & bit) != 0) {
    segment->purged_runs &= ~bit;
    os_note_recommitted(kRunSize);  // written again by its new blocks
  }
  if ((segment->free_runs & kSmallUsableRunsMask) == 0) segment_requeue(arena, segment);

  RunDesc* run = &segment->runs[index];
  poison(run_base(segment, index), kRunSize);  // its blocks are unaddressable until handed out
  run->next = run->prev = nullptr;
  run->block_size = static_cast<uint32_t>(class_size(class_index));
  run->block_count = blocks_per_run(class_index);
  run->free_count = run->block_count;
  run->divider = class_divider(class_index);
  run->cache_bin_offset = cache_bin_offset(segment->arena < kMaxArenas ? class_index : kPoolBin);
  run->hint_word = 0;
  run->watermark = was_clean ? 0 : run->block_count;
  run->class_index = static_cast<uint16_t>(class_index);
  run->on_partial = 0;
  bitmap_fill(run->bitmap, kRunBitmapWords, run->block_count);
  set_run_in_use(run, true);
  return run;
}

// Returns an empty run to its segment; moves the segment to the global pool when the
// arena keeps more empty segments than the `arena_retain` option (class lock held).
void run_release(RunDesc* run) {
  SmallSegment* segment = segment_of(run);
  SmallArena& arena = g_arenas[segment->arena];
  LockGuard guard(arena.segments_lock);
  const size_t index = run_index(segment, run);
  set_run_unused(run);
  const bool had_free_runs = (segment->free_runs & kSmallUsableRunsMask) != 0;
  segment->free_runs |= uint64_t{1} << index;
  if (!had_free_runs) segment_requeue(arena, segment);
  if ((segment->free_runs & kSmallUsableRunsMask) == kSmallUsableRunsMask) {
    ++arena.empty_segments;
    if (arena.empty_segments > static_cast<size_t>(option(OptionId::kArenaRetain))) segment_destroy(arena, segment);
  }
}

// Links a run at the head of its class's partial list.
void partial_push(SmallClass& cls, RunDesc* run) {
  run->prev = nullptr;
  run->next = cls.partial;
  if (cls.partial != nullptr) cls.partial->prev = run;
  cls.partial = run;
  run->on_partial = 1;
}

// Unlinks a run from its class's partial list.
void partial_remove(SmallClass& cls, RunDesc* run) {
  list_unlink(cls.partial, run, "partial-run list");
  run->next = run->prev = nullptr;
  run->on_partial = 0;
}

// Reports a run whose bitmap offers block `index` at or past its block count (never returns).
[[noreturn]] TM_NOINLINE void report_corrupted_run(const RunDesc* run, size_t index) {
  TextBuffer detail;
  detail.str("its bitmap offers block ").dec(index).str(" of a run of ").dec(run->block_count);
  detail.str(" blocks of ").dec(run->block_size).str(" bytes: metadata written over?");
  report_misuse("corrupted run bitmap", run, detail);
}

// Takes the lowest free block of the class's first partial run, acquiring a run when
// none has free blocks (class lock held). Returns the block, or nullptr when no memory.
char* take_block(unsigned arena_index, size_t class_index, SmallClass& cls, bool* fresh) {
  RunDesc* run = cls.partial;
  if (TM_UNLIKELY(run == nullptr)) {
    run = run_acquire(arena_index, class_index);
    if (run == nullptr) return nullptr;
    ++cls.runs;
    partial_push(cls, run);
  }
  size_t hint = run->hint_word;
  const size_t words = (run->block_count + 63) / 64;
  const size_t index = bitmap_find_first(run->bitmap, words, &hint);
  // A run on the partial list has a free block below its count; anything else is a bitmap or
  // count that was written over, and handing it out would give a block outside the run.
  if (TM_UNLIKELY(index >= run->block_count)) report_corrupted_run(run, index);
  run->hint_word = static_cast<uint32_t>(hint);
  bitmap_clear(run->bitmap, TM_PLANT_IF(4) ? (index ^ 1) : index);
  --run->free_count;
  if (run->free_count == 0) partial_remove(cls, run);
  *fresh = index >= run->watermark;
  if (*fresh) run->watermark = static_cast<uint32_t>(index + 1);
  ++cls.handed_out;
  if (cls.handed_out > cls.peak) cls.peak = cls.handed_out;
  return block_address(run, index);
}

// Puts block `index` of `run` back into the run (class lock held): the free-block key is
// written so a later free of it is named a double free.
void free_to_run(SmallClass& cls, RunDesc* run, size_t index) {
  char* block = block_address(run, index);
  free_block_write(block, nullptr);
  bitmap_set(run->bitmap, index);
  if (index / 64 < run->hint_word) run->hint_word = static_cast<uint32_t>(index / 64);
  ++run->free_count;
  --cls.handed_out;
  poison(block, run->block_size);
  if (run->free_count == 1) partial_push(cls, run);  // it was full
  if (run->free_count == run->block_count && !(cls.partial == run && run->next == nullptr)) {
    // Empty and not the class's only partial run (kept to avoid map/unmap thrash).
    partial_remove(cls, run);
    --cls.runs;
    run_release(run);
  }
}

// Takes the whole remote-free list of a class (its lock held).
void* take_remote(SmallClass& cls) {
  if (cls.remote.load(std::memory_order_relaxed) == nullptr) return nullptr;
  if (TM_PLANT_IF(12)) {
    // Planted bug 12: read and reset without an atomic exchange; a push in between is lost.
    void* head = cls.remote.load(std::memory_order_relaxed);
    cls.remote.store(nullptr, std::memory_order_relaxed);
    return head;
  }
  // acquire: pairs with the pushers' release; their link writes in the blocks are visible.
  return cls.remote.exchange(nullptr, TM_PLANT_IF(11) ? std::memory_order_relaxed : std::memory_order_acquire);
}

// Frees every block of a list taken from the remote-free list into its run (lock held).
void drain_list_to_runs(SmallClass& cls, void* head) {
  while (head != nullptr) {
    void* next = free_block_next(head);
    const BlockRef ref = block_ref(head);
    free_to_run(cls, ref.run, ref.index);
    head = next;
  }
}

// Pushes the chain first..last (linked, keyed) onto a class's remote-free list.
void push_remote(SmallClass& cls, void* first, void* last) {
  void* head = cls.remote.load(std::memory_order_relaxed);
  do {
    free_block_set_next(last, head);
    // release: the chain's link writes happen-before the drainer's acquire exchange.
  } while (!cls.remote.compare_exchange_weak(
      head, first, TM_PLANT_IF(11) ? std::memory_order_relaxed : std::memory_order_release, std::memory_order_relaxed));
}

}  // namespace

void report_bad_small_pointer(SmallSegment* segment, const void* p, const char* what) {
  const uintptr_t offset_in_segment = addr_of(p) - addr_of(segment);
  const size_t index_of_run = offset_in_segment >> kRunShift;
  if (index_of_run < kSmallReservedRuns) report_misuse(what, p, "pointer into allocator metadata");
  const RunDesc* run = &segment->runs[index_of_run];
  if (!run_in_use(run)) report_misuse(what, p, "pointer into an unused run: not a live block");
  TextBuffer detail;
  detail.str("inside a block: not its start; small block of ").dec(run->block_size).str(" bytes");
  report_misuse(what, p, detail);
}

void report_small_double_free(BlockRef ref, const void* p, const char* what) {
  ReportBlock block;
  block.size = ref.run->block_size;
  report_context(block);
  TextBuffer detail;
  detail.str("small block of ").dec(ref.run->block_size).str(" bytes, class ").dec(ref.run->class_index);
  detail.str(bitmap_test(ref.run->bitmap, ref.index) ? ", free in its run" : ", in a free list");
  report_misuse(std::strcmp(what, "invalid free") == 0 ? "double free" : what, p, detail);
}

void* small_alloc(unsigned arena_index, size_t class_index, size_t requested, bool zero) {
  arena_note_used(arena_index);
  SmallClass& cls = g_arenas[arena_index].classes[class_index];
  cls.lock.lock();
  cls.returned_last = false;
  bool fresh = false;
  char* block = take_block(arena_index, class_index, cls, &fresh);
  if (block == nullptr) {
    cls.lock.unlock();
    errno = ENOMEM;
    return nullptr;
  }
  const BlockRef ref = block_ref(block);
  set_slack(ref.run, ref.index, ref.run->block_size - requested);
  free_block_clear_key(block);
  if (small_tracks_requested()) stats_add_requested(requested);
  cls.lock.unlock();

  unpoison(block, requested);
  if (zero && !fresh && !TM_PLANT_IF(7)) std::memset(block, 0, requested);
  return block;
}

void small_free(SmallSegment* segment, void* p, const char* what) {
  const BlockRef ref = small_locate(segment, p, what);
  SmallClass& cls = g_arenas[segment->arena].classes[ref.run->class_index];
  cls.lock.lock();
  cls.returned_last = false;
  // The run cannot change while it holds a live block; re-validate under the lock (a
  // changed run means p was not live).
  if (!run_in_use(ref.run) || bitmap_test(ref.run->bitmap, ref.index) || free_block_has_key(p) ||
      &g_arenas[segment->arena].classes[ref.run->class_index] != &cls) {
    cls.lock.unlock();
    if (!run_in_use(ref.run)) report_bad_small_pointer(segment, p, what);
    report_small_double_free(ref, p, what);
  }
  const size_t requested = ref.run->block_size - get_slack(ref.run, ref.index);
  free_to_run(cls, ref.run, ref.index);
  if (small_tracks_requested()) stats_sub_requested(requested);
  cls.lock.unlock();
}

size_t small_refill(unsigned arena_index, size_t class_index, void** head, size_t max, bool* contended) {
  arena_note_used(arena_index);
  SmallClass& cls = g_arenas[arena_index].classes[class_index];
  if (!cls.lock.try_lock()) {
    const bool by_return = cls.returners.load(std::memory_order_relaxed) != 0;
    cls.lock.lock();
    if (!by_return && !cls.returned_last) *contended = true;
  }
  cls.returned_last = false;
  // Blocks other threads freed to this arena are taken first: they are still handed out,
  // so they move to the cache without touching any bitmap.
  void* remote_first = take_remote(cls);
  void* remote_last = nullptr;
  void* rest = remote_first;
  size_t count = 0;
  while (rest != nullptr && count < max) {
    remote_last = rest;
    ++count;
    rest = free_block_next(rest);
  }
  if (remote_last != nullptr) {
    free_block_set_next(remote_last, nullptr);
  } else {
    remote_first = nullptr;
  }
  drain_list_to_runs(cls, rest);
  // Then fresh blocks from the runs, in address order. They go to the front of the batch,
  // the remote blocks behind them: those were last written on other cores, and a thread
  // that started out by freeing memory handed to it (small_defer_free) must not allocate
  // its next blocks on cache lines another thread may still be using (passive false
  // sharing).
  void* first = nullptr;
  void* last = nullptr;
  while (count < max) {
    bool fresh = false;
    char* block = take_block(arena_index, class_index, cls, &fresh);
    if (block == nullptr) break;
    const BlockRef ref = block_ref(block);
    set_slack(ref.run, ref.index, ref.run->block_size);  // cached: 0 requested bytes
    free_block_write(block, nullptr);
    if (last == nullptr) {
      first = block;
    } else {
      free_block_set_next(last, block);
    }
    last = block;
    ++count;
  }
  if (last == nullptr) {
    first = remote_first;
  } else {
    free_block_set_next(last, remote_first);
  }
  cls.lock.unlock();
  if (count == 0) errno = ENOMEM;
  *head = first;
  return count;
}

namespace {

// Takes the class lock to return blocks: waits for it when `wait`, else takes it only when
// free. The returner count goes up first, so a refill that meets the lock busy knows why.
bool return_lock(SmallClass& cls, bool wait) {
  cls.returners.fetch_add(1, std::memory_order_relaxed);
  if (wait) {
    cls.lock.lock();
    return true;
  }
  if (cls.lock.try_lock()) return true;
  cls.returners.fetch_sub(1, std::memory_order_relaxed);
  return false;
}

// Moves the remote-free list into the runs too and releases a lock return_lock took.
void return_unlock(SmallClass& cls) {
  drain_list_to_runs(cls, take_remote(cls));
  cls.returned_last = true;
  cls.lock.unlock();
  cls.returners.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace

void small_return(size_t class_index, void* head, size_t count, unsigned home, ReturnRoute route) {
  (void)count;
  SmallClass* locked = nullptr;
  void* block = head;
  while (block != nullptr) {
    const unsigned owner = segment_of(block)->arena;
    SmallClass& cls = g_arenas[owner].classes[class_index];
    if (&cls != locked) {
      if (locked != nullptr) {
        return_unlock(*locked);
        locked = nullptr;
      }
      if (return_lock(cls, route == ReturnRoute::kRuns && owner == home)) {
        locked = &cls;
      } else {
        // Through the owner: hand the run of consecutive blocks of that arena over
        // through its remote-free list; the owner frees them at its next refill.
        void* last = block;
        void* next = free_block_next(block);
        while (next != nullptr && segment_of(next)->arena == owner) {
          last = next;
          next = free_block_next(next);
        }
        push_remote(cls, block, last);
        block = next;
        continue;
      }
    }
    void* next = free_block_next(block);
    const BlockRef ref = block_ref(block);
    free_to_run(cls, ref.run, ref.index);
    block = next;
  }
  if (locked != nullptr) return_unlock(*locked);
}

void small_defer_free(SmallSegment* segment, void* p) {
  const BlockRef ref = block_ref(p);
  poison(p, ref.run->block_size);
  free_block_write(p, nullptr);
  push_remote(g_arenas[segment->arena].classes[ref.run->class_index], p, p);
}

void small_drain_remote() {
  const unsigned arenas = arenas_used();
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    for (SmallClass& cls : g_arenas[a].classes) {
      if (cls.remote.load(std::memory_order_relaxed) == nullptr) continue;
      return_lock(cls, true);
      return_unlock(cls);
    }
  }
}

// Validates that p is a live small block (no lock: the caller owns the block).
BlockRef live_block(SmallSegment* segment, const void* p, const char* what) {
  const BlockRef ref = small_locate(segment, p, what);
  if (bitmap_test(ref.run->bitmap, ref.index) || free_block_has_key(p)) {
    TextBuffer detail;
    detail.str("block is free (small block of ").dec(ref.run->block_size).str(" bytes)");
    report_misuse(what, p, detail);
  }
  return ref;
}

size_t small_usable_size(SmallSegment* segment, const void* p, const char* what) {
  const BlockRef ref = live_block(segment, p, what);
  const size_t size = ref.run->block_size;
  // The caller may now use every usable byte: make the slack addressable under ASan.
  unpoison(p, size);
  return TM_PLANT_IF(9) ? size + 16 : size;
}

size_t small_requested_size(SmallSegment* segment, const void* p, const char* what) {
  const BlockRef ref = live_block(segment, p, what);
  return ref.run->block_size - get_slack(ref.run, ref.index);
}

bool small_resize_in_place(SmallSegment* segment, void* p, size_t requested) {
  const BlockRef ref = small_locate(segment, p, "invalid realloc");
  RunDesc* run = ref.run;
  if (bitmap_test(run->bitmap, ref.index) || free_block_has_key(p)) report_small_double_free(ref, p, "invalid realloc");
  const size_t block_size = run->block_size;
  // In place while the request still fits and would not waste more than half the block.
  const bool fits = requested <= block_size && block_size - requested <= slack_capacity(block_size) &&
                    (requested * 2 > block_size || block_size <= 32);
  if (!fits) return false;
  const size_t old_requested = block_size - get_slack(run, ref.index);
  if (small_tracks_requested()) {
    // A heap check compares the requested-bytes counters with the blocks only while no other
    // thread has a cache (it holds the registry lock, so none can set one up meanwhile). This
    // thread's first call may be this one: its cache is set up before the block changes. A
    // thread without a cache changes block and counter under the class lock, which the check
    // holds too, so it never sees one without the other.
    cache_ensure_current();
    if (cache_active_current()) {
      stats_sub_requested(old_requested);
      stats_add_requested(requested);
      set_slack(run, ref.index, block_size - requested);
    } else {
      LockGuard guard(g_arenas[segment->arena].classes[run->class_index].lock);
      stats_sub_requested(old_requested);
      stats_add_requested(requested);
      set_slack(run, ref.index, block_size - requested);
    }
  } else {
    set_slack(run, ref.index, block_size - requested);
  }
  unpoison(p, requested);
  poison(static_cast<char*>(p) + requested, block_size - requested);
  return true;
}

bool small_owns(const SmallSegment* segment, const void* p) {
  const size_t index_of_run = (addr_of(p) - addr_of(segment)) >> kRunShift;
  if (index_of_run < kSmallReservedRuns) return false;
  const RunDesc* run = &segment->runs[index_of_run];
  // Ownership is a snapshot answer by nature: a run released concurrently may answer either way.
  if (!run_in_use(run)) return false;
  const uint64_t offset = addr_of(p) & (kRunSize - 1);
  return offset < uint64_t{run->block_count} * run->block_size;
}

size_t small_class_for_alignment(size_t size, size_t alignment) {
  const size_t start = size_to_class(size < 64 ? 64 : size);
  for (size_t c = start; c < kSmallClassCount; ++c) {
    if (class_size(c) % alignment == 0) return c;
  }
  return kSmallClassCount;
}

TM_NO_COVERAGE void small_lock_all(unsigned arenas) {
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    for (SmallClass& cls : g_arenas[a].classes) cls.lock.lock();
    g_arenas[a].segments_lock.lock();
  }
}

TM_NO_COVERAGE void small_unlock_all(unsigned arenas) {
  for (unsigned a = arenas; a-- > 0;) {
    if (!arena_touched(a)) continue;
    g_arenas[a].segments_lock.unlock();
    for (size_t i = kSmallClassCount; i-- > 0;) g_arenas[a].classes[i].lock.unlock();
  }
}

TM_NO_COVERAGE void small_totals(SmallTotals* out) {
  std::memset(out, 0, sizeof *out);
  const unsigned arenas = arenas_used();
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    for (size_t c = 0; c < kSmallClassCount; ++c) {
      SmallClass& cls = g_arenas[a].classes[c];
      out->handed_out[c] += cls.handed_out;
      // Safe to walk under the class lock: pushers only prepend, and nothing is popped
      // while the lock is held.
      for (void* block = cls.remote.load(std::memory_order_acquire); block != nullptr; block = free_block_next(block)) {
        ++out->remote[c];
      }
    }
    out->segments += g_arenas[a].segment_count;
  }
}

void small_release_cached() {
  small_drain_remote();
  const unsigned arenas = arenas_used();
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    SmallArena& arena = g_arenas[a];
    LockGuard guard(arena.segments_lock);
    for (SmallSegment* segment = arena.segments; segment != nullptr;) {
      SmallSegment* next = segment->next;
      if ((segment->free_runs & kSmallUsableRunsMask) == kSmallUsableRunsMask) segment_destroy(arena, segment);
      segment = next;
    }
  }
}

size_t small_reset_arena(unsigned arena_index) {
  SmallArena& arena = g_arenas[arena_index];
  for (SmallClass& cls : arena.classes) cls.lock.lock();
  size_t requested = 0;
  {
    LockGuard guard(arena.segments_lock);
    while (arena.segments != nullptr) {
      SmallSegment* segment = arena.segments;
      for (size_t i = kSmallReservedRuns; i < kRunsPerSegment; ++i) {
        if (descriptor_untouched(segment, i)) continue;  // not in use; reading it would fault its page in
        RunDesc* run = &segment->runs[i];
        if (!run_in_use(run)) continue;
        const size_t words = small_tracks_requested() ? (run->block_count + 63) / 64 : 0;
        for (size_t w = 0; w < words; ++w) {
          for (uint64_t live = ~bitmap_load(&run->bitmap[w]); live != 0; live &= live - 1) {
            const size_t b = w * 64 + static_cast<size_t>(__builtin_ctzll(live));
            if (b < run->block_count) requested += run->block_size - get_slack(run, b);
          }
        }
        set_run_in_use(run, false);
      }
      arena.segments = segment->next;
      chunk_map_set(segment, kSegmentSize, nullptr);
      note_unpurged(segment);
      pool_give(segment, kSegmentSize);  // poisons its edges under ASan
    }
    arena.segment_count = 0;
    arena.empty_segments = 0;
  }
  for (SmallClass& cls : arena.classes) {
    cls.partial = nullptr;
    cls.handed_out = 0;
    cls.runs = 0;
    cls.remote.store(nullptr, std::memory_order_relaxed);
    cls.lock.unlock();
  }
  return requested;
}

bool small_idle() {
  const unsigned arenas = arenas_used();
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    for (SmallClass& cls : g_arenas[a].classes) {
      LockGuard guard(cls.lock);
      if (cls.handed_out != 0 || cls.remote.load(std::memory_order_relaxed) != nullptr) return false;
    }
  }
  return true;
}

TM_NO_COVERAGE void small_reset_for_test() {
  const unsigned arenas = arenas_used();
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    SmallArena& arena = g_arenas[a];
    while (arena.segments != nullptr) {
      SmallSegment* segment = arena.segments;
      arena.segments = segment->next;
      chunk_map_set(segment, kSegmentSize, nullptr);
      note_unpurged(segment);  // os_unmap takes the whole segment off the committed bytes
      os_unmap(segment, kSegmentSize);
    }
    arena.segment_count = 0;
    arena.empty_segments = 0;
    arena.segments_lock.reset();
    for (SmallClass& cls : arena.classes) {
      cls.lock.reset();
      cls.partial = nullptr;
      cls.handed_out = 0;
      cls.peak = 0;
      cls.runs = 0;
      cls.remote.store(nullptr, std::memory_order_relaxed);
      cls.returners.store(0, std::memory_order_relaxed);
      cls.returned_last = false;
    }
  }
}

void small_arena_totals(unsigned arena_index, SmallArenaTotals* out) {
  SmallArena& arena = g_arenas[arena_index];
  *out = SmallArenaTotals{};
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    LockGuard guard(arena.classes[c].lock);
    out->live_blocks += arena.classes[c].handed_out;
    out->usable_bytes += arena.classes[c].handed_out * class_size(c);
  }
  LockGuard guard(arena.segments_lock);
  out->segments = arena.segment_count;
}

TM_NO_COVERAGE void small_arena_snapshot(unsigned arena_index, SmallArenaSnapshot* out) {
  const SmallArena& arena = g_arenas[arena_index];
  for (size_t c = 0; c < kSmallClassCount; ++c) {
    const SmallClass& cls = arena.classes[c];
    out->handed_out[c] = cls.handed_out;
    out->peak[c] = cls.peak;
    out->runs[c] = cls.runs;
    // Safe to walk under the class lock: pushers only prepend, nothing is popped meanwhile.
    size_t remote = 0;
    for (void* block = cls.remote.load(std::memory_order_acquire); block != nullptr; block = free_block_next(block)) {
      ++remote;
    }
    out->remote[c] = remote;
  }
  out->segments = arena.segment_count;
  out->committed_bytes = 0;
  for (const SmallSegment* segment = arena.segments; segment != nullptr; segment = segment->next) {
    // The idle sweep purges the run area of an empty segment and idle free runs of others
    // (small_sweep_idle).
    out->committed_bytes += segment->purged != 0 ? kSmallReservedRuns * kRunSize : kSegmentSize;
    out->committed_bytes -= static_cast<size_t>(__builtin_popcountll(segment->purged_runs)) * kRunSize;
  }
}

void small_reset_peaks(unsigned arenas) {
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    for (SmallClass& cls : g_arenas[a].classes) {
      LockGuard guard(cls.lock);
      cls.peak = cls.handed_out;
    }
  }
}

namespace {

// Purges the free runs of a segment in use that the previous sweep found free and dirty
// too (segments lock held), and marks the ones free and dirty now.
void purge_idle_runs(SmallSegment* segment) {
  const uint64_t dirty_free = segment->free_runs & kSmallUsableRunsMask & ~segment->clean_runs;
  const uint64_t purge = dirty_free & segment->idle_runs;
  segment->idle_runs = dirty_free & ~purge;
  for (uint64_t left = purge; left != 0;) {
    // One madvise per stretch of adjacent runs.
    const unsigned first = static_cast<unsigned>(__builtin_ctzll(left));
    unsigned end = first;
    while (end < kRunsPerSegment && ((left >> end) & 1u) != 0) ++end;
    os_purge(run_base(segment, first), (end - first) * kRunSize);
    left &= end < 64 ? ~((uint64_t{1} << end) - 1) : 0;
  }
  segment->purged_runs |= purge;
  segment->clean_runs |= purge;  // purged memory reads as zero
}

}  // namespace

void small_sweep_idle() {
  const unsigned arenas = arenas_used();
  for (unsigned a = 0; a < arenas; ++a) {
    if (!arena_touched(a)) continue;
    SmallArena& arena = g_arenas[a];
    // Every half purge delay: the lock is cheap next to a peek that would race.
    LockGuard guard(arena.segments_lock);
    for (SmallSegment* segment = arena.segments; segment != nullptr; segment = segment->next) {
      if (segment->purged != 0) continue;
      if ((segment->free_runs & kSmallUsableRunsMask) != kSmallUsableRunsMask) {
        purge_idle_runs(segment);
        continue;
      }
      if (segment->sweep_mark == 0) {
        segment->sweep_mark = 1;  // empty now: purged if still empty at the next sweep
        continue;
      }
      forget_purged_runs(segment);  // counted again here, then purged with the whole area
      char* runs = run_base(segment, kSmallReservedRuns);
      const size_t bytes = kSegmentSize - kSmallReservedRuns * kRunSize;
      unpoison(runs, bytes);
      os_purge(runs, bytes);
      poison(runs, bytes);
      segment->purged = 1;
      segment->clean_runs = kSmallUsableRunsMask;  // purged memory reads as zero
    }
  }
}

}  // namespace tmalloc
