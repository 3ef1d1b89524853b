// OS layer: every byte tinymalloc uses comes from mmap (never sbrk). Mappings start on a
// segment boundary so the address map can name the owner of any address.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmalloc {

// Maps `size` bytes (a multiple of the page size) of zeroed read-write memory whose start
// is a multiple of `alignment` (a power of two >= kSegmentSize). nullptr + errno = ENOMEM
// on failure, including an injected failure (see tm_test_fail_os_after).
void* os_map_aligned(size_t size, size_t alignment);

// Unmaps a range that os_map_aligned returned (or part of one).
void os_unmap(void* addr, size_t size);
// os_unmap for a range whose pages all read as zero already (purged by os_purge and not
// written since): the same for the kernel; while mappings are recycled, its pages are not
// read again to find the ones to zero.
void os_unmap_zeroed(void* addr, size_t size);

// Returns the physical pages of a range to the OS; the range stays mapped and reads back
// as zero.
void os_purge(void* addr, size_t size);
// os_purge for a range mapped PROT_NONE (the sampled blocks' region): always returned to the
// kernel, also while mappings are recycled (tm_test_recycle_mappings), which zeroes purged
// pages in user space.
void os_purge_inaccessible(void* addr, size_t size);

// Address space the recycled-mapping table (tm_test_recycle_mappings) may hold, and so the
// most it keeps resident; past it the oldest ranges are unmapped for real. Only pages once
// touched are resident, so this bounds RSS far less than it bounds address space: the fuzz
// targets' inputs map up to about 2 GiB each (53 blocks of 32 MiB, say), and with 1 GiB the
// heaviest of them mapped (and faulted in) fresh ranges all the time: 1,000 page faults per
// run against 240 with 4 GiB; 16 GiB gave no more speed and 3-5 times the RSS.
inline constexpr size_t kMaxRecycledBytes = size_t{1} << 32;
// Bytes of the table's ranges the kernel may hold (pages once touched, zeroed, kept so that
// they are not faulted in again): past it the oldest ranges are unmapped. With the
// address-space bound alone a fuzz_heap_pools process moved between 150 and 420 MB (the pages
// of the ranges earlier inputs touched); with 128 MiB, 130-220 MB, and the heap_ops corpus
// pass took as long (64 MiB: about a tenth longer).
inline constexpr size_t kMaxRecycledResidentBytes = size_t{128} << 20;
// Neighbours in the table join up to this size: one range never takes the whole table
// (evicting it would empty it).
inline constexpr size_t kMaxRecycledRange = kMaxRecycledBytes / 4;

// Resizes a mapping of old_size bytes at addr to new_size bytes (both page multiples).
// Shrinks in place; grows in place when the following addresses are free, otherwise moves
// the mapping to a new start aligned to `alignment`. Returns the (possibly new) start, or
// nullptr + ENOMEM leaving the old mapping untouched.
void* os_remap(void* addr, size_t old_size, size_t new_size, size_t alignment);

// Moves the pages of the `size`-byte range at `from` onto `to` (both page-aligned, `to` a
// range of a mapping os_map_aligned returned): resident pages move without a copy or a
// fault, `to`'s old pages and the range at `from` stop being mapped. False (nothing
// changed) when the kernel refuses, e.g. a range over several kernel mappings on kernels
// before 6.17.
bool os_move_pages(void* from, size_t size, void* to);

// Monotonic milliseconds from the coarse clock (a vDSO read, no system call), or the virtual
// clock of the test hooks (tinymalloc_test.h) while it is on.
uint64_t os_monotonic_ms();

// Address-space accounting (bytes), updated by the calls above. The two byte counters are
// changed with release ordering and read here with acquire: a heap check that reads a change
// also sees the transit that made it (os_transit_stamp).
size_t os_mapped_bytes();
size_t os_committed_bytes();
size_t os_peak_mapped_bytes();
void os_reset_peak();
size_t os_map_calls();
size_t os_unmap_calls();
size_t os_purge_calls();
// Kernel calls (mmap and munmap) os_map_aligned made: one when its hint holds, three when it
// over-maps and trims.
size_t os_aligned_map_syscalls();

// Metadata mappings (the address map) are accounted separately from heap mappings;
// these map and unmap without failure injection or alignment.
void* os_map_metadata(size_t size);

// Zeroes [addr, addr + size) of a mapping in use: the whole pages inside it are dropped with
// madvise (they read back as zero, and are faulted in again only where the program touches
// them), the partial pages at either end cleared with memset. What calloc does with a very
// large reused mapping (large.cc: kLargeZeroByMadvise), whose pages may mostly stay untouched.
// The pages stay counted as committed (the block is live); the madvise counts as a purge call.
void os_zero(void* addr, size_t size);

// Bytes of [addr, addr + size) in pages the kernel holds in memory now (mincore), at most
// `size`; `size` when the kernel cannot tell. A page swapped out counts as not resident.
// The count may stop early once it reaches `enough` (callers compare it with a threshold).
size_t os_resident_bytes(const void* addr, size_t size, size_t enough);

// Counts a range as committed again after purge (it was written to).
void os_note_recommitted(size_t size);

// Mappings in transit. A mapping counted by the byte counters above but not (yet, or any
// more) in a structure the heap check walks under its locks is in transit: a large block
// between the pool and the block list, a pooled mapping on its way to munmap, a sampled-block
// slot between the region's walk and the counters' read. Whoever moves one brackets the move
// with an OsTransit, begun before the first change the check could see and ended after the
// last. tm_check_heap compares the counters with its walk only when no transit was under way
// when it started and none began or ended while it ran (os_transit_quiet).
void os_transit_begin();
void os_transit_end();
// The transit word: transits begun and ended so far (high 32 bits) and under way (low 32).
// Read before the walk and again after the counters.
uint64_t os_transit_stamp();
// Whether nothing was in transit at `before` and nothing began or ended until `after`.
inline bool os_transit_quiet(uint64_t before, uint64_t after) {
  return before == after && static_cast<uint32_t>(before) == 0;
}

// Brackets a scope as a transit.
class OsTransit {
 public:
  OsTransit() { os_transit_begin(); }
  ~OsTransit() { os_transit_end(); }
  OsTransit(const OsTransit&) = delete;
  OsTransit& operator=(const OsTransit&) = delete;
};

// tm_test_reset (every heap mapping is gone by then): zeroes the accounting and call
// counters, switches failure injection off and sets the virtual clock back to 0. Returns
// whether mapped and committed bytes had come back to exactly zero.
bool os_reset_for_test();

}  // namespace tmalloc
