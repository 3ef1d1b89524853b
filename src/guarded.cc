// Sampled guarded allocations (guarded.h): the slot region, its allocation and free, and the
// SIGSEGV handler that turns a fault in the region into a report.
#include "guarded.h"

#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

#include "check.h"
#include "chunk_map.h"
#include "debug.h"
#include "error.h"
#include "heap_map.h"
#include "options.h"
#include "os.h"
#include "platform.h"
#include "sanitizer.h"
#include "size_class.h"
#include "spinlock.h"
#include "stats.h"
#include "text_buffer.h"

#if defined(__SANITIZE_THREAD__)
#define TM_GUARDED_UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define TM_GUARDED_UNDER_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define TM_GUARDED_UNDER_SANITIZER 1
#endif

namespace tmalloc {

std::atomic<long> g_sample_rate{0};
std::atomic<uint32_t> g_sample_generation{0};

namespace {

enum class SlotState : uint8_t { kUnused, kLive, kFreed };

// What is known of one slot's latest block (read without the lock by the fault handler:
// a report about a slot being reused at that moment may name the newer block).
struct Slot {
  SlotState state;
  bool right;               // placed with its end on a page end (else its start on a page start)
  uint32_t pages;           // data pages made accessible for it
  uint16_t resident;        // data pages that may hold memory (bit k: data page k)
  size_t class_index;       // small class it counts in, or kSmallClassCount (medium sizes)
  uintptr_t user;           // the block's address
  size_t size;              // requested bytes
  size_t usable;            // usable bytes
  uint64_t freed_sequence;  // order of frees (the least recently freed slot is reused first)
  const void* alloc_site;
  const void* free_site;
  long alloc_thread;
  long free_thread;
};

struct GuardedRegion {
  SegmentBase base;  // what the address map names for the region's chunk
  SpinLock lock;
  // Start of the region (nullptr until the first sampled allocation); atomic for the fault
  // handler. release: a thread that sees it sees the map entry and the handler installed.
  std::atomic<char*> start;
  size_t slot_count;  // kGuardedSlots, or kGuardedMaxSlots in debug=guard (set before `start`)
  Slot slots[kGuardedMaxSlots];
  // Slot choice in O(1): slots [next_unused, slot_count) were never used; freed_order holds
  // the freed slots, least recently freed first (a ring of freed_count from freed_head).
  size_t next_unused;
  uint16_t freed_order[kGuardedMaxSlots];
  size_t freed_head;
  size_t freed_count;
  uint64_t frees;         // frees so far (freed_sequence source)
  uint64_t placements;    // allocations so far (alternates right and left placement)
  size_t resident_pages;  // set bits over every slot's `resident` (os accounting: committed)
  bool handler_installed;
  struct sigaction previous;  // the SIGSEGV action before ours
};

constinit GuardedRegion g_region{
    {kSegmentMagic, SegmentKind::kGuarded}, {}, {nullptr}, 0, {}, 0, {}, 0, 0, 0, 0, 0, false, {}};

// Whether the next mapping of the region takes kGuardedMaxSlots slots (debug=guard).
std::atomic<bool> g_guard_all{false};

// Bytes of the region (mapped or about to be).
size_t region_bytes() { return g_region.slot_count * kGuardedSlotSize; }

// Sequence that seeds each thread's sampling generator (restarted by tm_test_reset).
std::atomic<uint64_t> g_seed_counter{0};

// The kernel's id of the calling thread (async-signal-safe).
long thread_id() { return static_cast<long>(::syscall(SYS_gettid)); }

// Resident data pages kept for reuse: a freed slot keeps its pages (inaccessible) so that its
// next block costs one mprotect, not a page fault and a madvise too; past this many, the
// freed slots' pages go back to the OS.
constexpr size_t kResidentCap = 256;

// First address of slot i and of its data pages.
char* slot_start(size_t i) { return g_region.start.load(std::memory_order_relaxed) + i * kGuardedSlotSize; }
char* slot_data(size_t i) { return slot_start(i) + kPageSize; }

// Pages the block of slot s occupies.
char* first_page(size_t i, const Slot& s) {
  return slot_data(i) + (s.right ? (kGuardedDataPages - s.pages) * kPageSize : 0);
}

// Index of the first data page of slot s's block.
size_t first_page_index(const Slot& s) { return s.right ? kGuardedDataPages - s.pages : 0; }

// Bits of the data pages of slot s's block.
uint16_t page_mask(const Slot& s) { return static_cast<uint16_t>(((1u << s.pages) - 1) << first_page_index(s)); }

// The slots of the mapped region (none before it is mapped), for range-for loops.
struct SlotRange {
  const Slot* first;
  const Slot* last;
  const Slot* begin() const { return first; }
  const Slot* end() const { return last; }
};
SlotRange used_slots() { return {g_region.slots, g_region.slots + g_region.slot_count}; }

// Returns the resident pages of every freed slot to the OS (the lock is held).
void purge_freed_slots() {
  for (size_t i = 0; i < g_region.slot_count; ++i) {
    Slot& s = g_region.slots[i];
    if (s.state != SlotState::kFreed || s.resident == 0) continue;
    const unsigned low = static_cast<unsigned>(__builtin_ctz(s.resident));
    const unsigned high = 31u - static_cast<unsigned>(__builtin_clz(s.resident));
    const size_t hull = high - low + 1;
    const size_t resident = static_cast<size_t>(__builtin_popcount(s.resident));
    os_purge_inaccessible(slot_data(i) + low * kPageSize, hull * kPageSize);
    os_note_recommitted((hull - resident) * kPageSize);  // os_purge counted the whole hull
    g_region.resident_pages -= resident;
    s.resident = 0;
  }
}

void on_fault(int signal, siginfo_t* info, void* context);

// Maps the region (all of it inaccessible), registers it in the address map and installs the
// fault handler; the lock is held. False when the OS refuses.
bool map_region() {
  if (!chunk_map_ensure()) return false;
  g_region.slot_count = g_guard_all.load(std::memory_order_relaxed) ? kGuardedMaxSlots : kGuardedSlots;
  const size_t bytes = region_bytes();
  void* start = os_map_aligned(bytes, kSegmentSize);
  if (start == nullptr) return false;
  if (::mprotect(start, bytes, PROT_NONE) != 0) {
    os_unmap(start, bytes);
    return false;
  }
  os_purge_inaccessible(start, bytes);  // not committed until a slot's pages are opened
  if (!g_region.handler_installed) {
    struct sigaction action;
    std::memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    if (::sigaction(SIGSEGV, &action, &g_region.previous) == 0) g_region.handler_installed = true;
  }
  chunk_map_set(start, bytes, &g_region.base);
  g_region.start.store(static_cast<char*>(start), std::memory_order_release);
  return true;
}

// The slot a new block takes: one never used, else the least recently freed; kNoSlot when
// every slot is live. take_slot(i) then removes it from the choice (once the block is placed).
size_t pick_slot() {
  if (g_region.next_unused < g_region.slot_count) return g_region.next_unused;
  if (g_region.freed_count > 0) return g_region.freed_order[g_region.freed_head];
  return kNoSlot;
}

void take_slot(size_t i) {
  if (i == g_region.next_unused) {
    ++g_region.next_unused;
    return;
  }
  g_region.freed_head = (g_region.freed_head + 1) % kGuardedMaxSlots;  // i was the ring's head
  --g_region.freed_count;
}

// Slot index of an address inside the region (kNoSlot when outside).
size_t slot_index(const void* p) {
  char* start = g_region.start.load(std::memory_order_acquire);  // then slot_count is set
  const uintptr_t offset = addr_of(p) - addr_of(start);
  return start == nullptr || offset >= region_bytes() ? kNoSlot : offset / kGuardedSlotSize;
}

// " (<n> bytes) allocated by thread <t> at <site>[, freed by thread <t> at <site>]".
void describe_block(TextBuffer& b, const Slot& s) {
  b.str(s.usable == 0 ? "zero-size block " : "sampled block ").ptr(reinterpret_cast<const void*>(s.user));
  b.str(" of ").dec(s.size).str(" bytes (").dec(s.usable).str(" usable), allocated by thread ");
  b.dec(static_cast<uint64_t>(s.alloc_thread)).str(" at ");
  append_site(b, s.alloc_site);
  if (s.state == SlotState::kFreed) {
    b.str(", freed by thread ").dec(static_cast<uint64_t>(s.free_thread)).str(" at ");
    append_site(b, s.free_site);
  }
}

// What the JSON form of a report knows of slot s's block (nothing for a slot never used).
ReportBlock report_block_of(const Slot& s) {
  if (s.state == SlotState::kUnused) return {.tier = "sampled"};
  return {.size = s.size,
          .tier = "sampled",
          .alloc_site = s.alloc_site,
          .free_site = s.state == SlotState::kFreed ? s.free_site : nullptr};
}

// The live block p of its slot, or a report naming `what` (a freed block is a double free
// when `what` is a free).
Slot& live_slot(const void* p, const char* what) {
  const size_t i = slot_index(p);
  if (i < kNoSlot) {
    Slot& s = g_region.slots[i];
    if (s.state == SlotState::kLive && s.user == addr_of(p)) return s;
    report_context(report_block_of(s));
    TextBuffer detail;
    if (s.state == SlotState::kFreed && s.user == addr_of(p)) {
      detail.str("already freed: ");
      describe_block(detail, s);
      report_misuse(std::strcmp(what, "invalid free") == 0 ? "double free" : what, p, detail);
    }
    if (s.state == SlotState::kLive) {
      detail.str("not the start of ");
      describe_block(detail, s);
      report_misuse(what, p, detail);
    }
  }
  report_misuse(what, p, "pointer into the sampled-allocation region, not a live block");
}

// Writes the report of a fault at `address` in slot i.
void report_fault(uintptr_t address, size_t i) {
  const Slot& s = g_region.slots[i];
  TextBuffer line;
  const char* what = "invalid access";
  TextBuffer detail;
  if (s.state == SlotState::kUnused) {
    detail.str("an address in the sampled-allocation region where no block was ever placed");
  } else if (address >= s.user && address < s.user + s.usable) {
    what = "use after free";
    detail.str("byte ").dec(address - s.user).str(" of freed ");
    describe_block(detail, s);
  } else if (address >= s.user + s.usable) {
    what = s.state == SlotState::kFreed ? "use after free" : "buffer overflow";
    detail.dec(address - (s.user + s.usable)).str(" bytes to the right of ");
    describe_block(detail, s);
  } else {
    what = s.state == SlotState::kFreed ? "use after free" : "buffer underflow";
    detail.dec(s.user - address).str(" bytes to the left of ");
    describe_block(detail, s);
  }
  line.str("tinymalloc: ").str(what).str(" at ").hex(address).str(" (").str(detail.c_str()).str(")");
  report_json_line(what, reinterpret_cast<const void*>(address), line.c_str(), report_block_of(s));
  line.str("\n");
  write_stderr(line.c_str(), line.size());
}

// SIGSEGV: a fault in the region is reported, then the previous action is put back and the
// faulting instruction runs again (so the process ends as it would have without us, or the
// program's own handler sees the fault). Any other fault goes to the previous action.
TM_NO_FUNCTION_CHECK void on_fault(int signal, siginfo_t* info, void* context) {
  const size_t i = slot_index(info->si_addr);
  if (i < kNoSlot) {
    report_fault(addr_of(info->si_addr), i);
    ::sigaction(SIGSEGV, &g_region.previous, nullptr);
    return;
  }
  const struct sigaction& previous = g_region.previous;
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
    previous.sa_sigaction(signal, info, context);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(signal);
  } else {
    // Default action: put it back and fault again.
    ::sigaction(SIGSEGV, &previous, nullptr);
  }
}

// Places a block in a slot (the body of guarded_alloc, under the lock).
void* place(size_t size, size_t usable, size_t class_index, const void* site) {
  LockGuard guard(g_region.lock);
  if (g_region.start.load(std::memory_order_relaxed) == nullptr && !map_region()) return nullptr;
  const size_t i = pick_slot();
  if (i == kNoSlot) return nullptr;
  Slot& s = g_region.slots[i];
  s.pages = static_cast<uint32_t>((usable + kPageSize - 1) / kPageSize);
  s.right = (g_region.placements++ & 1) == 0;
  char* pages = first_page(i, s);
  const size_t bytes = s.pages * kPageSize;
  if (::mprotect(pages, bytes, PROT_READ | PROT_WRITE) != 0) return nullptr;
  take_slot(i);
  const uint16_t fresh = static_cast<uint16_t>(page_mask(s) & ~s.resident);
  os_note_recommitted(static_cast<size_t>(__builtin_popcount(fresh)) * kPageSize);
  g_region.resident_pages += static_cast<size_t>(__builtin_popcount(fresh));
  s.resident = static_cast<uint16_t>(s.resident | fresh);
  // Right placement: the usable bytes end on the page end (usable is a multiple of the
  // alignment, so the start is aligned too); left: the block starts on the page.
  s.user = addr_of(pages) + (s.right ? bytes - usable : 0);
  s.size = size;
  s.usable = usable;
  s.class_index = class_index;
  s.alloc_site = site;
  s.free_site = nullptr;
  s.alloc_thread = thread_id();
  s.state = SlotState::kLive;
  return reinterpret_cast<void*>(s.user);
}

}  // namespace

void guarded_init() {
#if defined(TM_GUARDED_UNDER_SANITIZER)
  g_sample_rate.store(0, std::memory_order_relaxed);  // the sanitizer guards every block
#else
  g_sample_rate.store(option(OptionId::kSampleRate), std::memory_order_relaxed);
#endif
  g_sample_generation.fetch_add(1, std::memory_order_relaxed);
}

uint64_t guarded_seed() {
  // splitmix64 of a counter: distinct, well-mixed seeds, the same sequence after a reset.
  uint64_t z = g_seed_counter.fetch_add(1, std::memory_order_relaxed) * 0x9e3779b97f4a7c15u + 0x9e3779b97f4a7c15u;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return (z ^ (z >> 31)) | 1;
}

long guarded_next_interval(uint64_t* state) {
  const long rate = g_sample_rate.load(std::memory_order_relaxed);
  if (rate <= 1) return 1;
  // xorshift64: uniform in [1, 2 * rate - 1], mean rate.
  uint64_t x = *state;
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  *state = x;
  return 1 + static_cast<long>(x % static_cast<uint64_t>(2 * rate - 1));
}

void guarded_set_guard_all(bool on) { g_guard_all.store(on, std::memory_order_relaxed); }

bool guarded_block_pages(const void* p, char** first, char** last) {
  LockGuard guard(g_region.lock);
  const size_t i = slot_index(p);
  if (i == kNoSlot || g_region.slots[i].state != SlotState::kLive || g_region.slots[i].user != addr_of(p)) return false;
  const Slot& s = g_region.slots[i];
  *first = first_page(i, s);
  *last = *first + s.pages * kPageSize;
  return true;
}

bool guarded_available() {
#if defined(TM_GUARDED_UNDER_SANITIZER)
  return false;
#else
  return true;
#endif
}

void* guarded_alloc(size_t size, size_t usable, size_t alignment, size_t class_index, const void* site) {
  if (!guarded_available() || usable > kGuardedMaxSize || alignment > kPageSize || usable < size) return nullptr;
  // The slot's pages are counted committed under the lock, its requested bytes after it: the
  // heap check, which reads the region before its other locks, must not compare meanwhile.
  const OsTransit transit;
  void* block = place(size, usable, class_index, site);
  // Outside the lock (it may set up the thread's cache, which takes the registry lock).
  if (block != nullptr && (class_index == kSmallClassCount || small_tracks_requested())) stats_add_requested(size);
  return block;
}

void guarded_free(const SegmentBase*, void* p, const void* site, const char* what) {
  const OsTransit transit;  // as in guarded_alloc: pages purged under the lock, requested bytes after
  g_region.lock.lock();
  const size_t i = slot_index(p);
  if (i == kNoSlot || g_region.slots[i].state != SlotState::kLive || g_region.slots[i].user != addr_of(p)) {
    g_region.lock.unlock();
    (void)live_slot(p, what);  // reports
  }
  Slot& s = g_region.slots[i];
  char* pages = first_page(i, s);
  const size_t bytes = s.pages * kPageSize;
  // Inaccessible; the pages stay resident for the slot's next block unless too many are.
  ::mprotect(pages, bytes, PROT_NONE);
  s.state = SlotState::kFreed;
  if (g_region.resident_pages > kResidentCap) purge_freed_slots();
  s.freed_sequence = ++g_region.frees;
  // Reused last: the ring's tail (it has room: it holds only freed slots).
  g_region.freed_order[(g_region.freed_head + g_region.freed_count) % kGuardedMaxSlots] = static_cast<uint16_t>(i);
  ++g_region.freed_count;
  s.free_site = site;
  s.free_thread = thread_id();
  const bool counted = s.class_index == kSmallClassCount || small_tracks_requested();
  const size_t size = s.size;
  g_region.lock.unlock();
  if (counted) stats_sub_requested(size);
}

size_t guarded_usable_size(const SegmentBase*, const void* p, const char* what) {
  LockGuard guard(g_region.lock);
  return live_slot(p, what).usable;
}

size_t guarded_requested_size(const SegmentBase*, const void* p, const char* what) {
  LockGuard guard(g_region.lock);
  return live_slot(p, what).size;
}

bool guarded_owns(const SegmentBase*, const void* p) {
  LockGuard guard(g_region.lock);
  const size_t i = slot_index(p);
  if (i == kNoSlot || g_region.slots[i].state != SlotState::kLive) return false;
  // A zero-size block (debug mode) has no byte, but the address it was handed out at is
  // still the block's: owned, as every other block's start is.
  const size_t extent = g_region.slots[i].usable > 0 ? g_region.slots[i].usable : 1;
  return addr_of(p) - g_region.slots[i].user < extent;
}

void guarded_os_bytes(OsBytes* out) {
  LockGuard guard(g_region.lock);
  if (g_region.start.load(std::memory_order_relaxed) == nullptr) return;
  out->mapped += region_bytes();
  out->committed += g_region.resident_pages * kPageSize;
}

void guarded_map(HeapMap& map) {
  char* start = g_region.start.load(std::memory_order_relaxed);
  if (start == nullptr) return;  // no block was ever sampled
  // One row per 64 slots (4 MiB).
  for (size_t first = 0; first < g_region.slot_count; first += kGuardedSlots) {
    map.guarded_region(addr_of(start + first * kGuardedSlotSize));
    for (size_t i = first; i < first + kGuardedSlots && i < g_region.slot_count; ++i) {
      const Slot& s = g_region.slots[i];
      map.guarded_slot(s.state == SlotState::kLive, s.state == SlotState::kFreed, s.usable);
    }
    map.end_row();
  }
}

void guarded_totals(size_t* class_counts, GuardedTotals* out) {
  LockGuard guard(g_region.lock);
  for (const Slot& s : used_slots()) {
    if (s.state != SlotState::kLive) continue;
    out->usable_bytes += s.usable;
    if (s.class_index == kSmallClassCount) {
      ++out->medium_live;
    } else {
      ++out->small_live;
      ++class_counts[s.class_index];
      out->small_usable_bytes += class_size(s.class_index);
    }
  }
}

size_t guarded_requested() {
  LockGuard guard(g_region.lock);
  size_t total = 0;
  for (const Slot& s : used_slots()) {
    if (s.state == SlotState::kLive && (s.class_index == kSmallClassCount || small_tracks_requested())) total += s.size;
  }
  return total;
}

void guarded_lock() { g_region.lock.lock(); }
void guarded_unlock() { g_region.lock.unlock(); }

bool guarded_idle() {
  LockGuard guard(g_region.lock);
  for (const Slot& s : used_slots()) {
    if (s.state == SlotState::kLive) return false;
  }
  return true;
}

void guarded_reset_for_test() {
  LockGuard guard(g_region.lock);
  char* start = g_region.start.load(std::memory_order_relaxed);
  if (start != nullptr) {
    chunk_map_set(start, region_bytes(), nullptr);
    g_region.start.store(nullptr, std::memory_order_relaxed);
    // os_unmap counts the whole range as committed until now.
    os_note_recommitted(region_bytes() - g_region.resident_pages * kPageSize);
    os_unmap(start, region_bytes());
  }
  if (g_region.handler_installed) {
    ::sigaction(SIGSEGV, &g_region.previous, nullptr);
    g_region.handler_installed = false;
  }
  // Only slots below next_unused were ever taken since the last reset; the others still hold
  // Slot{} (clearing all kGuardedMaxSlots, 320 KiB, was most of an empty fuzz input's time).
  for (size_t i = 0; i < g_region.next_unused; ++i) g_region.slots[i] = Slot{};
  g_region.frees = 0;
  g_region.placements = 0;
  g_region.slot_count = 0;
  g_region.next_unused = 0;
  g_region.freed_head = 0;
  g_region.freed_count = 0;
  g_region.resident_pages = 0;
  g_seed_counter.store(0, std::memory_order_relaxed);
}

}  // namespace tmalloc
