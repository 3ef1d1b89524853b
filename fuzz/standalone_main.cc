// Replay driver for builds without libFuzzer (gcc release/debug, asan, tsan, msan presets):
//
//   fuzz_<target> [-flag ...] FILE_OR_DIR...
//
// Calls LLVMFuzzerTestOneInput once per file; directories are walked recursively in sorted
// order. Arguments starting with '-' are ignored here (so the same command lines work for
// libFuzzer binaries, e.g. -runs=0) but are passed to LLVMFuzzerInitialize when the target
// defines it. Exit status 0 when every input ran; a failing input aborts the process.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
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
  std::vector<uint8_t> data;
  size_t ran = 0;
  for (const std::string& f : files) {
    if (!read_file(f, data)) {
      ok = false;
      continue;
    }
    fprintf(stderr, "Running: %s (%zu bytes)\n", f.c_str(), data.size());
    // Copy into an exactly-sized heap buffer so ASan catches reads past the end.
    uint8_t* copy = static_cast<uint8_t*>(malloc(data.size() ? data.size() : 1));
    if (!data.empty()) memcpy(copy, data.data(), data.size());
    LLVMFuzzerTestOneInput(copy, data.size());
    free(copy);
    ++ran;
  }
  fprintf(stderr, "standalone_main: executed %zu input(s)%s\n", ran, ok ? "" : " (some could not be read)");
  return ok ? 0 : 1;
}
