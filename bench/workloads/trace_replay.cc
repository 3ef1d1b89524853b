// trace_replay: a real program's allocation calls, without the program. Replays the traces
// tinymalloc's trace mode recorded (TINYMALLOC_OPTIONS=trace=PATH; format in docs/harness.md
// "Real-program traces") with malloc, calloc, realloc, aligned_alloc and free of whatever
// allocator LD_PRELOAD names, and times only the calls (and one byte written per new block):
// the allocator's share of the real-program rows, without the program's own work around it.
//
//   trace_replay --traces DIR [--repeat N]
//
// Every file in DIR is one process's trace (a program that starts others leaves several);
// they are replayed one after the other, all calls on one thread in the recorded order (the
// programs bench/compare traces are single-threaded). Before timing, the records are decoded
// and every block reference is resolved to a slot index, so the timed loop is the calls and
// an array access each. A free or realloc of a block from a window the trace did not keep
// is skipped (realloc then allocates). Blocks still live at the end are freed, timed.
// The checksum covers the calls' kinds and sizes: the same under every allocator.
#include <dirent.h>

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kName = "trace_replay";

enum Kind : uint8_t { kWindow = 0, kMalloc = 1, kCalloc = 2, kAligned = 3, kFree = 4, kRealloc = 5 };

// One resolved call: slots index the live-block array (kNone: no block).
struct Call {
  uint8_t kind;
  uint32_t in;   // slot of the block a free or realloc names
  uint32_t out;  // slot the result goes to
  uint64_t size;
  uint64_t alignment;
};
constexpr uint32_t kNone = UINT32_MAX;

// LEB128 varint at data[at]; false at the end of the data.
bool read_varint(const std::vector<unsigned char>& data, size_t& at, uint64_t& value) {
  value = 0;
  for (unsigned shift = 0; at < data.size() && shift < 70; shift += 7) {
    const unsigned char byte = data[at++];
    value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if (byte < 0x80) return true;
  }
  return false;
}

// Appends the calls of one trace file to `calls`, resolving addresses to slots; `slots` is
// the number of slots used so far (a slot is reused once its block is freed).
void load_trace(const std::string& path, std::vector<Call>& calls, uint32_t& slots) {
  FILE* f = fopen(path.c_str(), "rb");
  if (f == nullptr) bench::fail(kName, ("cannot read " + path).c_str());
  std::vector<unsigned char> data;
  unsigned char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) data.insert(data.end(), buf, buf + n);
  fclose(f);
  if (data.size() < 8 || memcmp(data.data(), "TMTRACE1", 8) != 0) bench::fail(kName, (path + ": not a trace").c_str());
  size_t at = 8;
  uint64_t window_calls;
  if (!read_varint(data, at, window_calls)) bench::fail(kName, (path + ": truncated header").c_str());
  std::unordered_map<uint64_t, uint32_t> live;  // address -> slot
  std::vector<uint32_t> free_slots;
  auto take_slot = [&]() {
    if (!free_slots.empty()) {
      const uint32_t s = free_slots.back();
      free_slots.pop_back();
      return s;
    }
    return slots++;
  };
  auto release = [&](uint64_t address) {
    auto it = live.find(address);
    if (it == live.end()) return kNone;
    const uint32_t s = it->second;
    live.erase(it);
    free_slots.push_back(s);
    return s;
  };
  auto place = [&](uint64_t address, uint32_t slot) {
    if (address == 0) return;
    release(address);  // handed out again before its free was recorded
    live[address] = slot;
  };
  // Appends an allocating call whose result goes to `slot` (kept while the block lives).
  auto add_allocation = [&](uint8_t kind, uint32_t in_slot, uint32_t slot, uint64_t size, uint64_t alignment,
                            uint64_t result) {
    calls.push_back({kind, in_slot, slot, size, alignment});
    if (result != 0) {
      place(result, slot);
    } else {
      free_slots.push_back(slot);
    }
  };
  while (at < data.size()) {
    const uint8_t kind = data[at++];
    uint64_t thread, a = 0, b = 0, c = 0, d = 0;
    bool ok = true;
    switch (kind) {
      case kWindow:
        ok = read_varint(data, at, a);
        break;
      case kMalloc:
      case kCalloc:
        ok = read_varint(data, at, thread) && read_varint(data, at, a) && read_varint(data, at, b);
        if (ok) add_allocation(kind, kNone, take_slot(), a, 0, b);
        break;
      case kAligned:
        ok = read_varint(data, at, thread) && read_varint(data, at, a) && read_varint(data, at, b) &&
             read_varint(data, at, c);
        if (ok) add_allocation(kind, kNone, take_slot(), b, a, c);
        break;
      case kFree:
        ok = read_varint(data, at, thread) && read_varint(data, at, a);
        if (ok) {
          const uint32_t s = release(a);
          if (s != kNone) calls.push_back({kind, s, kNone, 0, 0});
        }
        break;
      case kRealloc:
        ok = read_varint(data, at, thread) && read_varint(data, at, a) && read_varint(data, at, b) &&
             read_varint(data, at, d);
        if (ok) {
          const uint32_t old_slot = release(a);
          if (b == 0) {  // realloc(p, 0) frees p (tinymalloc, glibc)
            if (old_slot != kNone) calls.push_back({kFree, old_slot, kNone, 0, 0});
            break;
          }
          const uint32_t s = old_slot != kNone ? old_slot : take_slot();
          if (old_slot != kNone) free_slots.pop_back();  // the slot stays with the block
          add_allocation(kind, old_slot, s, b, 0, d);
        }
        break;
      default:
        bench::fail(kName, (path + ": unknown record kind").c_str());
    }
    if (!ok) break;  // a cut last record
    (void)thread;
  }
}

// Replays the calls once; returns the number of allocations that failed.
uint64_t replay(const std::vector<Call>& calls, std::vector<void*>& blocks) {
  uint64_t failed = 0;
  for (const Call& c : calls) {
    switch (c.kind) {
      case kMalloc:
      case kCalloc:
      case kAligned: {
        void* p = c.kind == kMalloc ? malloc(c.size)
                  : c.kind == kCalloc
                      ? calloc(1, c.size)
                      : aligned_alloc(c.alignment, (c.size + c.alignment - 1) / c.alignment * c.alignment);
        if (p != nullptr && c.size != 0) static_cast<volatile char*>(p)[0] = 1;
        failed += p == nullptr;
        free(blocks[c.out]);  // a slot's earlier block whose free the trace did not keep
        blocks[c.out] = p;
        break;
      }
      case kFree:
        free(blocks[c.in]);
        blocks[c.in] = nullptr;
        break;
      case kRealloc: {
        void* old = c.in != kNone ? blocks[c.in] : nullptr;
        void* p = realloc(old, c.size);
        if (p == nullptr) {
          ++failed;
          break;
        }
        static_cast<volatile char*>(p)[c.size - 1] = 1;
        blocks[c.out] = p;
        break;
      }
      default:
        break;
    }
  }
  for (void*& p : blocks) {
    free(p);
    p = nullptr;
  }
  return failed;
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  const uint64_t threads = args.u64("threads", 1);
  const uint64_t repeat = args.u64("repeat", 3);
  const char* dir = args.str("traces", nullptr);
  args.finish("replays tinymalloc trace files (trace=PATH) with the allocator under test");
  if (dir == nullptr || threads != 1 || repeat == 0) bench::fail(kName, "--traces DIR is needed (one thread only)");
  std::vector<std::string> files;
  DIR* d = opendir(dir);
  if (d == nullptr) bench::fail(kName, (std::string("cannot open ") + dir).c_str());
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') files.push_back(std::string(dir) + "/" + e->d_name);
  }
  closedir(d);
  std::sort(files.begin(), files.end());
  if (files.empty()) bench::fail(kName, "no trace files");
  std::vector<std::vector<Call>> traces(files.size());
  std::vector<uint32_t> slots(files.size(), 0);
  uint64_t ops = 0, checksum = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    load_trace(files[i], traces[i], slots[i]);
    ops += traces[i].size();
    for (const Call& c : traces[i])
      checksum = (checksum ^ (c.kind * 0x9e3779b97f4a7c15ull + c.size)) * 0x100000001b3ull;
  }
  uint64_t failed = 0;
  const double t0 = bench::now_s();
  for (uint64_t r = 0; r < repeat; ++r) {
    for (size_t i = 0; i < files.size(); ++i) {
      std::vector<void*> blocks(slots[i], nullptr);
      failed += replay(traces[i], blocks);
    }
  }
  const double t1 = bench::now_s();
  if (failed != 0) bench::fail(kName, "an allocation the traced program made failed here");
  bench::print_result(kName, threads, ops * repeat, checksum, t1 - t0);
  return 0;
}
