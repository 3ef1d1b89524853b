// Links of free small blocks held outside their run's bitmap (thread caches, remote-free
// lists) and of cached medium blocks: word 0 is the next block, word 1 is a key that marks
// the block as freed. A second free of such a block finds the key and is reported as a
// double free without scanning any list. The key mixes a per-process random secret with the
// block's address, so neither user data nor a copied block can forge it (a false match is a
// 2^-64 event). Allocation clears word 1 before handing a block out.
//
// The link is stored encoded (next XOR the block's key, like glibc's safe-linking and
// mimalloc's encoded free lists) and checked when it is followed: a use-after-free write into
// word 0 decodes to an address that is not 16-byte aligned or not in user space (all but a
// 2^-21 share of values), and a write into word 1 removes the key; either is reported as
// "corrupted free list" instead of handing out memory the write chose (free-list poisoning).
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

// Bits a decoded link may not have: the low 4 (every listed block is 16-byte aligned) and
// those above the user address space.
inline constexpr uintptr_t kImplausibleLinkBits = kNonUserAddressBits | 15;

// Reports a listed free block whose link or key was overwritten, and aborts. It is declared as
// returning the next block so that the hot paths reach it by a tail call (no stack frame for
// a call that never returns); it never returns.
TM_NOINLINE void* report_corrupted_free_link(const void* block);

// What free_block_checked_link returns for a block that lost its key (not a plausible link).
inline constexpr uintptr_t kLostKeyLink = 1;

// True when a decoded link can be the address of a listed block (or nullptr).
TM_ALWAYS_INLINE bool free_link_plausible(uintptr_t link) { return (link & kImplausibleLinkBits) == 0; }

// Writes the link and the key of a free block (its memory is poisoned under ASan).
TM_LINK_ACCESS void free_block_write(void* block, void* next) {
  auto* words = static_cast<uintptr_t*>(block);
  const uintptr_t key = free_key_for(block);
  words[0] = addr_of(next) ^ key;
  words[1] = key;
}

// free_block_write with the key already computed (free_key_for(block)).
TM_LINK_ACCESS void free_block_write_key(void* block, void* next, uintptr_t key) {
  auto* words = static_cast<uintptr_t*>(block);
  words[0] = addr_of(next) ^ key;
  words[1] = key;
}

// The word a free block keeps its key in (any value for a live block).
TM_LINK_ACCESS uintptr_t free_block_key(const void* block) { return static_cast<const uintptr_t*>(block)[1]; }

// Changes only the link of a free block.
TM_LINK_ACCESS void free_block_set_next(void* block, void* next) {
  static_cast<uintptr_t*>(block)[0] = addr_of(next) ^ free_key_for(block);
}

// What the link of a free block decodes to, unchecked (heap checks, which report a bad value
// themselves).
TM_LINK_ACCESS uintptr_t free_block_link(const void* block) {
  return static_cast<const uintptr_t*>(block)[0] ^ free_key_for(block);
}

// The decoded link of a listed block, or kLostKeyLink when the block no longer carries its
// key; the caller checks the result with free_link_plausible (one branch for both faults).
TM_LINK_ACCESS uintptr_t free_block_checked_link(const void* block) {
  const auto* words = static_cast<const uintptr_t*>(block);
  const uintptr_t key = free_key_for(block);
  const uintptr_t link = words[0] ^ key;
  return words[1] == key ? link : kLostKeyLink;
}

// True when a listed block still carries its key and its link decodes to a plausible address.
TM_ALWAYS_INLINE bool free_block_intact(const void* block) {
  return free_link_plausible(free_block_checked_link(block));
}

// Next block of a free block's list, after checking the block's key and its decoded link.
TM_ALWAYS_INLINE void* free_block_next(const void* block) {
  const uintptr_t link = free_block_checked_link(block);
  if (TM_UNLIKELY(!free_link_plausible(link))) return report_corrupted_free_link(block);
  return reinterpret_cast<void*>(link);
}

// True when the block carries the free-block key (it is in a cache or remote list, or was
// freed into its run).
TM_LINK_ACCESS bool free_block_has_key(const void* block) {
  return static_cast<const uintptr_t*>(block)[1] == free_key_for(block);
}

// Clears the key of a block being handed out.
TM_LINK_ACCESS void free_block_clear_key(void* block) { static_cast<uintptr_t*>(block)[1] = 0; }

}  // namespace tmalloc
