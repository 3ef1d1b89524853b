// Large tier: one mapping per block (see large.h).
#include "large.h"

#include <errno.h>

#include <atomic>
#include <cstring>

#include "check.h"
#include "chunk_map.h"
#include "config.h"
#include "error.h"
#include "heap_map.h"
#include "linked_list.h"
#include "os.h"
#include "platform.h"
#include "sanitizer.h"
#include "segment_pool.h"
#include "spinlock.h"
#include "stats.h"
#include "tinymalloc.h"

namespace tmalloc {

namespace {

// calloc of a reused mapping clears stale ranges this large with os_zero (the pages go back to
// the kernel and fault in zeroed when touched), smaller ones with memset. A page fault costs
// about ten times a memset of its page on the machines measured (bench/workloads/large
// --zero 2 with 5-25 MiB blocks: callocs took 3.2x glibc's time when every reused block was
// dropped),
// and a calloc'd block is normally written in full; only a very large one, whose pages may
// mostly stay untouched, is cheaper to drop.
constexpr size_t kLargeZeroByMadvise = size_t{64} << 20;

// A stale range from this size up is first asked how much of it is resident (one mincore
// call, a byte per page): memset faults in every page the old block never touched, so when
// most of them are not resident, dropping the range (one madvise; the resident minority
// faults in again if the new owner writes it) costs fewer faults than clearing it. A block
// its old owner wrote in full is cleared as before, for one extra system call.
constexpr size_t kLargeZeroProbe = size_t{256} << 10;

// Clears the `size` stale bytes at `stale` of a reused mapping for calloc (see above).
void clear_stale(char* stale, size_t size) {
  if (size >= kLargeZeroByMadvise || (size >= kLargeZeroProbe && os_resident_bytes(stale, size, size / 2) < size / 2)) {
    os_zero(stale, size);
  } else {
    std::memset(stale, 0, size);
  }
}

SpinLock g_large_lock;
LargeHeader* g_large_blocks;
size_t g_large_count;
size_t g_large_usable;

// Ring of recently unmapped user pointers, consulted only on the error path so a second
// free of a large block is named a double free rather than a foreign pointer.
constexpr size_t kFreedRing = 64;
std::atomic<uintptr_t> g_freed_ring[kFreedRing];
std::atomic<size_t> g_freed_next{0};

// Header of the large block whose user pointer is p.
LargeHeader* header_for(void* p) { return reinterpret_cast<LargeHeader*>(static_cast<char*>(p) - kLargeHeaderSize); }

// Bytes from the user pointer to the end of the mapping.
size_t usable_of(const LargeHeader* header) {
  return header->mapping_size - static_cast<size_t>(static_cast<char*>(header->user) - header->mapping);
}

// Links a header into the live list (lock held).
void list_push(LargeHeader* header) {
  header->prev = nullptr;
  header->next = g_large_blocks;
  if (g_large_blocks != nullptr) g_large_blocks->prev = header;
  g_large_blocks = header;
}

// Unlinks a header from the live list (lock held).
void list_remove(LargeHeader* header) { list_unlink(g_large_blocks, header, "large-block list"); }

// Whether a large block's header holds together on its own: magic and kind, a user pointer
// just after it, a segment-aligned mapping and a requested size within the usable bytes
// (the header ends at the user pointer, so a write just before the block lands in
// `requested`).
bool header_sound(const LargeHeader* header) {
  return header->magic == kSegmentMagic && header->kind == SegmentKind::kLarge && header_for(header->user) == header &&
         (addr_of(header->mapping) & (kSegmentSize - 1)) == 0 && header->requested <= usable_of(header);
}

// Reports misuse unless p is exactly the user pointer of a sound header.
void validate(LargeHeader* header, const void* p, const char* what) {
  if (header->magic != kSegmentMagic || header->kind != SegmentKind::kLarge) {
    report_misuse("heap corruption", p, "large block header has a bad magic or kind");
  }
  if (header->user == p && !header_sound(header)) {
    report_misuse("heap corruption", p, "large block header is corrupted (mapping or requested size)");
  }
  if (header->user != p) {
    const bool inside = large_owns(header, p);
    report_misuse(what, p, inside ? "inside a large block: not its start" : "pointer not owned by tinymalloc");
  }
}

}  // namespace

void* large_alloc(size_t requested, size_t alignment, bool zero, uint32_t pool) {
  if (requested > kMaxRequest || alignment > kMaxRequest) {
    errno = ENOMEM;
    return nullptr;
  }
  if (!chunk_map_ensure()) {
    errno = ENOMEM;
    return nullptr;
  }
  const size_t offset = alignment > kLargeHeaderSize ? alignment : kLargeHeaderSize;
  // At least one byte past the user pointer, so even a zero-byte block lies inside its
  // mapping (and its chunk is registered).
  const size_t mapping_size = align_up(offset + (requested == 0 ? 1 : requested), kPageSize);
  const size_t mapping_alignment = alignment > kSegmentSize ? alignment : kSegmentSize;
  // From the pool or the OS to the block list, a mapping the heap check would not find.
  const OsTransit transit;
  // Freed large mappings are reused, grown when none is large enough: fresh pages cost a
  // fault and a kernel zeroing each, which is most of the time a large-block churn takes.
  const PooledSegment pooled = pool_take(mapping_size, mapping_alignment, PoolGrow::kYes);
  char* mapping = static_cast<char*>(pooled.address);
  if (mapping == nullptr) {
    mapping = static_cast<char*>(os_map_aligned(mapping_size, mapping_alignment));
    if (mapping == nullptr) return nullptr;
  } else if (zero && pooled.dirty_bytes > offset) {
    // Reused memory holds old data up to dirty_bytes; what lies beyond is fresh and zero.
    // Very large or mostly untouched stale ranges are dropped rather than cleared.
    const size_t stale = pooled.dirty_bytes - offset;
    clear_stale(mapping + offset, stale < requested ? stale : requested);
  }
  void* user = mapping + offset;
  LargeHeader* header = header_for(user);
  header->magic = kSegmentMagic;
  header->kind = SegmentKind::kLarge;
  header->mapping = mapping;
  header->mapping_size = mapping_size;
  header->user = user;
  header->requested = requested;
  header->pool = pool;
  chunk_map_set(mapping, mapping_size, header);
  {
    LockGuard guard(g_large_lock);
    list_push(header);
    ++g_large_count;
    g_large_usable += usable_of(header);
    stats_add_requested(requested);  // under the lock: heap checks see block and counter agree
  }
  // Under ASan the page-rounding slack after the request is unaddressable.
  poison(static_cast<char*>(user) + requested, usable_of(header) - requested);
  return user;
}

void large_free(LargeHeader* header, void* p, const char* what) {
  validate(header, p, what);
  // Off the block list to the pool: the mapping is in transit until the pool holds it.
  const OsTransit transit;
  {
    LockGuard guard(g_large_lock);
    list_remove(header);
    --g_large_count;
    g_large_usable -= usable_of(header);
    stats_sub_requested(header->requested);
  }
  char* mapping = header->mapping;
  const size_t mapping_size = header->mapping_size;
  chunk_map_set(mapping, mapping_size, nullptr);
  g_freed_ring[g_freed_next.fetch_add(1, std::memory_order_relaxed) % kFreedRing].store(addr_of(p),
                                                                                        std::memory_order_relaxed);
  // Under ASan the only poisoned bytes of a large block's mapping are the slack after its
  // request, in its last page (a program's own manual poisoning is its to undo before free).
  pool_give(mapping, mapping_size, PoolShadow::kCleanInterior);
}

size_t large_release_pool(uint32_t pool) {
  size_t freed = 0;
  for (;;) {
    LargeHeader* victim = nullptr;
    {
      LockGuard guard(g_large_lock);
      for (LargeHeader* header = g_large_blocks; header != nullptr; header = header->next) {
        if (header->pool == pool) {
          victim = header;
          break;
        }
      }
    }
    if (victim == nullptr) return freed;
    ++freed;
    large_free(victim, victim->user, "invalid free");
  }
}

void large_pool_totals(uint32_t pool, size_t* blocks, size_t* usable, size_t* mapped) {
  LockGuard guard(g_large_lock);
  *blocks = *usable = *mapped = 0;
  for (const LargeHeader* header = g_large_blocks; header != nullptr; header = header->next) {
    if (header->pool != pool) continue;
    ++*blocks;
    *usable += usable_of(header);
    *mapped += header->mapping_size;
  }
}

size_t large_usable_size(LargeHeader* header, const void* p, const char* what) {
  validate(header, p, what);
  // The caller may now use every usable byte: the slack past the request becomes
  // addressable (the requested bytes are already).
  unpoison(static_cast<const char*>(p) + header->requested, usable_of(header) - header->requested);
  return usable_of(header);
}

size_t large_requested_size(LargeHeader* header, const void* p, const char* what) {
  validate(header, p, what);
  return header->requested;
}

namespace {

// large_resize with mremap; nullptr + ENOMEM leaving the block untouched when the kernel
// refuses.
void* remap_block(LargeHeader* header, void* p, size_t requested) {
  const size_t offset = static_cast<size_t>(static_cast<char*>(p) - header->mapping);
  const size_t new_size = align_up(offset + (requested == 0 ? 1 : requested), kPageSize);
  LockGuard guard(g_large_lock);
  // The neighbours' links are rewritten to the moved header below: they must be the block's.
  list_verify_linked<&LargeHeader::prev, &LargeHeader::next>(g_large_blocks, header, "large-block list");
  char* old_mapping = header->mapping;
  const size_t old_size = header->mapping_size;
  const size_t old_usable = usable_of(header);
  // The header moves with the mapping; unregister first so no lookup sees a stale entry.
  if (new_size != old_size) chunk_map_set(old_mapping, old_size, nullptr);
  const size_t old_requested = header->requested;
  char* mapping = static_cast<char*>(os_remap(old_mapping, old_size, new_size, kSegmentSize));
  if (mapping == nullptr) {
    // Untouched, poisoning included: the caller may have unpoisoned the slack with
    // tm_usable_size and written it.
    chunk_map_set(old_mapping, old_size, header);
    return nullptr;
  }
  // Shadow does not move with the pages: clear what was poisoned at the old addresses.
  unpoison(static_cast<char*>(p) + old_requested, old_usable - old_requested);
  header = header_for(mapping + offset);
  header->mapping = mapping;
  header->mapping_size = new_size;
  header->user = mapping + offset;
  stats_sub_requested(header->requested);
  stats_add_requested(requested);
  header->requested = requested;
  // The list links of neighbours point at the old header address when it moved.
  if (header->prev != nullptr) {
    header->prev->next = header;
  } else {
    g_large_blocks = header;
  }
  if (header->next != nullptr) header->next->prev = header;
  g_large_usable = g_large_usable - old_usable + usable_of(header);
  chunk_map_set(mapping, new_size, header);
  poison(static_cast<char*>(header->user) + requested, usable_of(header) - requested);
  return header->user;
}

}  // namespace

void* large_resize(LargeHeader* header, void* p, size_t requested) {
  validate(header, p, "invalid realloc");
  if (requested > kMaxRequest) {
    errno = ENOMEM;
    return nullptr;
  }
  const int saved_errno = errno;
  void* resized = remap_block(header, p, requested);
  if (resized != nullptr) return resized;
  // mremap also refuses to grow a mapping the pool assembled from several kernel mappings
  // (segment_pool.h: gather): then a new block of the same memory pool, a copy of every
  // usable byte the caller may have written, and a free.
  errno = saved_errno;
  const size_t offset = static_cast<size_t>(static_cast<char*>(p) - header->mapping);
  void* fresh = large_alloc(requested, offset > kLargeHeaderSize ? offset : 0, false, header->pool);
  if (fresh == nullptr) return nullptr;  // errno = ENOMEM; p untouched
  const size_t old_usable = usable_of(header);
  unpoison(p, old_usable);  // the slack past the request is poisoned under ASan
  std::memcpy(fresh, p, old_usable < requested ? old_usable : requested);
  large_free(header, p, "invalid realloc");
  return fresh;
}

bool large_owns(const LargeHeader* header, const void* p) {
  const char* user = static_cast<const char*>(header->user);
  const char* end = header->mapping + header->mapping_size;
  return static_cast<const char*>(p) >= user && static_cast<const char*>(p) < end;
}

bool large_recently_freed(const void* p) {
  for (const auto& slot : g_freed_ring) {
    if (slot.load(std::memory_order_relaxed) == addr_of(p)) return true;
  }
  return false;
}

bool large_idle() {
  LockGuard guard(g_large_lock);
  return g_large_blocks == nullptr && g_large_count == 0;
}

TM_NO_COVERAGE void large_reset_for_test() {
  g_large_lock.reset();
  g_large_blocks = nullptr;
  g_large_count = 0;
  g_large_usable = 0;
  for (auto& slot : g_freed_ring) slot.store(0, std::memory_order_relaxed);
  g_freed_next.store(0, std::memory_order_relaxed);
}

void large_lock() { g_large_lock.lock(); }
void large_unlock() { g_large_lock.unlock(); }

TM_NO_COVERAGE void large_totals(LargeTotals* out) {
  out->live_blocks = g_large_count;
  out->usable_bytes = g_large_usable;
}

namespace {

// Heap checks: whether a list link read from a header may be followed (nullptr, or a header
// the address map names as its chunk's owner); an underflow of the block after it, or a
// stray write, may have put anything there.
TM_NO_COVERAGE bool plausible_header_link(const LargeHeader* link) {
  return link == nullptr || chunk_owner(link) == static_cast<const SegmentBase*>(link);
}

}  // namespace

TM_NO_COVERAGE int large_check_around(CheckResult* result, LargeHeader* header, const void* p) {
  LockGuard guard(g_large_lock);
  // p may lie past the mapping's end, in the rest of its last 4 MiB chunk: the header is all
  // there is to check then, as for any p in the block.
  (void)p;
  if (!header_sound(header)) return result->fail(TM_CHECK_LARGE, header, "large block header is corrupted");
  if (chunk_owner(header->mapping) != header || chunk_owner(header->mapping + header->mapping_size - 1) != header)
    return result->fail(TM_CHECK_SEGMENT, header, "address map entries do not name this large block");
  if (!plausible_header_link(header->prev) || !plausible_header_link(header->next))
    return result->fail(TM_CHECK_LARGE, header, "large block list links are not block headers");
  const bool linked_in = header->prev != nullptr ? header->prev->next == header : g_large_blocks == header;
  if (!linked_in || (header->next != nullptr && header->next->prev != header))
    return result->fail(TM_CHECK_LARGE, header, "large block list links do not round-trip");
  return 0;
}

TM_NO_COVERAGE void large_os_bytes(OsBytes* out) {
  size_t count = 0;
  for (const LargeHeader* header = g_large_blocks; header != nullptr && count++ < g_large_count;
       header = header->next) {
    out->mapped += header->mapping_size;
    out->committed += header->mapping_size;  // a live block's pages count as committed (os_zero too)
  }
}

TM_NO_COVERAGE void large_map(HeapMap& map) {
  size_t count = 0;
  for (const LargeHeader* header = g_large_blocks; header != nullptr && count++ < g_large_count;
       header = header->next) {
    map.large_block(addr_of(header->mapping), header->mapping_size, usable_of(header), header->requested, header->pool);
  }
}

TM_NO_COVERAGE int large_check(CheckResult* result, size_t* requested_total) {
  size_t count = 0;
  size_t usable = 0;
  size_t requested = 0;
  const LargeHeader* previous = nullptr;
  for (LargeHeader* header = g_large_blocks; header != nullptr; previous = header, header = header->next) {
    if (++count > g_large_count)
      return result->fail(TM_CHECK_LARGE, header, "large block list is longer than its count (cycle?)");
    // Each back link against the header walked before (no back link is followed).
    if (header->prev != previous)
      return result->fail(TM_CHECK_LARGE, header, "large block list links do not round-trip");
    if (!header_sound(header)) return result->fail(TM_CHECK_LARGE, header, "large block header is corrupted");
    if (chunk_owner(header->mapping) != header || chunk_owner(header->mapping + header->mapping_size - 1) != header) {
      return result->fail(TM_CHECK_SEGMENT, header, "address map entries do not name this large block");
    }
    if (!plausible_header_link(header->next))
      return result->fail(TM_CHECK_LARGE, header, "large block list link is not a block header");
    usable += usable_of(header);
    requested += header->requested;
  }
  if (count != g_large_count || usable != g_large_usable)
    return result->fail(TM_CHECK_STATS, &g_large_count, "large block counters differ from the block list");
  *requested_total = requested;
  return 0;
}

}  // namespace tmalloc
