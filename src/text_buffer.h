// A fixed-size text buffer with decimal and hex formatting, and a buffered writer to a file
// descriptor; neither allocates, so error reports, heap-check messages and statistics can be
// built and written while the heap itself is broken.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tmalloc {

class TextBuffer {
 public:
  // An empty text.
  TextBuffer() { buffer_[0] = '\0'; }
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
  size_t length_ = 0;
  // [0, length_] holds the text and its terminator; the rest is never read, and not cleared
  // up front: a buffer is built on the stack for every report line, and clearing all of it
  // each time made most of tm_stats_print's cost.
  char buffer_[kCapacity];
};

// Writes text[0, length) to fd, retrying short and interrupted writes. False when a write
// fails (errno says why) or writes nothing.
bool write_fully(int fd, const char* text, size_t length);

// Collects text for one file descriptor and writes it a block at a time (one write per
// kCapacity bytes instead of one per line: a statistics table is a few hundred lines);
// whatever is left is written when the writer goes out of scope.
class FdWriter {
 public:
  explicit FdWriter(int fd) : fd_(fd) {}
  ~FdWriter() { flush(); }
  FdWriter(const FdWriter&) = delete;
  FdWriter& operator=(const FdWriter&) = delete;

  // Appends text[0, length).
  FdWriter& put(const char* text, size_t length);
  // Appends a formatted line (or part of one).
  FdWriter& put(const TextBuffer& text) { return put(text.c_str(), text.size()); }
  // Writes what was collected; false once any write failed.
  bool flush();

 private:
  static constexpr size_t kCapacity = 4096;
  int fd_;
  bool ok_ = true;
  size_t length_ = 0;
  char buffer_[kCapacity];  // [0, length_) collected; the rest is never read
};

}  // namespace tmalloc
