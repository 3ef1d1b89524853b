// Debug mode (see debug.h): per-block records in a sharded, out-of-band hash table
// (debug_records.h), canaries on both sides of every block, fill patterns, a FIFO quarantine
// of freed blocks, allocation sites named with dladdr, and the leak report.
//
// This runs inside malloc: it never allocates (tables and scratch space come from mmap), uses
// no exceptions and no global constructors (constinit state), and builds its reports in
// TextBuffers written with write(2).
//
// Locks, in this order: g_mode_lock, the quarantine's lock, the record table's shard locks
// in index order (debug_records.h; only debug_update_mode, the fork handlers, the leak report
// and the exit check hold more than one). No lock of debug mode is held while the core is
// called, so the core's own lock order is unaffected (and the core never calls here).
#include "debug.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "api_internal.h"
#include "check.h"
#include "debug_records.h"
#include "error.h"
#include "guarded.h"
#include "options.h"
#include "platform.h"
#include "spinlock.h"
#include "text_buffer.h"
#include "tinymalloc.h"
#include "trace.h"

namespace tmalloc {

// Routing: api.cc sends every call here while this is set. It stays set while records exist
// even when checking is off, so blocks with canaries are never handed to the core as is.
// Written under g_mode_lock or a shard lock (see allocate_recorded); read relaxed anywhere:
// a thread only needs a recent value, and a thread that got a debug block from another one
// synchronised with it and so sees the store made before the block was handed out.
std::atomic<bool> g_debug_mode{false};
constinit std::atomic<size_t> g_fast_size_bound{kSizeTableMax + 1};

namespace {

constexpr size_t kCanaryBytes = 16;         // the rear canary, and the unit of the front one
constexpr size_t kDefaultFront = 16;        // front canary at the default alignment
constexpr size_t kMaxFrontCanary = 4096;    // a larger front has its canary in its last 4 KiB
constexpr unsigned char kAllocFill = 0xAB;  // new blocks (not calloc)
constexpr unsigned char kFreeFill = 0xDF;   // freed blocks in the quarantine
constexpr unsigned char kGuardFill = 0xBE;  // debug=guard: the rest of a block's pages
constexpr uintptr_t kFrontSalt = 0x5bd1e9955bd1e995u;

constexpr size_t kQuarantineBlocks = 4096;
constexpr size_t kQuarantineBytes = size_t{32} << 20;
// Larger freed blocks are released at once (one would push out much of the quarantine).
constexpr size_t kMaxQuarantinedBlock = kQuarantineBytes / 8;
constexpr size_t kEvictBatch = 16;  // blocks taken out of the quarantine per lock hold

constexpr size_t kMaxSymbol = 120;    // longer symbol names are cut in reports
constexpr size_t kMaxLeakSites = 50;  // sites listed by the leak report
constexpr size_t kPageBytes = 4096;

// The record table (debug_records.h).
using debug_table::erase;
using debug_table::find;
using debug_table::g_shards;
using debug_table::insert;
using debug_table::lock_all;
using debug_table::lookup;
using debug_table::map_pages;
using debug_table::mix64;
using debug_table::Record;
using debug_table::Shard;
using debug_table::shard_of;
using debug_table::State;
using debug_table::total_records_locked;
using debug_table::unlock_all;

// The freed blocks waiting to be released, oldest first. One FIFO for the process: with one
// per shard, the core's reuse of the address just released would keep all the traffic in the
// first shard to fill up, and blocks of the other shards would never leave.
struct Quarantine {
  struct Entry {
    uintptr_t key;  // user pointer (its record, state freed, stays in the table)
    size_t size;
  };
  SpinLock lock;
  Entry ring[kQuarantineBlocks] = {};
  size_t head = 0;  // oldest entry
  size_t count = 0;
  size_t bytes = 0;  // requested bytes of the blocks in the ring
};

constinit Quarantine g_quarantine;
// Serialises mode changes (debug_update_mode, maybe_route_off) against each other.
constinit SpinLock g_mode_lock;
// Whether new blocks get records and freed ones go to the quarantine (options debug or
// leaks). Written under g_mode_lock; read relaxed: it only selects a path, every piece of
// state it guards is under a shard lock.
constinit std::atomic<bool> g_checking{false};
// debug=guard: every block that fits a slot goes on guard pages. Written under g_mode_lock;
// read relaxed (it only selects a path).
constinit std::atomic<bool> g_guard_all_blocks{false};
constinit bool g_fork_handlers_installed = false;  // under g_mode_lock
// Canary key: a pure function of the process (AT_RANDOM, ASLR), so threads that compute it
// concurrently store the same value; relaxed is enough, and 0 means "not computed yet".
constinit std::atomic<uint64_t> g_key{0};
// Allocation sequence numbers; relaxed: only uniqueness and rough order matter.
constinit std::atomic<uint64_t> g_seq{0};

// ---- Canaries and fill patterns ----

uint64_t canary_key() {
  uint64_t key = g_key.load(std::memory_order_relaxed);
  if (TM_LIKELY(key != 0)) return key;
  // The kernel's 16 random bytes for this process, mixed with an address (ASLR).
  key = mix64(addr_of(&g_key) ^ 0x243f6a8885a308d3u);
  const auto* random_bytes = reinterpret_cast<const unsigned char*>(getauxval(AT_RANDOM));
  if (random_bytes != nullptr) {
    uint64_t random[2];  // the bytes need not be aligned
    std::memcpy(random, random_bytes, sizeof random);
    key ^= mix64(random[1] ^ (random[0] >> 3));
  }
  key |= 1;
  g_key.store(key, std::memory_order_relaxed);
  return key;
}

// The 16 canary bytes for the block edge at `where`: every byte is in 0x80..0xfe and is
// neither fill byte, so a NUL terminator, ASCII text or a fill pattern written past an edge
// always shows.
struct Canary {
  unsigned char b[kCanaryBytes];
};

Canary canary_for(uintptr_t where) {
  Canary c{};
  uint64_t w = mix64(canary_key() ^ where);
  for (size_t i = 0; i < kCanaryBytes; ++i) {
    if (i == 8) w = mix64(w + 0x9e3779b97f4a7c15u);
    auto v = static_cast<unsigned char>(0x80 | ((w >> (8 * (i % 8))) & 0x7f));
    if (v == kAllocFill || v == kFreeFill || v == 0xff) v ^= 0x10;
    c.b[i] = v;
  }
  return c;
}

Canary rear_canary(uintptr_t user, size_t size) { return canary_for(user + size); }
Canary front_canary(uintptr_t user) { return canary_for(user ^ kFrontSalt); }

unsigned char* user_of(const Record& r) { return reinterpret_cast<unsigned char*>(r.key); }
void* core_of(const Record& r) { return user_of(r) - r.front; }

// Bytes just before the user pointer that a front of `front` bytes fills with its canary: all
// of it up to 4 KiB, the last 4 KiB of the larger front of a block aligned above that (its
// earlier pages are never touched; an underrun reaches the bytes nearest the block first).
size_t canary_span(size_t front) { return front < kMaxFrontCanary ? front : kMaxFrontCanary; }

// Writes the rear canary after the block and the front canary into its front.
void write_canaries(unsigned char* user, size_t size, size_t front) {
  const Canary rear = rear_canary(addr_of(user), size);
  std::memcpy(user + size, rear.b, kCanaryBytes);
  const size_t span = canary_span(front);
  if (span == 0) return;
  const Canary f = front_canary(addr_of(user));
  for (size_t off = 0; off < span; off += kCanaryBytes) std::memcpy(user - span + off, f.b, kCanaryBytes);
}

// Index of the first of the n bytes at p that is not `fill`, or n. Checks 64 bytes per
// branch, then finds the byte that differs.
size_t first_not(const unsigned char* p, size_t n, unsigned char fill) {
  constexpr size_t kChunk = 64;
  const uint64_t word = 0x0101010101010101u * fill;
  size_t i = 0;
  for (; i + kChunk <= n; i += kChunk) {
    uint64_t diff = 0;
    for (size_t k = 0; k < kChunk; k += 8) {
      uint64_t w;
      std::memcpy(&w, p + i + k, 8);
      diff |= w ^ word;
    }
    if (diff != 0) break;
  }
  for (; i < n; ++i) {
    if (p[i] != fill) return i;
  }
  return n;
}

// Offset in the front (0 .. front) of the first canary byte that differs from the pattern, or
// front.
size_t first_front_change(const Record& r) {
  const Canary f = front_canary(r.key);
  const size_t span = canary_span(r.front);
  const unsigned char* canary = user_of(r) - span;
  for (size_t off = 0; off < span; off += kCanaryBytes) {
    if (std::memcmp(canary + off, f.b, kCanaryBytes) == 0) continue;
    for (size_t i = 0; i < kCanaryBytes; ++i) {
      if (canary[off + i] != f.b[i]) return r.front - span + off + i;
    }
  }
  return r.front;
}

// Index of the first rear canary byte that differs, or kCanaryBytes; *changed: how many do.
size_t first_rear_change(const Record& r, size_t* changed) {
  const Canary rear = rear_canary(r.key, r.size);
  const unsigned char* end = user_of(r) + r.size;
  size_t first = kCanaryBytes;
  *changed = 0;
  if (std::memcmp(end, rear.b, kCanaryBytes) == 0) return first;
  for (size_t i = 0; i < kCanaryBytes; ++i) {
    if (end[i] == rear.b[i]) continue;
    ++*changed;
    if (first == kCanaryBytes) first = i;
  }
  return first;
}

// ---- Reports (abort; dladdr only here) ----

}  // namespace

// Appends the NUL-terminated s, cut to `limit` characters ("..." marks a cut).
static void append_cut(TextBuffer& b, const char* s, size_t limit) {
  char text[kMaxSymbol + 4];
  size_t n = 0;
  while (s[n] != '\0' && n < limit && n < kMaxSymbol) {
    text[n] = s[n];
    ++n;
  }
  if (s[n] != '\0') {
    text[n++] = '.';
    text[n++] = '.';
    text[n++] = '.';
  }
  text[n] = '\0';
  b.str(text);
}

// "0x<addr> <symbol>+0x<off> (<object>)", or "0x<addr> (<object>+0x<off>)" when dladdr knows
// the object but no symbol, or "0x<addr>".
void append_site(TextBuffer& b, const void* site) {
  b.ptr(site);
  Dl_info info;
  if (site == nullptr || dladdr(site, &info) == 0) return;
  const char* object = info.dli_fname != nullptr ? info.dli_fname : "";
  const char* slash = std::strrchr(object, '/');
  if (slash != nullptr) object = slash + 1;
  if (info.dli_sname != nullptr && info.dli_saddr != nullptr) {
    b.str(" ");
    append_cut(b, info.dli_sname, kMaxSymbol);
    b.str("+").hex(addr_of(site) - addr_of(info.dli_saddr));
    if (*object != '\0') b.str(" (").str(object).str(")");
  } else if (*object != '\0') {
    b.str(" (").str(object).str("+").hex(addr_of(site) - addr_of(info.dli_fbase)).str(")");
  }
}

namespace {

// "block of <n> bytes allocated at <site>[, freed at <site>]" (and the same for the JSON form
// of the report that follows).
void describe(TextBuffer& b, const Record& r) {
  report_context({.size = r.size,
                  .tier = "debug",
                  .alloc_site = r.site,
                  .free_site = r.state == State::kFreed ? r.free_site : nullptr});
  b.str("block of ").dec(r.size).str(" bytes allocated at ");
  append_site(b, r.site);
  if (r.state == State::kFreed) {
    b.str(", freed at ");
    append_site(b, r.free_site);
  }
}

[[noreturn]] TM_NOINLINE void report_block(const char* what, const Record& r) {
  TextBuffer detail;
  describe(detail, r);
  report_misuse(what, user_of(r), detail);
}

// The fill around a debug=guard block in its pages: *rear_first is the offset past the block's
// end of the first changed byte after it (or kNone) and *rear_changed how many changed there;
// *front_changed how many changed before its start. False when nothing changed.
constexpr size_t kNone = ~size_t{0};
bool guard_fill_damage(const Record& r, size_t* rear_first, size_t* rear_changed, size_t* front_changed) {
  *rear_first = kNone;
  *rear_changed = 0;
  *front_changed = 0;
  char* first = nullptr;
  char* last = nullptr;
  if (r.size == 0 || !guarded_block_pages(user_of(r), &first, &last)) return false;
  const auto* front = reinterpret_cast<const unsigned char*>(first);
  const size_t front_bytes = static_cast<size_t>(user_of(r) - front);
  for (size_t i = first_not(front, front_bytes, kGuardFill); i < front_bytes; ++i) {
    if (front[i] != kGuardFill) ++*front_changed;
  }
  const unsigned char* rear = user_of(r) + r.size;
  const size_t rear_bytes = static_cast<size_t>(reinterpret_cast<unsigned char*>(last) - rear);
  for (size_t i = first_not(rear, rear_bytes, kGuardFill); i < rear_bytes; ++i) {
    if (rear[i] == kGuardFill) continue;
    if (*rear_first == kNone) *rear_first = i;
    ++*rear_changed;
  }
  return *rear_changed != 0 || *front_changed != 0;
}

// Reports a change to the fill around the debug=guard block r (an overflow or underflow that
// stayed inside its pages: the slack up to the alignment, or the page the block starts in).
void check_guard_fill(const Record& r) {
  size_t rear_first;
  size_t rear_changed;
  size_t front_changed;
  if (!guard_fill_damage(r, &rear_first, &rear_changed, &front_changed)) return;
  TextBuffer detail;
  describe(detail, r);
  if (rear_changed != 0) {
    detail.str("; ").dec(rear_changed).str(" bytes written past its end, first at offset ").dec(r.size + rear_first);
    report_misuse("heap overflow", user_of(r), detail);
  }
  detail.str("; ").dec(front_changed).str(" bytes written before its start");
  report_misuse("heap underflow", user_of(r), detail);
}

// Reports a damaged canary of the block r, if any (live blocks: free, realloc).
void check_canaries(const Record& r) {
  if (r.guarded) {
    check_guard_fill(r);
    return;
  }
  size_t changed = 0;
  const size_t first = first_rear_change(r, &changed);
  if (TM_UNLIKELY(first < kCanaryBytes)) {
    TextBuffer detail;
    describe(detail, r);
    detail.str("; ").dec(changed).str(" bytes written past its end, first at offset ").dec(r.size + first);
    report_misuse("heap overflow", user_of(r), detail);
  }
  const size_t front_first = first_front_change(r);
  if (TM_UNLIKELY(front_first < r.front)) {
    TextBuffer detail;
    describe(detail, r);
    detail.str("; ").dec(r.front - front_first).str(" bytes written before its start");
    report_misuse("heap underflow", user_of(r), detail);
  }
}

[[noreturn]] TM_NOINLINE void report_write_after_free(const Record& r, const char* sign, size_t offset) {
  TextBuffer detail;
  describe(detail, r);
  detail.str("; byte at offset ").str(sign).dec(offset).str(" changed");
  report_misuse("write after free", user_of(r), detail);
}

// Reports a change to a quarantined block: its fill or either canary.
void verify_freed(const Record& r) {
  const size_t i = first_not(user_of(r), r.size, kFreeFill);
  if (TM_UNLIKELY(i < r.size)) report_write_after_free(r, "", i);
  size_t changed = 0;
  const size_t rear = first_rear_change(r, &changed);
  if (TM_UNLIKELY(rear < kCanaryBytes)) report_write_after_free(r, "", r.size + rear);
  const size_t front = first_front_change(r);
  if (TM_UNLIKELY(front < r.front)) report_write_after_free(r, "-", r.front - front);
}

// A free, realloc or usable_size of a pointer without a record: the core start of a debug
// block (`off` bytes before its user pointer) would pass the core's own checks, so it is
// reported here. A block's front is its alignment (16 at least), and its user pointer is
// aligned to it: only an address aligned to `off` can be the core start `off` bytes before one.
void check_not_core_start(const void* p, const char* what) {
  const uintptr_t a = addr_of(p);
  if (a == 0) return;
  for (size_t off = kDefaultFront; off <= TM_MAX_ALIGNMENT && (a & (off - 1)) == 0; off *= 2) {
    Record r{};
    if (!lookup(a + off, &r) || r.front != off) continue;
    TextBuffer detail;
    detail.str("pointer ").dec(off).str(" bytes before the ");
    describe(detail, r);
    report_misuse(what, p, detail);
  }
}

// ---- Mode ----

bool checking_wanted() { return option(OptionId::kDebug) != 0 || option(OptionId::kLeaks) != 0; }

bool checking() { return g_checking.load(std::memory_order_relaxed); }

// With checking off, turns the routing off once no record is left (never while tracing).
void maybe_route_off() {
  LockGuard mode(g_mode_lock);
  if (checking() || trace_active()) return;
  lock_all();
  if (total_records_locked() == 0) debug_set_routing(false);
  unlock_all();
}

// Fork: no lock of this file may be copied into the child while another thread holds it.
void fork_prepare() {
  g_mode_lock.lock();
  g_quarantine.lock.lock();
  lock_all();
}

void fork_release() {
  unlock_all();
  g_quarantine.lock.unlock();
  g_mode_lock.unlock();
}

// ---- Allocation, free, quarantine ----

// Bytes before the user pointer of a block aligned to `alignment`: the alignment itself (the
// user pointer of an aligned core block moved on by whole alignments stays aligned).
size_t front_for(size_t alignment) { return alignment <= kDefaultFront ? kDefaultFront : alignment; }

// A recorded block of `size` bytes at `alignment` (<= 16: the default), zeroed or, from byte
// `fill_from` on, filled (realloc copies the bytes before fill_from itself).
void* allocate_recorded(size_t alignment, size_t size, bool zero, const void* site, size_t fill_from = 0) {
  const size_t front = front_for(alignment);
  if (size > kMaxRequest - front - kCanaryBytes) {
    errno = ENOMEM;
    return nullptr;
  }
  const size_t total = front + size + kCanaryBytes;
  void* core = alignment <= kDefaultFront ? core_allocate(total, zero) : core_allocate_aligned(alignment, total);
  if (core == nullptr) return nullptr;
  unsigned char* user = static_cast<unsigned char*>(core) + front;
  if (!zero && fill_from < size) std::memset(user + fill_from, kAllocFill, size - fill_from);
  write_canaries(user, size, front);
  const Record r{
      addr_of(user), size, site, nullptr, g_seq.fetch_add(1, std::memory_order_relaxed), static_cast<uint32_t>(front),
      State::kLive,  false};
  Shard& s = shard_of(r.key);
  bool inserted;
  {
    LockGuard guard(s.lock);
    inserted = insert(s, r);
    // A record exists now: the routing must be on, even if debug_update_mode has just
    // switched checking off (and, finding no record, the routing with it).
    if (inserted && !g_debug_mode.load(std::memory_order_relaxed)) debug_set_routing(true);
  }
  if (!inserted) {
    core_release(core, "invalid free");
    errno = ENOMEM;
    return nullptr;
  }
  return user;
}

// A block left the quarantine: its record goes, its fill and canaries are verified, and the
// core gets it back.
void retire(uintptr_t key) {
  Record r{};
  {
    Shard& s = shard_of(key);
    LockGuard guard(s.lock);
    Record* found = find(s, key);
    if (found == nullptr) return;  // cannot happen: quarantined blocks keep their records
    r = *found;
    erase(s, found);
  }
  verify_freed(r);
  core_release(core_of(r), "invalid free");
}

// Takes up to kEvictBatch of the oldest blocks out of the quarantine (lock held) while it
// has no room for `incoming` more bytes and one more block; returns how many are in keys.
size_t take_oldest(Quarantine& q, size_t incoming, uintptr_t (&keys)[kEvictBatch]) {
  size_t n = 0;
  while (n < kEvictBatch && q.count > 0 && (q.count == kQuarantineBlocks || q.bytes + incoming > kQuarantineBytes)) {
    const Quarantine::Entry& e = q.ring[q.head];
    keys[n++] = e.key;
    q.bytes -= e.size;
    q.head = (q.head + 1) % kQuarantineBlocks;
    --q.count;
  }
  return n;
}

// A block in a slot of the sampled-block region (see Record::guarded), with a record: a
// zero-size block (no page opened), or in debug=guard a block of `size` bytes (zeroed or
// filled) with the rest of its pages filled with kGuardFill. nullptr when no slot is free or
// the block does not fit one (the caller makes a block with canaries instead).
void* allocate_guarded(size_t alignment, size_t size, bool zero, const void* site) {
  const size_t align = alignment < kDefaultFront ? kDefaultFront : alignment;
  if (size > kGuardedMaxSize || align > kPageBytes) return nullptr;
  const size_t usable = (size + align - 1) & ~(align - 1);
  void* user = guarded_alloc(size, usable, align, kSmallClassCount, site);
  if (user == nullptr) return nullptr;
  char* first = nullptr;
  char* last = nullptr;
  if (size > 0 && guarded_block_pages(user, &first, &last)) {
    auto* block = static_cast<unsigned char*>(user);
    std::memset(first, kGuardFill, static_cast<size_t>(block - reinterpret_cast<unsigned char*>(first)));
    std::memset(block, zero ? 0 : kAllocFill, size);  // a reused slot's pages hold old data
    std::memset(block + size, kGuardFill, static_cast<size_t>(reinterpret_cast<unsigned char*>(last) - block - size));
  }
  Record r{};
  r.key = addr_of(user);
  r.size = size;
  r.site = site;
  r.seq = g_seq.fetch_add(1, std::memory_order_relaxed);
  r.state = State::kLive;
  r.guarded = true;
  Shard& s = shard_of(r.key);
  bool inserted;
  {
    LockGuard guard(s.lock);
    inserted = insert(s, r);
    if (inserted && !g_debug_mode.load(std::memory_order_relaxed)) debug_set_routing(true);  // see allocate_recorded
  }
  if (!inserted) {
    core_release(user, "invalid free");
    return nullptr;
  }
  return user;
}

// Releases the freed block r at once (record removed first).
void release_now(Shard& s, const Record& r) {
  bool shard_empty;
  {
    LockGuard guard(s.lock);
    Record* found = find(s, r.key);
    if (found != nullptr) erase(s, found);
    shard_empty = s.count == 0;
  }
  if (r.guarded) {
    guarded_free(chunk_owner(user_of(r)), user_of(r), r.free_site, "invalid free");  // keeps the free site
  } else {
    core_release(core_of(r), "invalid free");
  }
  if (shard_empty && !checking()) maybe_route_off();
}

// The freed block r (its record in shard s already marked freed) is filled and enters the
// quarantine; the oldest blocks leave it while it is over its block or byte budget.
void quarantine(Shard& s, const Record& r) {
  if (!checking() || r.size > kMaxQuarantinedBlock || r.guarded) {
    release_now(s, r);
    return;
  }
  std::memset(user_of(r), kFreeFill, r.size);
  Quarantine& q = g_quarantine;
  for (bool pushed = false; !pushed;) {
    uintptr_t victims[kEvictBatch];
    size_t n;
    {
      LockGuard guard(q.lock);
      n = take_oldest(q, r.size, victims);
      if (q.count < kQuarantineBlocks && q.bytes + r.size <= kQuarantineBytes) {
        q.ring[(q.head + q.count) % kQuarantineBlocks] = Quarantine::Entry{r.key, r.size};
        ++q.count;
        q.bytes += r.size;
        pushed = true;
      }
    }
    for (size_t i = 0; i < n; ++i) retire(victims[i]);
  }
}

}  // namespace

void debug_update_mode() {
  (void)canary_key();
  bool on;
  bool install = false;
  {
    LockGuard mode(g_mode_lock);
    on = checking_wanted();  // under the lock: concurrent updates end with the last options
    g_checking.store(on, std::memory_order_relaxed);
    const bool guard_all = option(OptionId::kDebug) == kDebugGuard;
    g_guard_all_blocks.store(guard_all, std::memory_order_relaxed);
    guarded_set_guard_all(guard_all);
    if (on || trace_active()) debug_set_routing(true);  // trace mode records on the routed path
    if (on) {
      install = !g_fork_handlers_installed;
      g_fork_handlers_installed = true;
    }
  }
  if (on) {
    // Outside the lock: pthread_atfork may allocate, which comes back here.
    if (install) pthread_atfork(fork_prepare, fork_release, fork_release);
    return;
  }
  // Off: the quarantine goes back to the core (this calls the core: no lock held), then the
  // routing goes off unless blocks with records are still live.
  debug_flush_quarantine();
  maybe_route_off();
}

void* debug_malloc(size_t size, bool zero, const void* site) {
  if (!checking()) return core_allocate(size, zero);
  if ((size == 0 || g_guard_all_blocks.load(std::memory_order_relaxed)) && guarded_available()) {
    void* p = allocate_guarded(0, size, zero, site);
    if (p != nullptr) return p;
  }
  return allocate_recorded(0, size, zero, site);
}

void* debug_aligned_alloc(size_t alignment, size_t size, const void* site) {
  if (!checking()) return core_allocate_aligned(alignment, size);
  if (g_guard_all_blocks.load(std::memory_order_relaxed) && guarded_available()) {
    void* p = allocate_guarded(alignment, size, false, site);
    if (p != nullptr) return p;
  }
  return allocate_recorded(alignment, size, false, site);
}

void debug_free(void* p, size_t expected_size, const void* site) {
  const uintptr_t key = addr_of(p);
  Record r{};
  Shard& s = shard_of(key);
  bool found;
  bool was_live = false;
  {
    LockGuard guard(s.lock);
    Record* entry = find(s, key);
    found = entry != nullptr;
    if (found) {
      r = *entry;
      was_live = r.state == State::kLive;
      if (was_live && (expected_size == kUnknownSize || expected_size == r.size)) {
        entry->state = State::kFreed;
        entry->free_site = site;
      }
    }
  }
  if (!found) {
    if (checking()) check_not_core_start(p, "invalid free");
    core_release(p, "invalid free");
    return;
  }
  if (!was_live) report_block("double free", r);
  if (expected_size != kUnknownSize && expected_size != r.size) {
    TextBuffer detail;
    detail.str("delete of ").dec(expected_size).str(" bytes, ");
    describe(detail, r);
    report_misuse("mismatched sized delete", p, detail);
  }
  check_canaries(r);
  r.state = State::kFreed;
  r.free_site = site;
  quarantine(s, r);
}

void* debug_realloc(void* p, size_t size, const void* site) {
  Record r{};
  if (!lookup(addr_of(p), &r)) {
    // A block from before debug mode (or from while checking was off).
    if (checking()) check_not_core_start(p, "invalid realloc");
    if (size == 0) {
      core_release(p, "invalid realloc");
      return nullptr;
    }
    if (!checking() || size > kMaxRequest) return core_reallocate(p, size);
    // It becomes a debug block: every usable byte survives the move, as in the core.
    const size_t old_size = core_usable_size(p, "invalid realloc");
    const size_t kept = old_size < size ? old_size : size;
    void* fresh = allocate_recorded(0, size, false, site, kept);
    if (fresh == nullptr) return nullptr;
    std::memcpy(fresh, p, kept);
    core_release(p, "invalid realloc");
    return fresh;
  }
  if (r.state == State::kFreed) report_block("invalid realloc", r);
  check_canaries(r);
  if (size == 0) {
    debug_free(p, kUnknownSize, site);
    return nullptr;
  }
  if (size > kMaxRequest) {
    errno = ENOMEM;
    return nullptr;
  }
  // Always moves (the old block goes to the quarantine), so a stale pointer to the old block
  // is caught like any use after free.
  const size_t kept = r.size < size ? r.size : size;
  void* fresh = checking() ? allocate_recorded(0, size, false, site, kept) : core_allocate(size, false);
  if (fresh == nullptr) return nullptr;  // p stays valid and untouched
  std::memcpy(fresh, p, kept);
  debug_free(p, kUnknownSize, site);
  return fresh;
}

size_t debug_usable_size(const void* p) {
  Record r{};
  if (!lookup(addr_of(p), &r)) {
    if (checking()) check_not_core_start(p, "invalid usable_size");
    return core_usable_size(p, "invalid usable_size");
  }
  if (r.state == State::kFreed) report_block("invalid usable_size", r);
  // The requested size: a program that writes all of it does not reach the canary.
  return r.size;
}

void debug_flush_quarantine() {
  Quarantine& q = g_quarantine;
  for (;;) {
    uintptr_t victims[kEvictBatch];
    size_t n;
    {
      LockGuard guard(q.lock);
      n = take_oldest(q, kQuarantineBytes + 1, victims);  // as if a huge block came in
    }
    if (n == 0) return;
    for (size_t i = 0; i < n; ++i) retire(victims[i]);
  }
}

bool debug_idle() {
  debug_flush_quarantine();
  lock_all();
  const size_t records = total_records_locked();
  unlock_all();
  return records == 0;
}

void debug_reset_for_test() { g_seq.store(0, std::memory_order_relaxed); }

void debug_totals(DebugTotals* out) {
  *out = DebugTotals{};
  lock_all();
  for (const Shard& s : g_shards) {
    for (size_t i = 0; s.count > 0 && i < s.capacity; ++i) {
      const Record& r = s.slots[i];
      if (r.key == 0 || r.state != State::kLive) continue;
      ++out->live_blocks;
      out->live_bytes += r.size;
    }
  }
  unlock_all();
  // Taken after the shard locks are dropped (no order between the two kinds of lock is
  // needed): the caller runs while no other thread allocates.
  LockGuard guard(g_quarantine.lock);
  out->quarantined_blocks = g_quarantine.count;
}

namespace {

// Live blocks of one allocation site (the leak report).
struct SiteTotal {
  const void* site;
  size_t count;
  size_t bytes;
};

// Whether the canaries of the live block r still hold.
bool canaries_intact(const Record& r) {
  size_t rear_first;
  size_t rear_changed;
  size_t front_changed;
  if (r.guarded) return !guard_fill_damage(r, &rear_first, &rear_changed, &front_changed);
  size_t changed = 0;
  return first_rear_change(r, &changed) == kCanaryBytes && first_front_change(r) == r.front;
}

// Copies into *out the first live block whose canaries were overwritten; false if none.
bool find_damaged_live(Record* out) {
  bool found = false;
  lock_all();
  for (const Shard& s : g_shards) {
    for (size_t i = 0; !found && i < s.capacity; ++i) {
      const Record& r = s.slots[i];
      if (r.key == 0 || r.state != State::kLive || canaries_intact(r)) continue;
      *out = r;
      found = true;
    }
  }
  unlock_all();
  return found;
}

// Copies into *out the first quarantined block whose fill or canaries changed; false if none.
// The quarantine's lock keeps every block in the ring from going back to the core meanwhile.
bool find_damaged_freed(Record* out) {
  Quarantine& q = g_quarantine;
  LockGuard guard(q.lock);
  for (size_t i = 0; i < q.count; ++i) {
    Record r{};
    if (!lookup(q.ring[(q.head + i) % kQuarantineBlocks].key, &r)) continue;
    size_t changed = 0;
    if (first_not(user_of(r), r.size, kFreeFill) < r.size || first_rear_change(r, &changed) < kCanaryBytes ||
        first_front_change(r) < r.front) {
      *out = r;
      return true;
    }
  }
  return false;
}

// Checks every quarantined block (exit in debug mode: a late write after free).
void verify_quarantine() {
  Quarantine& q = g_quarantine;
  LockGuard guard(q.lock);
  for (size_t i = 0; i < q.count; ++i) {
    Record r{};
    // A report aborts: that it happens under the lock does not matter then.
    if (lookup(q.ring[(q.head + i) % kQuarantineBlocks].key, &r)) verify_freed(r);
  }
}

// At exit (or when the library is unloaded), like the stats report: a destructor function,
// so nothing is registered (atexit may allocate) and nothing runs at start-up.
__attribute__((destructor)) void debug_at_exit() {
  if (checking()) {
    // Every live block's canaries: an overflow of a block the program never frees.
    Record damaged{};
    if (find_damaged_live(&damaged)) check_canaries(damaged);
    verify_quarantine();
  }
  if (option(OptionId::kLeaks) == 0) return;
  const size_t leaked = debug_leak_report(STDERR_FILENO, true);
  const long code = option(OptionId::kLeakExitCode);
  if (leaked > 0 && code != 0) {
    std::fflush(nullptr);  // _exit skips stdio's flush at exit
    _exit(static_cast<int>(code));
  }
}

}  // namespace

int debug_check_blocks(CheckResult* result) {
  if (!debug_mode()) return 0;
  Record r{};
  const bool live = find_damaged_live(&r);
  if (!live && !find_damaged_freed(&r)) return 0;
  // Described after the locks are released (dladdr).
  TextBuffer what;
  if (live) {
    size_t changed = 0;
    const size_t rear = first_rear_change(r, &changed);
    if (rear < kCanaryBytes) {
      what.str("heap overflow: ").dec(changed).str(" bytes written past the end of a debug ");
    } else {
      what.str("heap underflow: bytes written before the start of a debug ");
    }
  } else {
    what.str("write after free into a quarantined debug ");
  }
  what.str("block of ").dec(r.size).str(" bytes allocated at ");
  append_site(what, r.site);
  return result->fail(TM_CHECK_DEBUG_BLOCK, user_of(r), what.c_str());
}

size_t debug_leak_report(int fd, bool quiet_when_none) {
  size_t blocks = 0;
  size_t bytes = 0;
  size_t sites = 0;
  SiteTotal* totals = nullptr;
  size_t mapped = 0;
  lock_all();
  for (const Shard& s : g_shards) {
    for (size_t i = 0; i < s.capacity; ++i) {
      if (s.slots[i].key == 0 || s.slots[i].state != State::kLive) continue;
      ++blocks;
      bytes += s.slots[i].size;
    }
  }
  if (blocks > 0) {
    mapped = align_up(blocks * sizeof(SiteTotal), kPageBytes);
    totals = static_cast<SiteTotal*>(map_pages(mapped));
  }
  size_t n = 0;
  for (const Shard& s : g_shards) {
    for (size_t i = 0; totals != nullptr && i < s.capacity; ++i) {
      const Record& r = s.slots[i];
      if (r.key != 0 && r.state == State::kLive) totals[n++] = SiteTotal{r.site, 1, r.size};
    }
  }
  unlock_all();
  if (blocks == 0 && quiet_when_none) return 0;
  if (totals != nullptr) {
    // Group by site, then the largest totals first.
    std::sort(totals, totals + n,
              [](const SiteTotal& a, const SiteTotal& b) { return addr_of(a.site) < addr_of(b.site); });
    for (size_t i = 0; i < n; ++i) {
      if (sites > 0 && totals[sites - 1].site == totals[i].site) {
        totals[sites - 1].count += 1;
        totals[sites - 1].bytes += totals[i].bytes;
      } else {
        totals[sites++] = totals[i];
      }
    }
    std::sort(totals, totals + sites, [](const SiteTotal& a, const SiteTotal& b) {
      if (a.bytes != b.bytes) return a.bytes > b.bytes;
      if (a.count != b.count) return a.count > b.count;
      return addr_of(a.site) < addr_of(b.site);
    });
  }
  TextBuffer header;
  header.str("tinymalloc: leak report: ").dec(blocks).str(" blocks, ").dec(bytes).str(" bytes in ");
  if (totals == nullptr && blocks > 0) {
    header.str("? allocation sites (no memory to group them)\n");
  } else {
    header.dec(sites).str(" allocation sites\n");
  }
  FdWriter out(fd);  // written a block at a time, the rest at return
  out.put(header);
  const bool json = report_json();
  if (json) {
    TextBuffer summary;
    summary.str("{\"tinymalloc\":\"leaks\",\"blocks\":").dec(blocks).str(",\"bytes\":").dec(bytes);
    summary.str(",\"sites\":");
    if (totals == nullptr && blocks > 0) {
      summary.str("null");
    } else {
      summary.dec(sites);
    }
    out.put(summary.str("}\n"));
  }
  for (size_t i = 0; i < sites && i < kMaxLeakSites; ++i) {
    TextBuffer line;
    line.str("tinymalloc:   ").dec(totals[i].bytes).str(" bytes in ").dec(totals[i].count);
    line.str(" blocks allocated at ");
    append_site(line, totals[i].site);
    out.put(line.str("\n"));
    if (json) {
      TextBuffer site;
      append_site(site, totals[i].site);
      TextBuffer entry;
      entry.str("{\"tinymalloc\":\"leak\",\"bytes\":").dec(totals[i].bytes).str(",\"blocks\":").dec(totals[i].count);
      entry.str(",\"alloc_site\":");
      append_json_string(entry, site.c_str());
      out.put(entry.str("}\n"));
    }
  }
  if (sites > kMaxLeakSites) {
    out.put(TextBuffer().str("tinymalloc:   ... and ").dec(sites - kMaxLeakSites).str(" more sites\n"));
  }
  if (totals != nullptr) ::munmap(totals, mapped);
  return blocks;
}

}  // namespace tmalloc

extern "C" TM_EXPORT size_t tm_leak_report(int fd) { return tmalloc::debug_leak_report(fd, false); }
