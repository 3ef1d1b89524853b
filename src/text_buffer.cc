// TextBuffer formatting (see text_buffer.h).
#include "text_buffer.h"

namespace tmalloc {

TextBuffer& TextBuffer::str(const char* s) {
  while (*s != '\0' && length_ + 1 < kCapacity) buffer_[length_++] = *s++;
  buffer_[length_] = '\0';
  return *this;
}

TextBuffer& TextBuffer::dec(uint64_t value) {
  char digits[24];
  size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n > 0 && length_ + 1 < kCapacity) buffer_[length_++] = digits[--n];
  buffer_[length_] = '\0';
  return *this;
}

TextBuffer& TextBuffer::hex(uint64_t value) {
  str("0x");
  char digits[20];
  size_t n = 0;
  do {
    digits[n++] = "0123456789abcdef"[value & 15];
    value >>= 4;
  } while (value != 0);
  while (n > 0 && length_ + 1 < kCapacity) buffer_[length_++] = digits[--n];
  buffer_[length_] = '\0';
  return *this;
}

}  // namespace tmalloc
