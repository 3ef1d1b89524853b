// TextBuffer formatting (see text_buffer.h).
#include "text_buffer.h"

#include <errno.h>
#include <unistd.h>

#include <cstring>

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

bool write_fully(int fd, const char* text, size_t length) {
  while (length > 0) {
    const ssize_t written = ::write(fd, text, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      if (written == 0) errno = EIO;
      return false;
    }
    text += written;
    length -= static_cast<size_t>(written);
  }
  return true;
}

FdWriter& FdWriter::put(const char* text, size_t length) {
  while (length > 0) {
    if (length_ == kCapacity) flush();
    const size_t room = kCapacity - length_;
    const size_t n = length < room ? length : room;
    std::memcpy(buffer_ + length_, text, n);
    length_ += n;
    text += n;
    length -= n;
  }
  return *this;
}

bool FdWriter::flush() {
  // After a failed write the rest is dropped: the reader is gone, or the disk full.
  if (ok_ && length_ > 0) ok_ = write_fully(fd_, buffer_, length_);
  length_ = 0;
  return ok_;
}

}  // namespace tmalloc
