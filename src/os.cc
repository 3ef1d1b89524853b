// mmap-based OS layer with failure injection for out-of-memory tests (see os.h).
#include "os.h"

#include <errno.h>
#include <sys/mman.h>

#include <time.h>

#include <atomic>
#include <cstring>
#include <initializer_list>

#include "config.h"
#include "platform.h"
#include "sanitizer.h"
#include "spinlock.h"
#include "tinymalloc.h"
#include "tinymalloc_test.h"

namespace tmalloc {

namespace {

// All counters are statistics: relaxed ordering, no other memory depends on them, but for
// the changes of g_mapped and g_committed, which are release: the heap check's acquire read
// of a change makes the transit that made it visible to its second stamp read.
std::atomic<size_t> g_mapped{0};
std::atomic<size_t> g_committed{0};
std::atomic<size_t> g_peak_mapped{0};
std::atomic<size_t> g_map_calls{0};
std::atomic<size_t> g_unmap_calls{0};
std::atomic<size_t> g_purge_calls{0};
std::atomic<size_t> g_aligned_map_syscalls{0};
// Remaining successful map requests before injected failures; negative = no injection.
std::atomic<long> g_fail_after{-1};
// Test hook (tinymalloc_test.h): while set, os_monotonic_ms reads g_virtual_ms. Relaxed: the
// clock only feeds purge and sweep decisions, which synchronise by their own locks.
std::atomic<bool> g_virtual_clock{false};
std::atomic<uint64_t> g_virtual_ms{0};
// Transits (os_transit_stamp): one added to the high half at every begin and end, the low
// half the number under way.
constexpr uint64_t kTransitEvent = uint64_t{1} << 32;
std::atomic<uint64_t> g_transit{0};

// ---- Recycled mappings (test hook tm_test_recycle_mappings) -------------------------------------
// While on, ranges the allocator unmaps or purges stay mapped: their resident pages are
// zeroed and unmapped ranges wait in a table from which os_map_aligned serves later requests.
// The allocator sees exactly what the kernel would give it (zeroed memory at an aligned
// address, the same accounting); what changes is that pages once touched are not faulted in
// again. A fuzzer's inputs each start from a pristine allocator (tm_test_reset) that maps and
// unmaps the same few megabytes over and over: fresh pages made page faults, and ASan's shadow
// of them, most of an input's cost.
struct RecycledRange {
  uintptr_t begin;
  size_t size;
  size_t resident;  // bytes of its pages the kernel held when it came back (zeroed, still held)
};
constexpr size_t kMaxRecycled = 256;
SpinLock g_recycle_lock;
RecycledRange g_recycled[kMaxRecycled];  // [0, g_recycled_count), oldest first
size_t g_recycled_count = 0;
size_t g_recycled_bytes = 0;
size_t g_recycled_resident = 0;  // sum of the ranges' resident bytes
// Relaxed: switched only while no other thread is inside the allocator (tinymalloc_test.h).
std::atomic<bool> g_recycle{false};

bool recycling() { return TM_UNLIKELY(g_recycle.load(std::memory_order_relaxed)); }

// Returns [addr, addr + size) to the kernel. ASan's shadow outlives munmap: it is released
// first, so a later mapping at these addresses starts addressable.
void unmap_now(void* addr, size_t size) {
  unpoison_range(addr, size);
  ::munmap(addr, size);
}

// Zeroes n bytes at p whatever ASan's shadow says of them (a purged range is free memory the
// allocator keeps poisoned, and stays so, as after madvise). ASan checks memset's range, so
// under ASan the stores are made by code it does not see.
TM_NO_COVERAGE TM_NO_ASAN void zero_uninstrumented(void* p, size_t n) {
#if defined(TM_ASAN) && defined(__x86_64__)
  asm volatile("rep stosb" : "+D"(p), "+c"(n) : "a"(0) : "memory");
#elif defined(TM_ASAN)
  for (volatile unsigned char* byte = static_cast<unsigned char*>(p); n != 0; --n) *byte++ = 0;
#else
  std::memset(p, 0, n);
#endif
}

// Whether the page at p reads as zero (read without ASan's checks: the page may be poisoned).
// Recycling reads every resident page it gives back, so this runs at memory speed: 128 bytes
// per step in vector registers, stopping at the first step with a set bit; without UBSan's
// per-load checks (the fuzz preset is -O1, which does not vectorize, and UBSan's alignment and
// overflow checks on the plain word loop took 14% of fuzz_heap_ops's cycles).
TM_NO_COVERAGE TM_NO_ASAN __attribute__((no_sanitize("undefined"))) bool page_is_zero(const void* p) {
  using Lanes = uint64_t __attribute__((vector_size(32), aligned(32)));
  const Lanes* lanes = static_cast<const Lanes*>(p);  // a page is aligned far beyond 32
  constexpr size_t kLanesPerStep = 4;
  for (size_t at = 0; at < kPageSize / sizeof(Lanes); at += kLanesPerStep) {
    const Lanes any = lanes[at] | lanes[at + 1] | lanes[at + 2] | lanes[at + 3];
    if ((any[0] | any[1] | any[2] | any[3]) != 0) return false;
  }
  return true;
}

// Marks [p, p + n) addressable without faulting in shadow that was never written: only the
// parts of the range whose shadow pages are resident are unpoisoned (a shadow page the kernel
// does not hold reads as zero, which is addressable already). For recycled ranges, which stay
// mapped and are handed out again, where unpoison_range's release of the shadow would cost a
// fault per shadow page at the next poison. A shadow page the range covers entirely is read
// and cleared here directly (ASan's region checks on it cost as much as the rest of the
// recycling); partly covered ones go through ASan's interface.
TM_NO_COVERAGE void unpoison_resident(const void* p, size_t n) {
#if defined(TM_ASAN)
  if (n == 0) return;
  constexpr size_t kChunk = 256;  // shadow pages per mincore call (the vector is on the stack)
  const ShadowGeometry shadow = shadow_geometry();
  const uintptr_t memory_per_page = shadow.memory_per_page;
  const uintptr_t begin = addr_of(p);
  const uintptr_t end = begin + n;
  unsigned char resident[kChunk];
  for (uintptr_t chunk = begin & ~(memory_per_page - 1); chunk < end; chunk += kChunk * memory_per_page) {
    const uintptr_t chunk_end = end - chunk < kChunk * memory_per_page ? end : chunk + kChunk * memory_per_page;
    const size_t pages = (chunk_end - chunk + memory_per_page - 1) / memory_per_page;
    const bool known =
        ::mincore(reinterpret_cast<void*>((chunk >> shadow.scale) + shadow.offset), pages * kShadowPage, resident) == 0;
    for (size_t page = 0; page < pages; ++page) {
      if (known && (resident[page] & 1) == 0) continue;
      const uintptr_t page_begin = chunk + page * memory_per_page;
      const uintptr_t from = page_begin < begin ? begin : page_begin;
      const uintptr_t to = page_begin + memory_per_page > end ? end : page_begin + memory_per_page;
      // A shadow page that reads as addressable is left unwritten (one only read so far maps
      // the kernel's zero page: a write would fault).
      if (from == page_begin && to == page_begin + memory_per_page) {
        void* const shadow_page = reinterpret_cast<void*>((page_begin >> shadow.scale) + shadow.offset);
        if (!page_is_zero(shadow_page)) zero_uninstrumented(shadow_page, kShadowPage);
      } else if (__asan_region_is_poisoned(reinterpret_cast<void*>(from), to - from) != nullptr) {
        __asan_unpoison_memory_region(reinterpret_cast<const void*>(from), to - from);
      }
    }
  }
#else
  (void)p;
  (void)n;
#endif
}

// Zeroes the pages of [addr, addr + size) (page-aligned) the kernel holds, leaving the others
// alone (they read as zero): what MADV_DONTNEED guarantees about the contents, without its
// faults at the next touch. A resident page that reads as zero already (one only ever read
// maps the kernel's zero page) is not written: the write would fault. The ASan shadow is
// left as it is. With zero_them false only counts. Returns the bytes of resident pages (all of
// a chunk whose residency mincore could not tell).
TM_NO_COVERAGE size_t zero_resident_pages(void* addr, size_t size, bool zero_them = true) {
  constexpr size_t kChunkPages = 1024;  // pages per mincore call (the vector is on the stack)
  unsigned char resident[kChunkPages];
  const int saved_errno = errno;
  const uintptr_t end = addr_of(addr) + size;
  size_t resident_pages = 0;
  for (uintptr_t chunk = addr_of(addr); chunk < end; chunk += kChunkPages * kPageSize) {
    const size_t pages = (end - chunk < kChunkPages * kPageSize ? end - chunk : kChunkPages * kPageSize) / kPageSize;
    const bool known = ::mincore(reinterpret_cast<void*>(chunk), pages * kPageSize, resident) == 0;
    for (size_t page = 0; page < pages; ++page) {
      if (known && (resident[page] & 1) == 0) continue;
      ++resident_pages;
      void* const at = reinterpret_cast<void*>(chunk + page * kPageSize);
      if (zero_them && !page_is_zero(at)) zero_uninstrumented(at, kPageSize);
    }
  }
  errno = saved_errno;
  return resident_pages * kPageSize;
}

// The share of a recycled range's resident bytes that a part of `part` bytes carries (the
// table knows only each range's total; its pages are taken to be spread evenly).
size_t resident_share(const RecycledRange& range, size_t part) {
  // resident <= size <= kMaxRecycledRange (1 GiB) and part <= size: the product fits.
  return range.size == 0 ? 0 : static_cast<size_t>(static_cast<unsigned __int128>(range.resident) * part / range.size);
}

// Takes an aligned `size`-byte range from the table (the newest range that holds one: its
// pages are the likeliest to be resident); the rest of that range goes back. nullptr: none.
TM_NO_COVERAGE void* take_recycled(size_t size, size_t alignment) {
  LockGuard guard(g_recycle_lock);
  for (size_t i = g_recycled_count; i-- > 0;) {
    const RecycledRange range = g_recycled[i];
    const uintptr_t at = align_up(range.begin, alignment);
    if (at < range.begin || at + size > range.begin + range.size || at + size < at) continue;
    const size_t head = at - range.begin;
    const size_t tail = range.begin + range.size - (at + size);
    const size_t head_resident = resident_share(range, head);
    const size_t tail_resident = resident_share(range, tail);
    // The pieces left over take the range's slot and, for a second one, a new slot; without
    // a free slot the tail is unmapped.
    g_recycled_bytes -= size;
    g_recycled_resident -= range.resident - head_resident - tail_resident;
    if (head != 0) {
      g_recycled[i].size = head;
      g_recycled[i].resident = head_resident;
    } else {
      for (size_t j = i + 1; j < g_recycled_count; ++j) g_recycled[j - 1] = g_recycled[j];  // keep the age order
      --g_recycled_count;
    }
    if (tail != 0) {
      if (g_recycled_count < kMaxRecycled) {
        g_recycled[g_recycled_count++] = {at + size, tail, tail_resident};
      } else {
        unmap_now(reinterpret_cast<void*>(at + size), tail);
        g_recycled_bytes -= tail;
        g_recycled_resident -= tail_resident;
      }
    }
    return reinterpret_cast<void*>(at);
  }
  return nullptr;
}

// Keeps [addr, addr + size) (zeroed) for a later mapping, joined with its neighbours in the
// table (up to kMaxRecycledRange); when the table is full (slots, address space or resident
// bytes), the ranges given longest ago are unmapped to make room. `zeroed`: every page reads
// as zero already (a purged range).
TM_NO_COVERAGE void give_recycled(void* addr, size_t size, bool zeroed) {
  // A range may come back inaccessible (the sampled blocks' region); zeroing reads and writes
  // it, and the next mapping must be read-write.
  if (::mprotect(addr, size, PROT_READ | PROT_WRITE) != 0) {
    unmap_now(addr, size);
    return;
  }
  // A purged range's pages read as zero but may still be held (a purge while recycling zeroes
  // them in place): they are counted, not read.
  size_t resident = zero_resident_pages(addr, size, !zeroed);
  unpoison_resident(addr, size);  // a new mapping is addressable
  uintptr_t begin = addr_of(addr);
  uintptr_t end = begin + size;
  LockGuard guard(g_recycle_lock);
  for (size_t i = 0; i < g_recycled_count;) {
    const RecycledRange range = g_recycled[i];
    const bool adjacent = range.begin + range.size == begin || end == range.begin;
    if (adjacent && (end - begin) + range.size <= kMaxRecycledRange) {
      begin = range.begin < begin ? range.begin : begin;
      end = range.begin + range.size > end ? range.begin + range.size : end;
      resident += range.resident;
      g_recycled_bytes -= range.size;
      g_recycled_resident -= range.resident;
      for (size_t j = i + 1; j < g_recycled_count; ++j) g_recycled[j - 1] = g_recycled[j];  // keep the age order
      --g_recycled_count;
      continue;
    }
    ++i;
  }
  if (end - begin > kMaxRecycledBytes || resident > kMaxRecycledResidentBytes) {
    unmap_now(reinterpret_cast<void*>(begin), end - begin);
    return;
  }
  // Full: the ranges returned longest ago are unmapped.
  size_t evicted = 0;
  while (evicted < g_recycled_count &&
         (g_recycled_count - evicted == kMaxRecycled || g_recycled_bytes + (end - begin) > kMaxRecycledBytes ||
          g_recycled_resident + resident > kMaxRecycledResidentBytes)) {
    unmap_now(reinterpret_cast<void*>(g_recycled[evicted].begin), g_recycled[evicted].size);
    g_recycled_bytes -= g_recycled[evicted].size;
    g_recycled_resident -= g_recycled[evicted].resident;
    ++evicted;
  }
  for (size_t j = evicted; j < g_recycled_count; ++j) g_recycled[j - evicted] = g_recycled[j];
  g_recycled_count -= evicted;
  g_recycled[g_recycled_count++] = {begin, end - begin, resident};
  g_recycled_bytes += end - begin;
  g_recycled_resident += resident;
}

// Returns a range to the kernel, or to the table while recycling (`zeroed`: see give_recycled).
void release_range(void* addr, size_t size, bool zeroed = false) {
  if (recycling()) {
    give_recycled(addr, size, zeroed);
    return;
  }
  unmap_now(addr, size);
}

// Consumes one map request from the failure-injection budget; false = fail this one.
bool injection_allows_request() {
  long budget = g_fail_after.load(std::memory_order_relaxed);
  while (budget >= 0) {
    if (budget == 0) return false;
    if (g_fail_after.compare_exchange_weak(budget, budget - 1, std::memory_order_relaxed)) return true;
  }
  return true;
}

// Records `size` newly mapped (and committed) bytes and raises the peak.
void note_mapped(size_t size) {
  const size_t now = g_mapped.fetch_add(size, std::memory_order_release) + size;
  g_committed.fetch_add(size, std::memory_order_release);
  size_t peak = g_peak_mapped.load(std::memory_order_relaxed);
  while (now > peak && !g_peak_mapped.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
}

// Records `size` bytes unmapped; committed is clamped so purged ranges are not counted twice.
void note_unmapped(size_t size, size_t committed) {
  g_mapped.fetch_sub(size, std::memory_order_release);
  g_committed.fetch_sub(committed, std::memory_order_release);
}

// Raw anonymous mapping, anywhere or (`extra_flags` MAP_FIXED_NOREPLACE) at `at`; nullptr on
// failure.
void* raw_map(size_t size, void* at = nullptr, int extra_flags = 0) {
  void* p = ::mmap(at, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | extra_flags, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

// The end of the address range where the next aligned mapping is tried first (0: none yet):
// the start of the last aligned mapping made (the kernel hands out addresses top-down, so the
// range just below it is usually free), or the end of the last segment-sized range unmapped
// (the next segment fits there exactly). Relaxed: a stale or raced hint costs one refused
// mmap, never a wrong mapping (the kernel checks that the range is free).
std::atomic<uintptr_t> g_map_hint{0};

// Maps `size` bytes at the aligned address just below the hint, in one call instead of the
// three of an over-map and its trims; nullptr when the range is taken (or the hint unusable).
void* map_below_hint(size_t size, size_t alignment) {
  const uintptr_t top = g_map_hint.load(std::memory_order_relaxed);
  if (top < size + alignment) return nullptr;  // no hint, or too low to be one
  const uintptr_t at = align_down(top - size, alignment);
  void* p = raw_map(size, reinterpret_cast<void*>(at), MAP_FIXED_NOREPLACE);
  g_aligned_map_syscalls.fetch_add(1, std::memory_order_relaxed);
  if (p == nullptr) return nullptr;
  if (addr_of(p) != at) {
    // A kernel older than 4.17 (or a sanitizer's interceptor) took the address as a hint
    // and mapped elsewhere.
    ::munmap(p, size);
    g_aligned_map_syscalls.fetch_add(1, std::memory_order_relaxed);
    return nullptr;
  }
  return p;
}

}  // namespace

void* os_map_aligned(size_t size, size_t alignment) {
  if (!injection_allows_request() || size > kMaxRequest || alignment > kMaxRequest) {
    errno = ENOMEM;
    return nullptr;
  }
  g_map_calls.fetch_add(1, std::memory_order_relaxed);
  if (recycling()) {
    if (void* recycled = take_recycled(size, alignment)) {
      note_mapped(size);
      return recycled;
    }
  }
  const int saved_errno = errno;
  char* aligned = static_cast<char*>(map_below_hint(size, alignment));
  if (aligned == nullptr) {
    errno = saved_errno;  // a refused hint is not the caller's error
    // Over-map by alignment - page, then trim the unaligned head and the tail.
    const size_t reserve = size + alignment - kPageSize;
    char* raw = static_cast<char*>(raw_map(reserve));
    if (raw == nullptr) {
      errno = ENOMEM;
      return nullptr;
    }
    aligned = reinterpret_cast<char*>(align_up(addr_of(raw), alignment));
    const size_t head = static_cast<size_t>(aligned - raw);
    const size_t tail = reserve - head - size;
    if (head != 0) ::munmap(raw, head);
    if (tail != 0) ::munmap(aligned + size, tail);
    g_aligned_map_syscalls.fetch_add(1 + (head != 0) + (tail != 0), std::memory_order_relaxed);
  }
  g_map_hint.store(addr_of(aligned), std::memory_order_relaxed);
  note_mapped(size);
  return aligned;
}

namespace {

// The common part of os_unmap and os_unmap_zeroed.
void unmap_range(void* addr, size_t size, bool zeroed) {
  release_range(addr, size, zeroed);
  // A segment-aligned range of a segment or more: the next aligned mapping is tried here.
  if (size >= kSegmentSize && addr_of(addr) % kSegmentSize == 0)
    g_map_hint.store(addr_of(addr) + size, std::memory_order_relaxed);
  g_unmap_calls.fetch_add(1, std::memory_order_relaxed);
  note_unmapped(size, size);
}

}  // namespace

void os_unmap(void* addr, size_t size) { unmap_range(addr, size, false); }

void os_unmap_zeroed(void* addr, size_t size) { unmap_range(addr, size, true); }

void os_purge(void* addr, size_t size) {
  if (recycling()) {
    zero_resident_pages(addr, size);
  } else {
    ::madvise(addr, size, MADV_DONTNEED);
  }
  g_purge_calls.fetch_add(1, std::memory_order_relaxed);
  g_committed.fetch_sub(size, std::memory_order_release);
}

void os_purge_inaccessible(void* addr, size_t size) {
  ::madvise(addr, size, MADV_DONTNEED);
  g_purge_calls.fetch_add(1, std::memory_order_relaxed);
  g_committed.fetch_sub(size, std::memory_order_release);
}

void os_note_recommitted(size_t size) { g_committed.fetch_add(size, std::memory_order_release); }

// Relaxed: what the mover does after the begin reaches the heap check through a lock it
// releases or a release change of a byte counter, either of which carries the begin along.
void os_transit_begin() { g_transit.fetch_add(kTransitEvent + 1, std::memory_order_relaxed); }

// Release: a check whose stamp read sees the end sees every change of the move.
void os_transit_end() { g_transit.fetch_add(kTransitEvent - 1, std::memory_order_release); }

uint64_t os_transit_stamp() { return g_transit.load(std::memory_order_acquire); }

void os_zero(void* addr, size_t size) {
  char* const begin = static_cast<char*>(addr);
  char* const first = reinterpret_cast<char*>(align_up(addr_of(begin), kPageSize));
  char* const last = reinterpret_cast<char*>(align_down(addr_of(begin) + size, kPageSize));
  if (first >= last) {
    std::memset(begin, 0, size);
    return;
  }
  std::memset(begin, 0, static_cast<size_t>(first - begin));
  std::memset(last, 0, static_cast<size_t>(begin + size - last));
  const int saved_errno = errno;
  if (recycling()) {
    zero_resident_pages(first, static_cast<size_t>(last - first));
    g_purge_calls.fetch_add(1, std::memory_order_relaxed);
  } else if (::madvise(first, static_cast<size_t>(last - first), MADV_DONTNEED) != 0) {
    std::memset(first, 0, static_cast<size_t>(last - first));  // the range must read as zero regardless
  } else {
    g_purge_calls.fetch_add(1, std::memory_order_relaxed);  // a madvise like os_purge's (stats)
  }
  errno = saved_errno;
}

// Not fuzzing guidance: which pages are resident is the kernel's business (TM_NO_COVERAGE).
TM_NO_COVERAGE size_t os_resident_bytes(const void* addr, size_t size, size_t enough) {
  // Recycled pages stay resident whatever the inputs before did with them: the answer must
  // not depend on history, so none counts, as for the fresh mapping a recycled range stands
  // for (the harness touches a few windows of a large block: fresh, its pages are mostly not
  // resident either).
  if (recycling()) return 0;
  constexpr size_t kChunkPages = 1024;  // pages per mincore call (the vector is on the stack)
  unsigned char resident[kChunkPages];
  const uintptr_t first = align_down(addr_of(addr), kPageSize);
  const uintptr_t end = align_up(addr_of(addr) + size, kPageSize);
  size_t pages_resident = 0;
  const int saved_errno = errno;
  for (uintptr_t chunk = first; chunk < end; chunk += kChunkPages * kPageSize) {
    const size_t chunk_size = end - chunk < kChunkPages * kPageSize ? end - chunk : kChunkPages * kPageSize;
    if (::mincore(reinterpret_cast<void*>(chunk), chunk_size, resident) != 0) {
      errno = saved_errno;
      return size;  // unknown: count it all as resident
    }
    for (size_t page = 0; page < chunk_size / kPageSize; ++page) pages_resident += resident[page] & 1;
    if (pages_resident * kPageSize >= enough) break;
  }
  const size_t bytes = pages_resident * kPageSize;
  return bytes < size ? bytes : size;
}

void* os_remap(void* addr, size_t old_size, size_t new_size, size_t alignment) {
  if (new_size <= old_size) {
    if (new_size < old_size) {
      release_range(static_cast<char*>(addr) + new_size, old_size - new_size);
      note_unmapped(old_size - new_size, old_size - new_size);
    }
    return addr;
  }
  if (!injection_allows_request() || new_size > kMaxRequest) {
    errno = ENOMEM;
    return nullptr;
  }
  g_map_calls.fetch_add(1, std::memory_order_relaxed);
  // In place first: succeeds only when the pages after the mapping are free.
  void* grown = ::mremap(addr, old_size, new_size, 0);
  if (grown != MAP_FAILED) {
    note_mapped(new_size - old_size);
    return grown;
  }
  // Move: reserve an aligned destination, then let the kernel move the pages into it
  // (no copy of the contents).
  const size_t reserve = new_size + alignment - kPageSize;
  char* raw =
      static_cast<char*>(::mmap(nullptr, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (raw == MAP_FAILED) {
    errno = ENOMEM;
    return nullptr;
  }
  char* aligned = reinterpret_cast<char*>(align_up(addr_of(raw), alignment));
  void* moved = ::mremap(addr, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, aligned);
  if (moved == MAP_FAILED) {
    ::munmap(raw, reserve);
    errno = ENOMEM;
    return nullptr;
  }
  // The fixed move replaced [aligned, aligned + new_size) of the reservation; drop the rest.
  const size_t head = static_cast<size_t>(aligned - raw);
  const size_t tail = reserve - head - new_size;
  if (head != 0) ::munmap(raw, head);
  if (tail != 0) ::munmap(aligned + new_size, tail);
  note_mapped(new_size - old_size);
  return moved;
}

bool os_move_pages(void* from, size_t size, void* to) {
  const int saved_errno = errno;
  if (::mremap(from, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, to) == MAP_FAILED) {
    errno = saved_errno;  // a refused move is not an error of the caller's request
    return false;
  }
  // `to` was mapped and committed already; the pages at `from` left with their mapping.
  note_unmapped(size, size);
  return true;
}

void* os_map_metadata(size_t size) { return raw_map(size); }

uint64_t os_monotonic_ms() {
  if (TM_UNLIKELY(g_virtual_clock.load(std::memory_order_relaxed))) return g_virtual_ms.load(std::memory_order_relaxed);
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

size_t os_mapped_bytes() { return g_mapped.load(std::memory_order_acquire); }
size_t os_committed_bytes() { return g_committed.load(std::memory_order_acquire); }
size_t os_peak_mapped_bytes() { return g_peak_mapped.load(std::memory_order_relaxed); }
void os_reset_peak() { g_peak_mapped.store(g_mapped.load(std::memory_order_relaxed), std::memory_order_relaxed); }
size_t os_map_calls() { return g_map_calls.load(std::memory_order_relaxed); }
size_t os_unmap_calls() { return g_unmap_calls.load(std::memory_order_relaxed); }
size_t os_purge_calls() { return g_purge_calls.load(std::memory_order_relaxed); }
size_t os_aligned_map_syscalls() { return g_aligned_map_syscalls.load(std::memory_order_relaxed); }

bool os_reset_for_test() {
  const bool balanced =
      g_mapped.load(std::memory_order_relaxed) == 0 && g_committed.load(std::memory_order_relaxed) == 0;
  for (std::atomic<size_t>* counter : {&g_mapped, &g_committed, &g_peak_mapped, &g_map_calls, &g_unmap_calls,
                                       &g_purge_calls, &g_aligned_map_syscalls}) {
    counter->store(0, std::memory_order_relaxed);
  }
  g_fail_after.store(-1, std::memory_order_relaxed);
  g_virtual_ms.store(0, std::memory_order_relaxed);
  g_transit.store(0, std::memory_order_relaxed);  // nothing is under way: no block is live
  return balanced;
}

}  // namespace tmalloc

extern "C" TM_EXPORT void tm_test_fail_os_after(long calls) {
  tmalloc::g_fail_after.store(calls < 0 ? -1 : calls, std::memory_order_relaxed);
}

extern "C" TM_EXPORT void tm_test_clock_virtual(int on) {
  tmalloc::g_virtual_ms.store(0, std::memory_order_relaxed);
  tmalloc::g_virtual_clock.store(on != 0, std::memory_order_relaxed);
}

extern "C" TM_EXPORT void tm_test_clock_advance(uint64_t ms) {
  tmalloc::g_virtual_ms.fetch_add(ms, std::memory_order_relaxed);
}

extern "C" TM_EXPORT uint64_t tm_test_clock_now(void) { return tmalloc::os_monotonic_ms(); }

extern "C" TM_EXPORT void tm_test_recycle_mappings(int on) {
  using namespace tmalloc;
  g_recycle.store(on != 0, std::memory_order_relaxed);
  if (on != 0) return;
  LockGuard guard(g_recycle_lock);
  for (size_t i = 0; i < g_recycled_count; ++i) {
    unmap_now(reinterpret_cast<void*>(g_recycled[i].begin), g_recycled[i].size);
  }
  g_recycled_count = 0;
  g_recycled_bytes = 0;
  g_recycled_resident = 0;
}

extern "C" TM_EXPORT size_t tm_test_recycled_bytes(void) {
  tmalloc::LockGuard guard(tmalloc::g_recycle_lock);
  return tmalloc::g_recycled_bytes;
}

extern "C" TM_EXPORT size_t tm_test_recycled_resident_bytes(void) {
  tmalloc::LockGuard guard(tmalloc::g_recycle_lock);
  return tmalloc::g_recycled_resident;
}
