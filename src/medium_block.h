// Medium blocks: boundary-tagged blocks inside a medium segment.
//
// Layout of every block (16-byte aligned, size a multiple of 16, header included):
//   [prev_size | size_flags | payload ...]
// prev_size is the total size of the physically preceding block (0 for the first block).
// size_flags packs: bits 0-3 flags (kBlockFree), bits 4-31 the total size (a multiple of
// 16, below 4 GiB), bits 32-63 the slack of a used block (usable bytes - requested bytes),
// which keeps the requested-bytes statistic exact; in a free block they hold the bytes of
// its interior the idle sweep returned to the OS. A free block keeps its best-fit list
// links in the first 16 bytes of its payload. Under ASan headers and links lie in poisoned
// memory, so every function that touches them is TM_NO_ASAN.
//
// size_flags is read and written with relaxed atomic accesses: a block in a thread's medium
// cache (medium_cache.h) is owned by that thread, which rewrites its slack without the
// arena's lock while another thread, holding the lock, reads the size and free flag of its
// neighbours. Only the block's owner (or the lock holder, for a free block) ever writes it,
// so a load followed by a store never loses an update; nothing else is published through it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "sanitizer.h"

namespace tmalloc {

inline constexpr uint64_t kBlockFree = 1;
// A free block the last idle sweep found free (medium_sweep_idle); cleared by set().
inline constexpr uint64_t kBlockSweepMark = 2;
inline constexpr uint64_t kBlockSizeMask = 0xFFFFFFF0u;
inline constexpr size_t kBlockHeaderSize = 16;

struct BlockHeader {
  uint64_t prev_size;
  uint64_t size_flags;  // only through flags_word() / store_flags_word()

  // The packed word (relaxed atomic load, see the file comment).
  TM_NO_ASAN uint64_t flags_word() const { return __atomic_load_n(&size_flags, __ATOMIC_RELAXED); }
  // Replaces the packed word (relaxed atomic store).
  TM_NO_ASAN void store_flags_word(uint64_t word) { __atomic_store_n(&size_flags, word, __ATOMIC_RELAXED); }

  // Total block size, header included.
  TM_NO_ASAN size_t size() const { return static_cast<size_t>(flags_word() & kBlockSizeMask); }
  // True when the block is on the free index.
  TM_NO_ASAN bool is_free() const { return (flags_word() & kBlockFree) != 0; }
  // Stores a size and the free flag (slack cleared).
  TM_NO_ASAN void set(size_t size, bool free) { store_flags_word(uint64_t{size} | (free ? kBlockFree : 0)); }
  // Slack of a used block: usable bytes minus requested bytes.
  TM_NO_ASAN size_t slack() const { return static_cast<size_t>(flags_word() >> 32); }
  // Records the slack of a used block.
  TM_NO_ASAN void set_slack(size_t slack) { store_flags_word((flags_word() & 0xFFFFFFFFu) | (uint64_t{slack} << 32)); }
  // Free block: bytes of its interior pages returned to the OS (they read as zero).
  TM_NO_ASAN size_t purged_bytes() const { return slack(); }
  TM_NO_ASAN void set_purged_bytes(size_t bytes) { set_slack(bytes); }
  // Free block: found free by the last idle sweep.
  TM_NO_ASAN bool sweep_marked() const { return (flags_word() & kBlockSweepMark) != 0; }
  TM_NO_ASAN void set_sweep_mark() { store_flags_word(flags_word() | kBlockSweepMark); }
  // Changes the size of a block, keeping its flags and slack.
  TM_NO_ASAN void set_size_only(size_t size) { store_flags_word((flags_word() & ~uint64_t{kBlockSizeMask}) | size); }
  // The block physically after this one.
  TM_NO_ASAN BlockHeader* next_physical() {
    return reinterpret_cast<BlockHeader*>(reinterpret_cast<char*>(this) + size());
  }
  // The block physically before this one (only valid when prev_size != 0).
  TM_NO_ASAN BlockHeader* prev_physical() {
    return reinterpret_cast<BlockHeader*>(reinterpret_cast<char*>(this) - prev_size);
  }
  // Start of the user payload.
  TM_NO_ASAN void* payload() { return reinterpret_cast<char*>(this) + kBlockHeaderSize; }
  // Header of the block whose payload starts at p.
  TM_NO_ASAN static BlockHeader* from_payload(const void* p) {
    return reinterpret_cast<BlockHeader*>(const_cast<char*>(static_cast<const char*>(p)) - kBlockHeaderSize);
  }
};

struct FreeBlock : BlockHeader {
  FreeBlock* next_free;
  FreeBlock* prev_free;
};

static_assert(sizeof(BlockHeader) == kBlockHeaderSize);
static_assert(sizeof(FreeBlock) == 32);

}  // namespace tmalloc
