// Fuzz target options: the TINYMALLOC_OPTIONS parser (tmalloc::options_parse, src/options.cc)
// on arbitrary bytes.
//
// Input: the bytes of a TINYMALLOC_OPTIONS string, not NUL-terminated: they are copied into
// an exactly-sized heap buffer, so ASan reports any read past the length. Checks:
//   - every resulting value lies in its option's [min, max];
//   - the warning count is at most the number of items (commas + 1), and the warning text
//     (written to a memfd) has exactly that many lines, each "tinymalloc: warning: ...",
//     printable ASCII only and at most 255 characters;
//   - parsing the same input again gives the same values and warning count;
//   - parsing item by item (each comma-separated piece on its own, values carried over)
//     gives the same values and the same total of warnings;
//   - the values written back as "name=value,..." (symbolic names where the option has
//     them when the input's length is odd, decimal otherwise) parse back to the same values
//     with no warning, from the defaults.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "options.h"
#include "unit_check.h"

namespace {

const char* const kTarget = "options";
constexpr size_t kCount = tmalloc::kOptionCount;

// Exactly-sized copy of [p, p + n): ASan catches a read of p[n].
std::unique_ptr<char[]> exact_copy(const void* p, size_t n) {
  std::unique_ptr<char[]> copy(new char[n]);
  if (n > 0) memcpy(copy.get(), p, n);
  return copy;
}

std::string show(const long* v) {
  std::string s;
  for (size_t i = 0; i < kCount; ++i) {
    s += std::string(i ? " " : "") + tmalloc::option_info(i)->name + "=" + std::to_string(v[i]);
  }
  return s;
}

void check_same(const long* a, const long* b, const char* what) {
  if (memcmp(a, b, kCount * sizeof(long)) != 0) {
    tm_fuzz::unit_fail(kTarget, "%s: values [%s] differ from [%s]", what, show(a).c_str(), show(b).c_str());
  }
}

// The warning text of the last parse, from a memfd (never blocks, unlike a full pipe).
int warning_fd() {
  static const int fd = [] {
    const int f = memfd_create("tm_options_warnings", 0);
    if (f < 0) tm_fuzz::unit_fail(kTarget, "memfd_create failed");
    return f;
  }();
  return fd;
}

std::string take_warnings(int fd) {
  std::string text;
  const off_t end = lseek(fd, 0, SEEK_CUR);
  if (end > 0) {
    text.resize(static_cast<size_t>(end));
    if (pread(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(end)) tm_fuzz::unit_fail(kTarget, "pread");
  }
  if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) tm_fuzz::unit_fail(kTarget, "ftruncate");
  return text;
}

void check_warning_text(const std::string& text, size_t warnings) {
  size_t lines = 0;
  size_t start = 0;
  while (start < text.size()) {
    const size_t nl = text.find('\n', start);
    if (nl == std::string::npos) tm_fuzz::unit_fail(kTarget, "warning text does not end with a newline");
    const std::string line = text.substr(start, nl - start);
    ++lines;
    if (line.rfind("tinymalloc: warning: ", 0) != 0) tm_fuzz::unit_fail(kTarget, "bad warning line: %s", line.c_str());
    if (line.size() > 255) tm_fuzz::unit_fail(kTarget, "warning line of %zu characters", line.size());
    for (char c : line) {
      if (c < 0x20 || c > 0x7e) {
        tm_fuzz::unit_fail(kTarget, "byte 0x%02x in a warning line: %s", static_cast<unsigned char>(c), line.c_str());
      }
    }
    start = nl + 1;
  }
  if (lines != warnings) tm_fuzz::unit_fail(kTarget, "%zu warning lines for %zu warnings", lines, warnings);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tm_fuzz::unit_trace().clear();
  const std::unique_ptr<char[]> text = exact_copy(data, size);
  size_t items = 1;
  for (size_t i = 0; i < size; ++i) items += text[i] == ',';
  tm_fuzz::trace("input of %zu bytes, %zu items", size, items);

  long first[kCount];
  tmalloc::options_defaults(first);
  const int fd = warning_fd();
  const size_t warnings = tmalloc::options_parse(text.get(), size, first, fd);
  const std::string warning_text = take_warnings(fd);
  tm_fuzz::trace("values [%s], %zu warnings:\n%s", show(first).c_str(), warnings, warning_text.c_str());

  for (size_t i = 0; i < kCount; ++i) {
    const tmalloc::OptionInfo* o = tmalloc::option_info(i);
    if (first[i] < o->min_value || first[i] > o->max_value) {
      tm_fuzz::unit_fail(kTarget, "%s=%ld is outside %ld..%ld", o->name, first[i], o->min_value, o->max_value);
    }
  }
  if (warnings > items) tm_fuzz::unit_fail(kTarget, "%zu warnings for %zu items", warnings, items);
  check_warning_text(warning_text, warnings);

  // Same input, same result.
  long second[kCount];
  tmalloc::options_defaults(second);
  const size_t warnings2 = tmalloc::options_parse(text.get(), size, second, -1);
  if (warnings2 != warnings) tm_fuzz::unit_fail(kTarget, "second parse: %zu warnings, first %zu", warnings2, warnings);
  check_same(second, first, "second parse");

  // Item by item: each piece between commas parsed alone (from its own exact copy) onto the
  // values so far.
  long piecewise[kCount];
  tmalloc::options_defaults(piecewise);
  size_t piece_warnings = 0;
  size_t start = 0;
  for (;;) {
    size_t end = start;
    while (end < size && text[end] != ',') ++end;
    const std::unique_ptr<char[]> piece = exact_copy(text.get() + start, end - start);
    const size_t w = tmalloc::options_parse(piece.get(), end - start, piecewise, -1);
    if (w > 1) tm_fuzz::unit_fail(kTarget, "one item gave %zu warnings", w);
    piece_warnings += w;
    if (end == size) break;
    start = end + 1;
  }
  if (piece_warnings != warnings) {
    tm_fuzz::unit_fail(kTarget, "item by item: %zu warnings, whole input %zu", piece_warnings, warnings);
  }
  check_same(piecewise, first, "item by item");

  // Written back, parsed back.
  std::string out;
  const bool symbolic = size % 2 == 1;
  for (size_t i = 0; i < kCount; ++i) {
    const char* name = symbolic ? tmalloc::option_value_name(i, first[i]) : nullptr;
    out += std::string(i ? "," : "") + tmalloc::option_info(i)->name + "=" + (name ? name : std::to_string(first[i]));
  }
  tm_fuzz::trace("written back: %s", out.c_str());
  const std::unique_ptr<char[]> again_text = exact_copy(out.data(), out.size());
  long again[kCount];
  tmalloc::options_defaults(again);
  const size_t again_warnings = tmalloc::options_parse(again_text.get(), out.size(), again, -1);
  if (again_warnings != 0) tm_fuzz::unit_fail(kTarget, "written-back values gave %zu warnings", again_warnings);
  check_same(again, first, "written back and parsed again");

  tm_fuzz::unit_done(kTarget);
  return 0;
}
