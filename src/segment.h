// What every address-map entry points to: the common header of a small segment, a medium
// segment or a large block.
#pragma once

#include <cstdint>

namespace tmalloc {

enum class SegmentKind : uint32_t { kSmall = 1, kMedium = 2, kLarge = 3, kGuarded = 4 };

// Identifies tinymalloc metadata; a map entry whose target lacks it is corruption.
inline constexpr uint32_t kSegmentMagic = 0x746d5347;  // "tmSG"

struct SegmentBase {
  uint32_t magic;
  SegmentKind kind;
};

}  // namespace tmalloc
