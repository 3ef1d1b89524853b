// Test hooks (tinymalloc_test.h): tm_test_reset puts the allocator back into the state of a
// process that has not allocated yet, so that a fuzzer input means the same thing whatever
// ran before it in the process. Each module resets its own state (the *_reset_for_test
// functions next to it); this file only orders them. The virtual clock is in os.cc.
#include <errno.h>

#include "arena.h"
#include "chunk_map.h"
#include "debug.h"
#include "guarded.h"
#include "heap.h"
#include "large.h"
#include "medium.h"
#include "options.h"
#include "os.h"
#include "platform.h"
#include "segment_pool.h"
#include "small.h"
#include "thread_cache.h"
#include "tinymalloc.h"
#include "tinymalloc_test.h"

using namespace tmalloc;

extern "C" TM_EXPORT int tm_test_reset(void) {
  runtime_ensure();
  // Blocks the program freed that still sit outside the heap's structures go back first:
  // debug mode's quarantine, the caller's cache and the remote-free lists.
  const bool no_debug_records = debug_idle();
  cache_flush_current();
  small_drain_remote();
  if (!no_debug_records || cache_others_active() || !heaps_none_live() || !small_idle() || !medium_idle() ||
      !large_idle() || !guarded_idle()) {
    errno = EBUSY;
    return -1;
  }
  // Nothing is live: every mapping goes back to the OS, then every table and counter starts
  // over. The pool comes after the tiers (large blocks' mappings are pooled, not live).
  small_reset_for_test();
  medium_reset_for_test();
  large_reset_for_test();
  guarded_reset_for_test();
  bool balanced = pool_reset_for_test();
  heaps_reset_for_test();
  balanced = cache_reset_for_test() && balanced;
  arena_reset_for_test();
  heap_maintain_reset_for_test();
  debug_reset_for_test();
  options_restore_initial();
  debug_update_mode();  // the restored debug and leaks options decide the routing again
  guarded_init();       // and the restored sample_rate
  // Last: every unmap above has been counted.
  balanced = os_reset_for_test() && balanced;
  return balanced ? 0 : TM_CHECK_STATS;
}

extern "C" TM_EXPORT int tm_test_is_sampled(const void* ptr) {
  const SegmentBase* owner = chunk_owner(ptr);
  return owner != nullptr && owner->kind == SegmentKind::kGuarded && guarded_owns(owner, ptr) ? 1 : 0;
}

extern "C" TM_EXPORT void tm_test_thread_exit(void) {
  runtime_ensure();
  cache_retire_current_for_test();
}

extern "C" TM_EXPORT void tm_test_debug_totals(size_t* live_blocks, size_t* live_bytes, size_t* quarantined_blocks) {
  DebugTotals totals;
  debug_totals(&totals);
  *live_blocks = totals.live_blocks;
  *live_bytes = totals.live_bytes;
  *quarantined_blocks = totals.quarantined_blocks;
}
