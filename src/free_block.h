// Links of free small blocks held outside their run's bitmap (thread caches, remote-free
// lists): word 0 is the next block, word 1 is a key that marks the block as freed. A
// second free of such a block finds the key and is reported as a double free without
// scanning any list. The key mixes a per-process random secret with the block's address,
// so neither user data nor a copied block can forge it (a false match is a 2^-64 event).
// Allocation clears word 1 before handing a block out.
#pragma once

#include <atomic>
#include <cstdint>

#include "platform.h"
#include "sanitizer.h"

// The accessors below read and write poisoned memory under ASan. no_sanitize only holds
// for a function that is not inlined into an instrumented caller, so under ASan they are
// real calls; elsewhere they are always inlined.
#if defined(TM_ASAN)
#define TM_LINK_ACCESS TM_NO_ASAN TM_NO_COVERAGE __attribute__((noinline)) inline
#else
#define TM_LINK_ACCESS TM_ALWAYS_INLINE
#endif

namespace tmalloc {

// Per-process secret (runtime init sets a random one; a fixed odd value before that).
extern TM_INTERNAL std::atomic<uintptr_t> g_free_key;

// The key a free block at `block` carries.
TM_ALWAYS_INLINE uintptr_t free_key_for(const void* block) {
  return g_free_key.load(std::memory_order_relaxed) ^ addr_of(block);
}

// Writes the link and the key of a free block (its memory is poisoned under ASan).
TM_LINK_ACCESS void free_block_write(void* block, void* next) {
  auto* words = static_cast<uintptr_t*>(block);
  words[0] = addr_of(next);
  words[1] = free_key_for(block);
}

// free_block_write with the key already computed (free_key_for(block)).
TM_LINK_ACCESS void free_block_write_key(void* block, void* next, uintptr_t key) {
  auto* words = static_cast<uintptr_t*>(block);
  words[0] = addr_of(next);
  words[1] = key;
}

// The word a free block keeps its key in (any value for a live block).
TM_LINK_ACCESS uintptr_t free_block_key(const void* block) { return static_cast<const uintptr_t*>(block)[1]; }

// Changes only the link of a free block.
TM_LINK_ACCESS void free_block_set_next(void* block, void* next) { static_cast<uintptr_t*>(block)[0] = addr_of(next); }

// Next block of a free block's list.
TM_LINK_ACCESS void* free_block_next(const void* block) {
  return reinterpret_cast<void*>(static_cast<const uintptr_t*>(block)[0]);
}

// True when the block carries the free-block key (it is in a cache or remote list, or was
// freed into its run).
TM_LINK_ACCESS bool free_block_has_key(const void* block) {
  return static_cast<const uintptr_t*>(block)[1] == free_key_for(block);
}

// Clears the key of a block being handed out.
TM_LINK_ACCESS void free_block_clear_key(void* block) { static_cast<uintptr_t*>(block)[1] = 0; }

}  // namespace tmalloc
