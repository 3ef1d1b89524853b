// Debug mode's record table (see debug_records.h): the shards and their hash tables.
#include "debug_records.h"

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>

#include "spinlock.h"

namespace tmalloc::debug_table {

constinit Shard g_shards[kShardCount];

namespace {

constexpr size_t kInitialSlots = 1024;  // per shard, power of two

uint64_t hash_of(uintptr_t key) { return mix64(key); }

size_t home_slot(uintptr_t key, size_t capacity) { return (hash_of(key) >> 4) & (capacity - 1); }

// Doubles the table (the first call maps it) and rehashes; false when mmap fails.
bool grow(Shard& s) {
  const size_t capacity = s.capacity == 0 ? kInitialSlots : s.capacity * 2;
  auto* slots = static_cast<Record*>(map_pages(capacity * sizeof(Record)));
  if (slots == nullptr) return false;
  for (size_t j = 0; j < s.capacity; ++j) {
    const Record& r = s.slots[j];
    if (r.key == 0) continue;
    size_t i = home_slot(r.key, capacity);
    while (slots[i].key != 0) i = (i + 1) & (capacity - 1);
    slots[i] = r;
  }
  if (s.slots != nullptr) ::munmap(s.slots, s.capacity * sizeof(Record));
  s.slots = slots;
  s.capacity = capacity;
  return true;
}

}  // namespace

Shard& shard_of(uintptr_t key) { return g_shards[hash_of(key) & (kShardCount - 1)]; }

void* map_pages(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

Record* find(Shard& s, uintptr_t key) {
  if (s.capacity == 0) return nullptr;
  const size_t mask = s.capacity - 1;
  for (size_t i = home_slot(key, s.capacity);; i = (i + 1) & mask) {
    Record& r = s.slots[i];
    if (r.key == key) return &r;
    if (r.key == 0) return nullptr;
  }
}

// Adds r (replacing a stale record of the same key); false when the table cannot grow.
bool insert(Shard& s, const Record& r) {
  if ((s.count + 1) * 4 > s.capacity * 3 && !grow(s)) return false;  // load factor <= 3/4
  const size_t mask = s.capacity - 1;
  size_t i = home_slot(r.key, s.capacity);
  while (s.slots[i].key != 0 && s.slots[i].key != r.key) i = (i + 1) & mask;
  if (s.slots[i].key == 0) ++s.count;
  s.slots[i] = r;
  return true;
}

// Removes the record at r; the records after it in its probe run move back over the hole.
void erase(Shard& s, Record* r) {
  const size_t mask = s.capacity - 1;
  auto hole = static_cast<size_t>(r - s.slots);
  for (size_t i = (hole + 1) & mask;; i = (i + 1) & mask) {
    const Record& next = s.slots[i];
    if (next.key == 0) break;
    // `next` may fill the hole when the hole lies between its home slot and i (cyclically).
    const size_t home = home_slot(next.key, s.capacity);
    if (((i - home) & mask) >= ((i - hole) & mask)) {
      s.slots[hole] = next;
      hole = i;
    }
  }
  s.slots[hole].key = 0;
  --s.count;
}

// A copy of the record of `key`; false when there is none.
bool lookup(uintptr_t key, Record* out) {
  Shard& s = shard_of(key);
  LockGuard guard(s.lock);
  const Record* r = find(s, key);
  if (r == nullptr) return false;
  *out = *r;
  return true;
}

void lock_all() {
  for (Shard& s : g_shards) s.lock.lock();
}

void unlock_all() {
  for (size_t i = kShardCount; i-- > 0;) g_shards[i].lock.unlock();
}

// Records in every table (callers hold every shard lock).
size_t total_records_locked() {
  size_t total = 0;
  for (const Shard& s : g_shards) total += s.count;
  return total;
}

}  // namespace tmalloc::debug_table
