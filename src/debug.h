// Debug mode (option debug=1, switched at run time, no rebuild): every block gets a rear
// canary checked on free and realloc, freed memory is filled and checked when it is
// reused, every block records its allocation site (the caller's return address), and
// every report names that site. With leaks=1 a leak report at exit groups the blocks never
// freed by allocation site. The public entry points (api.cc) route here when debug_mode()
// is on; this layer allocates through the core_* functions of api_internal.h.
//
// In detail (debug.cc):
//   - Each block allocated in debug mode has a record in an out-of-band hash table (keyed by
//     the user pointer): requested size, allocation site, sequence number, free site.
//   - Layout inside the core block: [front canary][user bytes][16-byte rear canary]. The
//     front canary is 16 bytes, or `alignment` bytes for alignments up to 4096 (none above).
//     Canary bytes depend on a per-process random key and the address.
//   - New blocks are filled with 0xAB (calloc: zero), freed blocks with 0xDF; freed blocks
//     wait in a bounded FIFO quarantine (4096 blocks, 32 MiB) and are verified when they
//     leave it. Their records stay (state freed) meanwhile, so double frees name both sites.
//   - leaks=1 turns the recording on too (it needs the records): it implies debug mode.
//   - Switching debug off (tm_option_set) flushes the quarantine; blocks that still carry
//     debug records keep being routed here until they are freed, so they stay freeable.
#pragma once

#include <atomic>
#include <cstddef>

#include "chunk_map.h"
#include "platform.h"
#include "size_class.h"

namespace tmalloc {

class TextBuffer;
struct CheckResult;

// Appends a code address as "0x<addr> <symbol>+0x<off> (<object>)" (dladdr), or as much of
// it as is known (debug reports, sampled-block reports).
void append_site(TextBuffer& b, const void* site);

// The debug option's value that also puts every block on guard pages (debug=guard).
inline constexpr long kDebugGuard = 2;

// Whether api.cc routes every call here: while debug or leaks is set, and afterwards while
// blocks with debug records are still live (runtime init and tm_option_set update it).
extern TM_INTERNAL std::atomic<bool> g_debug_mode;
inline bool debug_mode() { return g_debug_mode.load(std::memory_order_relaxed); }

// tm_malloc serves requests below this bound on its inline fast path: kSizeTableMax + 1, or
// 0 while debug mode routes the calls (so one compare covers both the size and the mode,
// malloc(0) included).
extern TM_INTERNAL std::atomic<size_t> g_fast_size_bound;

// Turns the routing of the public entry points to debug mode on or off.
inline void debug_set_routing(bool on) {
  g_debug_mode.store(on, std::memory_order_seq_cst);  // seq_cst: see free_map_refresh
  g_fast_size_bound.store(on ? 0 : kSizeTableMax + 1, std::memory_order_relaxed);
  free_map_refresh();  // free's fast path: its table is nullptr while the calls are routed
}

// Reads the debug and leaks options into g_debug_mode (runtime init, tm_option_set); switching
// them off flushes the quarantine. Calls the core: the caller holds no allocator lock.
void debug_update_mode();

// The debug versions of the public entry points. `site` is the caller's return address.
// Blocks allocated before debug mode was switched on are passed to the core unchecked.
void* debug_malloc(size_t size, bool zero, const void* site);
// `alignment` is a power of two (validated by the caller).
void* debug_aligned_alloc(size_t alignment, size_t size, const void* site);
// `expected_size`: the size a sized delete names (kUnknownSize for plain free).
inline constexpr size_t kUnknownSize = ~size_t{0};
void debug_free(void* p, size_t expected_size, const void* site);
void* debug_realloc(void* p, size_t size, const void* site);
size_t debug_usable_size(const void* p);

// Verifies and releases every block in the quarantine (a write after free is reported as
// for a block leaving it). For tm_release_cached (api.cc) and tests that force the check.
void debug_flush_quarantine();

// tm_test_reset: flushes the quarantine and tells whether no recorded block is left (none
// live); and the reset of the sequence numbers (the caller restores the options and calls
// debug_update_mode).
bool debug_idle();
void debug_reset_for_test();

// What debug mode holds: blocks recorded as live and their requested bytes, and the freed
// blocks waiting in the quarantine (each still a live block of the core). For the test hook
// tm_test_debug_totals; walks every record, so not for a hot path.
struct DebugTotals {
  size_t live_blocks;
  size_t live_bytes;
  size_t quarantined_blocks;
};
void debug_totals(DebugTotals* out);

// tm_check_heap in debug mode: records in *result (TM_CHECK_DEBUG_BLOCK) the first live block
// whose canaries were overwritten, else the first quarantined block whose fill or canaries
// changed. Returns the code (0: none). Takes only this file's locks: call it before the core's.
int debug_check_blocks(CheckResult* result);

// Writes the leak report (the live recorded blocks grouped by allocation site) to fd and
// returns the number of those blocks; with `quiet_when_none`, writes nothing when there
// are none. Never allocates (a scratch mapping holds the sort). tm_leak_report calls it.
size_t debug_leak_report(int fd, bool quiet_when_none);

}  // namespace tmalloc
