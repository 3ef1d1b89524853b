/*
 * tinymalloc test hooks: entry points for the verification harness, fuzz targets and tests.
 *
 * Not part of the public API (tinymalloc.h): they exist so that a fuzzer input means the same
 * thing whatever ran before it in the process, and so that time-based upkeep (purging,
 * sweeping) can be driven by a test instead of the wall clock. Valid C11 and C++. None of
 * them may run while another thread is inside a tinymalloc call.
 */
#ifndef TINYMALLOC_TEST_H
#define TINYMALLOC_TEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Puts the allocator back into the state of a process that has not allocated yet, as far as
 * anything observable goes: every mapping (segments, large blocks, the global pool's entries)
 * is unmapped and its address-map entries cleared; every arena, size class, medium index,
 * memory-pool slot and the calling thread's cache are emptied and re-initialised (the thread
 * picks its arena again at its next call, its bins start at their initial limits); the
 * options go back to the values in force when the runtime initialised (TINYMALLOC_OPTIONS and
 * any tm_option_set made before the first allocation); the statistics counters and peaks,
 * the OS call counters, the upkeep's sweep timer, the virtual clock (see below, when it is
 * on), the OS failure injection and debug mode's sequence numbers start over. The free-block
 * secret stays (it is fixed for the life of the process).
 *
 * Precondition: no block is live (every block freed, debug mode's quarantine included), no
 * memory pool exists, and no other thread has an active thread cache (threads that used
 * tinymalloc have exited). Returns:
 *   0                  done;
 *   -1, errno = EBUSY  the precondition does not hold: nothing was released (only the calling
 *                      thread's cache, the quarantine and the remote-free lists were flushed,
 *                      as tm_release_cached would);
 *   TM_CHECK_STATS (9) done, but with every mapping returned the address-space accounting
 *                      did not come back to zero (mapped or committed bytes, or the
 *                      requested-bytes counters drifted): an allocator bug. The counters
 *                      start from zero again all the same. */
int tm_test_reset(void);

/* What tinymalloc does when the calling thread exits (its cache flushed into the heap, its
 * arena left, its counters folded into the process totals), after which the thread is one
 * that has not allocated yet: its next call sets up a new cache and chooses its arena again.
 * For a harness that reuses worker threads across inputs: once each worker has called it,
 * tm_test_reset's "no other thread has an active cache" holds without the threads exiting.
 * No effect on a thread without a cache (thread_cache=0). */
void tm_test_thread_exit(void);

/* Virtual time for the purge and sweep decisions (purge_delay_ms): while it is on, the
 * allocator reads a clock that only tm_test_clock_advance moves, starting at 0 when switched
 * on and after every tm_test_reset; off (the default), it reads CLOCK_MONOTONIC_COARSE. */
void tm_test_clock_virtual(int on);
/* Moves the virtual clock forward by ms milliseconds (no effect while it is off). The upkeep
 * acts on the new time at the allocator's next slow path, as it would after real time. */
void tm_test_clock_advance(uint64_t ms);
/* The clock the allocator reads now, in milliseconds (virtual or monotonic). */
uint64_t tm_test_clock_now(void);

/* Recycled mappings, for harnesses that reset the allocator between inputs: while on (off by
 * default), a range the allocator unmaps (tm_test_reset included) or purges stays mapped, its
 * resident pages zeroed, and later mappings are served from the unmapped ones (up to 4 GiB of
 * address space and 128 MiB of resident pages, the oldest unmapped first). The allocator sees what the kernel would
 * give it and keeps the same accounting; pages once touched are simply not faulted in again. Residency (mincore) would
 * then depend on earlier inputs, so while it is on the allocator treats every page as
 * resident. Switching it off unmaps what the table holds. */
void tm_test_recycle_mappings(int on);
/* Address space the recycled-mapping table holds now, in bytes. */
size_t tm_test_recycled_bytes(void);
/* Of it, the bytes of pages the kernel held when they came back (an estimate once a range has
 * been carved: a piece carries its share), at most 128 MiB: past that the oldest ranges are
 * unmapped. */
size_t tm_test_recycled_resident_bytes(void);

/* Debug mode's own accounting (option debug or leaks): the blocks it records as live and the
 * sum of their requested sizes, and the freed blocks waiting in its quarantine (each still a
 * live block for tm_stats, which counts the core blocks with their canaries). All 0 when debug
 * mode never ran. Walks every record: for checks, not for hot paths. */
void tm_test_debug_totals(size_t *live_blocks, size_t *live_bytes, size_t *quarantined_blocks);

/* 1 when ptr points into a live sampled block (option sample_rate: on guard pages), else 0. */
int tm_test_is_sampled(const void *ptr);

#ifdef __cplusplus
}
#endif

#endif /* TINYMALLOC_TEST_H */
