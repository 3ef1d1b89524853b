// Shared by the tiers' heap walks: where and what the first violation was.
#pragma once

#include <cstddef>
#include <cstdint>

#include "text_buffer.h"

namespace tmalloc {

struct CheckResult {
  int code = 0;
  uintptr_t address = 0;
  TextBuffer message;

  // Records a violation (only the first one is kept) and returns its code.
  int fail(int violation, const void* at, const char* what) {
    if (code == 0) {
      code = violation;
      address = reinterpret_cast<uintptr_t>(at);
      message.str(what);
    }
    return code;
  }
};

// Address space a heap walk accounts for (tm_check_heap reconciles it with the OS counters):
// bytes mapped, and of those the bytes committed (not purged).
struct OsBytes {
  size_t mapped = 0;
  size_t committed = 0;
};

}  // namespace tmalloc
