// Debug mode's record table (see debug.cc): a Record for every block allocated in debug mode,
// in a sharded, out-of-band hash table (open addressing in mmap'ed slots: never malloc).
//
// Each shard has its own lock; callers of find, insert and erase hold it. In debug mode's lock
// order (see debug.cc) the shard locks come last, in index order when more than one is held
// (lock_all). A Record* points into a shard's table and is valid only while that shard's lock
// is held (an insert may move the table): records leave the lock as copies.
#pragma once

#include <cstddef>
#include <cstdint>

#include "spinlock.h"

namespace tmalloc::debug_table {

inline constexpr size_t kShardCount = 16;  // power of two

enum class State : uint32_t { kLive = 1, kFreed = 2 };

// One block allocated in debug mode.
struct Record {
  uintptr_t key;  // user pointer; 0 marks an empty slot
  size_t size;    // requested size
  const void* site;
  const void* free_site;  // kFreed: where it was freed
  uint64_t seq;           // allocation sequence number (process-wide)
  uint32_t front;         // user pointer - core block start (0: none); canary_span(front) bytes hold the canary
  State state;
  // A block in a slot of the sampled-block region (guarded.h): a zero-size block (no page
  // opened: any access faults), or any block of up to kGuardedMaxSize bytes in debug=guard
  // (the rest of its pages filled with kGuardFill, checked like a canary). No canaries; its
  // slot, not the quarantine, keeps it inaccessible after the free.
  bool guarded;
};

// A part of the table: the records whose key hashes here, under one lock.
struct alignas(64) Shard {
  SpinLock lock;
  Record* slots = nullptr;  // open addressing, linear probing, backward-shift deletion
  size_t capacity = 0;      // power of two; 0 before the first insert
  size_t count = 0;         // records: live and quarantined
};

// Zero-initialised (constinit: no global constructor); defined in debug_records.cc.
extern constinit Shard g_shards[kShardCount];

// Mixes the bits of a 64-bit value: the table's hash, and debug.cc's canary values.
constexpr uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// ---- Shards and the table (callers hold the shard's lock) ----

// The shard that holds the record of `key`.
Shard& shard_of(uintptr_t key);

// Maps `bytes` of fresh (zero) pages, nullptr when mmap fails: the tables, and scratch space
// of debug mode's reports.
void* map_pages(size_t bytes);

// The record of `key` in s, or nullptr.
Record* find(Shard& s, uintptr_t key);

// Adds r (replacing a stale record of the same key); false when the table cannot grow.
bool insert(Shard& s, const Record& r);

// Removes the record at r; the records after it in its probe run move back over the hole.
void erase(Shard& s, Record* r);

// A copy of the record of `key`; false when there is none (takes the shard's lock).
bool lookup(uintptr_t key, Record* out);

// Take / release every shard lock (in index order / in reverse).
void lock_all();
void unlock_all();

// Records in every table (callers hold every shard lock).
size_t total_records_locked();

}  // namespace tmalloc::debug_table
