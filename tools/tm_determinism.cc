// tm_determinism: proves that an op-program input means the same thing whatever ran before
// it in the process (the fuzz targets reset the allocator between inputs, tm_test_reset).
//
//   tm_determinism --target T [--others K] [--seed S] FILE_OR_DIR...
//   tm_determinism --target T --print FILE...   (print each input's trace, run alone)
//
// For every input file it records the decoded-trace outcome (every op's result, the
// addresses it returned relative to their 4 MiB segment, errno, the allocator's mapped and
// committed bytes and OS call counters after the op, and the final check result; see
// tmh::Options::trace) twice:
//   alone:  first input of a fresh process (a fork of this one, which never calls the
//           allocator itself);
//   after:  in one long-lived process, right after K (default 3) other files of the same
//           set picked at random (seeded: --seed, default 1), every file in turn.
// The two must be identical. Targets: heap_ops realloc split_coalesce aligned heap_pools
// (single-thread interpreter) and heap_mt (multi-threaded, run in serial mode: the threads
// of a phase one after another). Exit status 0 when every file matched, 1 when one did not
// (the first differing lines are printed), 2 on usage errors.
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tm_harness.h"
#include "tm_harness_mt.h"

namespace {

struct Input {
  std::string path;
  std::vector<uint8_t> data;
};

// Every regular file under path (directories walked recursively in sorted order), skipping
// dot files and README*.
bool collect(const std::string& path, std::vector<std::string>& out) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    fprintf(stderr, "tm_determinism: cannot stat %s: %s\n", path.c_str(), strerror(errno));
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    out.push_back(path);
    return true;
  }
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return false;
  std::vector<std::string> names;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.' && strncmp(e->d_name, "README", 6) != 0) names.push_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  bool ok = true;
  for (const std::string& n : names) ok &= collect(path + "/" + n, out);
  return ok;
}

bool read_file(const std::string& path, std::vector<uint8_t>* data) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  data->clear();
  uint8_t buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) data->insert(data->end(), buf, buf + n);
  fclose(f);
  return true;
}

// Runs inputs through one target in this process and returns their traces.
class Runner {
 public:
  explicit Runner(const std::string& target) : target_(target), backend_(tmh::make_tm_backend()) {
    tmh::Options o;
    o.abort_on_failure = false;  // a failure is part of the trace: it must recur too
    o.target = target;
    o.out = stderr;
    o.trace = &trace_;
    if (target == "heap_mt") {
      mt_ = std::make_unique<tmh::MtInterpreter>(*backend_, o);
      mt_->set_serial(true);
    } else {
      tmh::profile_from_name(target, &o.profile);
      st_ = std::make_unique<tmh::Interpreter>(*backend_, o);
    }
  }
  std::string run(const std::vector<uint8_t>& data) {
    trace_.clear();
    if (mt_) {
      mt_->run_bytes(data.data(), data.size());
    } else {
      st_->run_bytes(data.data(), data.size());
    }
    return trace_;
  }

 private:
  std::string target_;
  std::string trace_;
  std::unique_ptr<tmh::Backend> backend_;
  std::unique_ptr<tmh::Interpreter> st_;
  std::unique_ptr<tmh::MtInterpreter> mt_;
};

bool write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    const ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

std::string read_all(int fd) {
  std::string s;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    s.append(buf, static_cast<size_t>(n));
  }
  return s;
}

// Runs `work` in a forked child (a fresh allocator: this process never allocates with it)
// and returns what the child wrote to its pipe; *ok is false when the child did not exit 0.
template <typename F>
std::string in_child(F&& work, bool* ok) {
  int fds[2];
  if (pipe(fds) != 0) {
    perror("tm_determinism: pipe");
    exit(2);
  }
  fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    perror("tm_determinism: fork");
    exit(2);
  }
  if (pid == 0) {
    close(fds[0]);
    const bool written = work(fds[1]);
    close(fds[1]);
    _exit(written ? 0 : 3);
  }
  close(fds[1]);
  std::string out = read_all(fds[0]);
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  *ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  return out;
}

// Records of the "after" child: one length-prefixed trace per input, in input order.
std::string frame(const std::string& s) { return std::to_string(s.size()) + "\n" + s; }

std::vector<std::string> unframe(const std::string& all) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < all.size()) {
    const size_t nl = all.find('\n', pos);
    if (nl == std::string::npos) break;
    const size_t len = std::strtoull(all.c_str() + pos, nullptr, 10);
    out.push_back(all.substr(nl + 1, len));
    pos = nl + 1 + len;
  }
  return out;
}

// First line where a and b differ, with its number.
void print_difference(const std::string& a, const std::string& b) {
  size_t line = 1;
  size_t pa = 0;
  size_t pb = 0;
  while (pa < a.size() || pb < b.size()) {
    const size_t ea = std::min(a.find('\n', pa), a.size());
    const size_t eb = std::min(b.find('\n', pb), b.size());
    const std::string la = a.substr(pa, ea - pa);
    const std::string lb = b.substr(pb, eb - pb);
    if (la != lb) {
      fprintf(stderr, "    line %zu alone: %s\n    line %zu after: %s\n", line, la.c_str(), line, lb.c_str());
      return;
    }
    pa = ea + 1;
    pb = eb + 1;
    ++line;
  }
}

void usage() {
  fprintf(stderr,
          "usage: tm_determinism --target heap_ops|realloc|split_coalesce|aligned|heap_pools|heap_mt [--others K] "
          "[--seed S] [--print] FILE_OR_DIR...\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::string target;
  unsigned others = 3;
  unsigned seed = 1;
  bool print = false;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--target" && i + 1 < argc) {
      target = argv[++i];
    } else if (a == "--others" && i + 1 < argc) {
      others = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--seed" && i + 1 < argc) {
      seed = static_cast<unsigned>(std::strtoul(argv[++i], nullptr, 10));
    } else if (a == "--print") {
      print = true;
    } else if (a == "-h" || a == "--help") {
      usage();
      return 0;
    } else {
      paths.push_back(a);
    }
  }
  tmh::Profile profile;
  if (target != "heap_mt" && !tmh::profile_from_name(target, &profile)) {
    usage();
    return 2;
  }
  std::vector<std::string> files;
  for (const std::string& p : paths) {
    if (!collect(p, files)) return 2;
  }
  std::vector<Input> inputs;
  for (const std::string& f : files) {
    Input in{f, {}};
    if (!read_file(f, &in.data)) {
      fprintf(stderr, "tm_determinism: cannot read %s\n", f.c_str());
      return 2;
    }
    inputs.push_back(std::move(in));
  }
  if (inputs.empty()) {
    usage();
    return 2;
  }

  if (print) {
    for (const Input& in : inputs) {
      bool ok = true;
      const std::string trace = in_child(
          [&](int fd) {
            Runner runner(target);
            return write_all(fd, runner.run(in.data));
          },
          &ok);
      printf("== %s\n%s", in.path.c_str(), trace.c_str());
    }
    return 0;
  }

  // "after": one process runs, for every input in turn, K random others and then the input.
  std::mt19937 rng(seed);
  std::vector<std::vector<size_t>> before(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    for (unsigned k = 0; k < others && inputs.size() > 1; ++k) {
      size_t j = rng() % inputs.size();
      if (j == i) j = (j + 1) % inputs.size();
      before[i].push_back(j);
    }
  }
  bool child_ok = true;
  const std::string after_all = in_child(
      [&](int fd) {
        Runner runner(target);
        for (size_t i = 0; i < inputs.size(); ++i) {
          for (size_t j : before[i]) runner.run(inputs[j].data);
          if (!write_all(fd, frame(runner.run(inputs[i].data)))) return false;
        }
        return true;
      },
      &child_ok);
  const std::vector<std::string> after = unframe(after_all);
  if (!child_ok || after.size() != inputs.size()) {
    fprintf(stderr, "tm_determinism: the process running the inputs in sequence failed (%zu of %zu traces)\n",
            after.size(), inputs.size());
    return 1;
  }

  size_t differ = 0;
  size_t failed_inputs = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    bool ok = true;
    const std::string alone = in_child(
        [&](int fd) {
          Runner runner(target);
          return write_all(fd, runner.run(inputs[i].data));
        },
        &ok);
    if (!ok) {
      fprintf(stderr, "tm_determinism: %s: the fresh process running it alone failed\n", inputs[i].path.c_str());
      ++differ;
      continue;
    }
    if (alone.find("end: FAILED") != std::string::npos) ++failed_inputs;
    if (alone != after[i]) {
      ++differ;
      std::string prior;
      for (size_t j : before[i]) prior += " " + inputs[j].path;
      fprintf(stderr, "tm_determinism: %s: outcome differs when run after%s\n", inputs[i].path.c_str(), prior.c_str());
      print_difference(alone, after[i]);
    }
  }
  printf("tm_determinism: target %s: %zu input(s), each alone and after %u others: %zu differ%s\n", target.c_str(),
         inputs.size(), others, differ,
         failed_inputs ? (" (" + std::to_string(failed_inputs) + " fail the same way both times)").c_str() : "");
  return differ == 0 ? 0 : 1;
}
