// A fixed-size text buffer with decimal and hex formatting; never allocates, so error
// reports and heap-check messages can be built while the heap itself is broken.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmalloc {

class TextBuffer {
 public:
  // Appends a NUL-terminated string (truncated at capacity).
  TextBuffer& str(const char* s);
  // Appends an unsigned decimal number.
  TextBuffer& dec(uint64_t value);
  // Appends 0x followed by lowercase hex digits.
  TextBuffer& hex(uint64_t value);
  // Appends a pointer as 0x... hex.
  TextBuffer& ptr(const void* p) { return hex(reinterpret_cast<uintptr_t>(p)); }

  const char* c_str() const { return buffer_; }
  size_t size() const { return length_; }

 private:
  // Debug-mode reports name two allocation sites with their symbols: 1024 leaves room.
  static constexpr size_t kCapacity = 1024;
  char buffer_[kCapacity] = {};
  size_t length_ = 0;
};

}  // namespace tmalloc
