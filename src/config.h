// Compile-time geometry of the allocator: segment, run and tier thresholds.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmalloc {

// Every mapping tinymalloc makes starts on a segment boundary, so the address map can
// name the owner of any address with one entry per segment-sized chunk.
inline constexpr unsigned kSegmentShift = 22;  // 4 MiB
inline constexpr size_t kSegmentSize = size_t{1} << kSegmentShift;

inline constexpr size_t kPageSize = 4096;

// Data written by different threads (one arena's heap and another's, one size class's
// lock and the next one's) is kept on separate cache lines of this size: sharing a line
// makes every write by one thread a cache miss for the other (false sharing).
inline constexpr size_t kCacheLineSize = 64;

// Small tier: runs of one size class, tracked by 64-bit bitmap words.
inline constexpr unsigned kRunShift = 16;  // 64 KiB
inline constexpr size_t kRunSize = size_t{1} << kRunShift;
inline constexpr size_t kRunsPerSegment = kSegmentSize / kRunSize;  // 64
inline constexpr size_t kSmallMax = 8192;
inline constexpr size_t kMinBlock = 16;
inline constexpr size_t kMaxBlocksPerRun = kRunSize / kMinBlock;  // 4096
inline constexpr size_t kRunBitmapWords = kMaxBlocksPerRun / 64;  // 64

// Medium tier: best-fit blocks with boundary tags inside 4 MiB regions.
inline constexpr size_t kMediumMax = 512 * 1024;
// A split leaves a free remainder only when it is at least this large (header included);
// smaller remainders stay inside the allocated block.
inline constexpr size_t kMediumMinBlock = 256;
// Header area at the start of a medium segment (segment header + block-start bitmap).
inline constexpr size_t kMediumHeaderSize = 64 * 1024;

// Most arenas the allocator can run (the `arenas` option is capped at this).
inline constexpr unsigned kMaxArenas = 64;
// Most memory pools (tm_heap_create) alive at once. Each pool is a private arena, in slots
// [kMaxArenas, kArenaSlots) of the arena tables.
inline constexpr unsigned kMaxHeaps = 64;
inline constexpr unsigned kArenaSlots = kMaxArenas + kMaxHeaps;

// Large tier: header in front of the user block inside its own mapping.
inline constexpr size_t kLargeHeaderSize = 64;

// Virtual address bits the address map covers (x86-64 and AArch64 user space).
inline constexpr unsigned kAddressBits = 48;

}  // namespace tmalloc
