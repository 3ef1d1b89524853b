// Misuse reporting (see error.h). Uses only write(2) and abort(): the heap may be corrupt.
#include "error.h"
#include "free_block.h"
#include "linked_list.h"

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

void report_corrupted_list(const char* list, const void* node, const void* prev, const void* prev_next,
                           const void* next, const void* next_prev) {
  TextBuffer what;
  what.str("corrupted ").str(list);
  TextBuffer detail;
  const bool back_broken = prev_next != node;
  if (back_broken && prev != nullptr) detail.str("its predecessor ").ptr(prev).str(" links to ").ptr(prev_next);
  if (back_broken && prev == nullptr) detail.str("it has no predecessor, but the list head is ").ptr(prev_next);
  if (next_prev != node) {
    if (back_broken) detail.str("; ");
    detail.str("its successor ").ptr(next).str(" links back to ").ptr(next_prev);
  }
  detail.str(": written after free or overflowed into?");
  report_misuse(what.c_str(), node, detail);
}

void report_implausible_list_links(const char* list, const void* node, const void* prev, const void* next) {
  TextBuffer what;
  what.str("corrupted ").str(list);
  TextBuffer detail;
  detail.str("its links ").ptr(prev).str(" (back) and ").ptr(next);
  detail.str(" (forward) are not node addresses: written after free or overflowed into?");
  report_misuse(what.c_str(), node, detail);
}

void* report_corrupted_free_link(const void* block) {
  TextBuffer detail;
  if (free_block_has_key(block)) {
    detail.str("a freed block's link decodes to ")
        .hex(free_block_link(block))
        .str(", not a block address: written after free?");
  } else {
    detail.str("a freed block lost its free-block key: written after free?");
  }
  report_misuse("corrupted free list", block, detail);
}

}  // namespace tmalloc
