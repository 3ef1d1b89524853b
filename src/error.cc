// Misuse reporting (see error.h). Uses only write(2) and abort(): the heap may be corrupt.
#include "error.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace tmalloc {

void write_stderr(const char* text, size_t length) {
  while (length > 0) {
    const ssize_t written = ::write(STDERR_FILENO, text, length);
    if (written <= 0) return;
    text += written;
    length -= static_cast<size_t>(written);
  }
}

void report_misuse(const char* what, const void* addr, const TextBuffer& detail) {
  report_misuse(what, addr, detail.c_str());
}

void report_misuse(const char* what, const void* addr, const char* detail) {
  TextBuffer line;
  line.str("tinymalloc: ").str(what).str(" at ").ptr(addr).str(" (").str(detail).str(")\n");
  write_stderr(line.c_str(), line.size());
  std::abort();
}

}  // namespace tmalloc
