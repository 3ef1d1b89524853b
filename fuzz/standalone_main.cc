// Replay driver for builds without libFuzzer (gcc release/debug, asan, tsan, msan presets):
//
//   fuzz_<target> [-flag ...] FILE_OR_DIR...
//
// Calls LLVMFuzzerTestOneInput once per file; directories are walked recursively in sorted
// order. Arguments starting with '-' are ignored here (so the same command lines work for
// libFuzzer binaries, e.g. -runs=0) but are passed to LLVMFuzzerInitialize when the target
// defines it. Exit status 0 when every input ran; a failing input aborts the process.
// With TM_REPLAY_TIMES=1 each input's line ends with the milliseconds it took, and the
// slowest inputs are listed at the end (which seeds make a corpus slow to replay).
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

bool collect(const std::string& path, std::vector<std::string>& out) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    fprintf(stderr, "standalone_main: cannot stat %s: %s\n", path.c_str(), strerror(errno));
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    out.push_back(path);
    return true;
  }
  DIR* d = opendir(path.c_str());
  if (d == nullptr) {
    fprintf(stderr, "standalone_main: cannot open %s: %s\n", path.c_str(), strerror(errno));
    return false;
  }
  std::vector<std::string> names;
  while (const dirent* e = readdir(d)) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) names.push_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  bool ok = true;
  for (const std::string& n : names) ok &= collect(path + "/" + n, out);
  return ok;
}

bool read_file(const std::string& path, std::vector<uint8_t>& data) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) {
    fprintf(stderr, "standalone_main: cannot open %s: %s\n", path.c_str(), strerror(errno));
    return false;
  }
  data.clear();
  uint8_t buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
  const bool ok = !ferror(f);
  fclose(f);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::string> files;
  bool ok = true;
  for (int i = 1; i < argc; ++i) {
    if (argv[i][0] == '-') continue;
    ok &= collect(argv[i], files);
  }
  if (files.empty()) {
    fprintf(stderr, "usage: %s [-flags ignored] FILE_OR_DIR...  (no inputs given)\n", argv[0]);
    return ok ? 0 : 1;
  }
  const char* times_env = getenv("TM_REPLAY_TIMES");
  const bool times = times_env != nullptr && *times_env != '\0' && strcmp(times_env, "0") != 0;
  std::vector<std::pair<double, std::string>> took;
  std::vector<uint8_t> data;
  size_t ran = 0;
  double total_ms = 0;
  for (const std::string& f : files) {
    if (!read_file(f, data)) {
      ok = false;
      continue;
    }
    fprintf(stderr, "Running: %s (%zu bytes)%s", f.c_str(), data.size(), times ? "" : "\n");
    // Copy into an exactly-sized heap buffer so ASan catches reads past the end.
    uint8_t* copy = static_cast<uint8_t*>(malloc(data.size() ? data.size() : 1));
    if (!data.empty()) memcpy(copy, data.data(), data.size());
    const auto t0 = std::chrono::steady_clock::now();
    LLVMFuzzerTestOneInput(copy, data.size());
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    free(copy);
    ++ran;
    total_ms += ms;
    if (times) {
      fprintf(stderr, " %.3f ms\n", ms);
      took.emplace_back(ms, f);
    }
  }
  fprintf(stderr, "standalone_main: executed %zu input(s)%s\n", ran, ok ? "" : " (some could not be read)");
  if (times && ran > 0) {
    std::sort(took.rbegin(), took.rend());
    fprintf(stderr, "standalone_main: %.1f ms in all, %.3f ms per input on average; slowest:\n", total_ms,
            total_ms / static_cast<double>(ran));
    for (size_t i = 0; i < took.size() && i < 10; ++i)
      fprintf(stderr, "  %9.3f ms  %s\n", took[i].first, took[i].second.c_str());
  }
  return ok ? 0 : 1;
}
