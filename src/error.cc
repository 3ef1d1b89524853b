// Misuse reporting (see error.h). Uses only write(2) and abort(): the heap may be corrupt.
#include "error.h"

#include "chunk_map.h"
#include "debug.h"
#include "free_block.h"
#include "linked_list.h"
#include "options.h"
#include "segment.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace tmalloc {

void write_stderr(const char* text, size_t length) { write_fully(STDERR_FILENO, text, length); }

void report_misuse(const char* what, const void* addr, const TextBuffer& detail) {
  report_misuse(what, addr, detail.c_str());
}

namespace {

// The calling thread's context for its next report (report_context).
constinit thread_local ReportBlock t_report_block __attribute__((tls_model(TM_TLS_MODEL))){};

// The tier that owns addr, from the address map ("none" when no tinymalloc memory).
const char* tier_of(const void* addr) {
  const SegmentBase* owner = chunk_owner(addr);
  if (owner == nullptr || owner->magic != kSegmentMagic) return "none";
  switch (owner->kind) {
    case SegmentKind::kSmall:
      return "small";
    case SegmentKind::kMedium:
      return "medium";
    case SegmentKind::kLarge:
      return "large";
    case SegmentKind::kGuarded:
      return "sampled";
  }
  return "none";
}

// Appends "key":<site> (a JSON string as append_site writes it, or null).
void append_site_field(TextBuffer& b, const char* key, const void* site) {
  b.str(",\"").str(key).str("\":");
  if (site == nullptr) {
    b.str("null");
    return;
  }
  TextBuffer text;
  append_site(text, site);
  append_json_string(b, text.c_str());
}

}  // namespace

void report_context(const ReportBlock& block) { t_report_block = block; }

bool report_json() { return option(OptionId::kReport) == 1; }

void append_json_string(TextBuffer& b, const char* s) {
  static const char kHex[] = "0123456789abcdef";
  char piece[8];
  b.str("\"");
  for (; *s != '\0'; ++s) {
    const auto c = static_cast<unsigned char>(*s);
    size_t n = 0;
    if (c == '"' || c == '\\') {
      piece[n++] = '\\';
      piece[n++] = static_cast<char>(c);
    } else if (c < 0x20) {
      piece[n++] = '\\';
      piece[n++] = 'u';
      piece[n++] = '0';
      piece[n++] = '0';
      piece[n++] = kHex[c >> 4];
      piece[n++] = kHex[c & 15];
    } else {
      piece[n++] = static_cast<char>(c);
    }
    piece[n] = '\0';
    b.str(piece);
  }
  b.str("\"");
}

void report_json_line(const char* kind, const void* addr, const char* text, const ReportBlock& block) {
  if (!report_json()) return;
  // Written in pieces (one line, several writes): each piece fits its buffer, so no field is
  // ever cut and the line stays valid JSON.
  TextBuffer json;
  json.str("{\"tinymalloc\":\"report\",\"kind\":");
  append_json_string(json, kind);
  json.str(",\"address\":\"").ptr(addr).str("\",\"tier\":");
  append_json_string(json, block.tier != nullptr ? block.tier : tier_of(addr));
  json.str(",\"block_size\":");
  if (block.size != 0) {
    json.dec(block.size);
  } else {
    json.str("null");
  }
  json.str(",\"thread\":").dec(static_cast<uint64_t>(::syscall(SYS_gettid)));
  write_stderr(json.c_str(), json.size());
  TextBuffer sites;
  append_site_field(sites, "alloc_site", block.alloc_site);
  write_stderr(sites.c_str(), sites.size());
  TextBuffer free_site;
  append_site_field(free_site, "free_site", block.free_site);
  write_stderr(free_site.c_str(), free_site.size());
  TextBuffer message;
  message.str(",\"message\":");
  append_json_string(message, text);
  message.str("}\n");
  write_stderr(message.c_str(), message.size());
}

void report_misuse(const char* what, const void* addr, const char* detail) {
  TextBuffer line;
  line.str("tinymalloc: ").str(what).str(" at ").ptr(addr).str(" (").str(detail).str(")");
  if (report_json()) report_json_line(what, addr, line.c_str(), t_report_block);
  line.str("\n");
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
