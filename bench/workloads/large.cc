// large: large-object churn (after mimalloc-bench "malloc-large").
//
// Each thread keeps --live slots (default 4); --ops operations in all are split evenly over the
// threads. An operation picks a random slot, verifies and frees
// its block and allocates a new one of a log-uniform size in --min..--max (256 KiB .. 64 MiB),
// writing one word in every 4 KiB page (every page is touched, so each fresh mapping costs its page
// faults). The allocator's choice between reusing freed memory, mremap and fresh mappings decides
// the time here; the peak RSS shows how much it keeps.
//
// --uniform 1: sizes uniform in --min..--max instead of log-uniform. --zero 1: every block is
// value-initialised with new char[n]() (written in full, as std::make_unique<char[]> does) and
// freed with delete[]; --zero 2: allocated with calloc (malloc + memset would be turned into
// calloc by the compiler). bench/compare's malloc_large row (mimalloc-bench malloc-large) is
// --uniform 1 --zero 1 --live 20 with 5..25 MiB blocks.
//
// Result line: large threads=N ops=<allocations> checksum=0x... time_s=... minflt=<page faults>
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kName = "large";
constexpr size_t kPage = 4096;

struct Block {
  void* p = nullptr;
  size_t size = 0;
  uint64_t tag = 0;
};

// On its own cache line: the threads' counters must not false-share (the benchmark would
// measure itself).
struct alignas(64) Worker {
  uint64_t sum = 0;
  bool ok = true;
};

// How a new block is obtained (--zero).
enum class Zero : uint64_t { kNone = 0, kNew = 1, kCalloc = 2 };

struct Params {
  uint64_t live, min, max;
  bool uniform;
  Zero zero;
};

// One thread's operations: replace a random slot's block by a new one.
void run(Worker* w, uint64_t tid, Params params, uint64_t ops) {
  bench::Rng rng(0x1a46e000 + tid);
  std::vector<Block> slots(params.live);
  auto retire = [&](Block& b) {
    w->sum += bench::check_block(b.p, b.size, b.tag, &w->ok, kPage);
    if (params.zero == Zero::kNew) {
      delete[] static_cast<char*>(b.p);
    } else {
      free(b.p);
    }
    b.p = nullptr;
  };
  for (uint64_t i = 0; i < ops; i++) {
    Block& b = slots[rng.below(params.live)];
    if (b.p) retire(b);
    b.size = params.uniform ? rng.range(params.min, params.max) : rng.log_uniform(params.min, params.max);
    b.tag = rng.next();
    switch (params.zero) {
      case Zero::kNone:
        b.p = bench::xmalloc(kName, b.size);
        break;
      case Zero::kNew:
        b.p = new char[b.size]();
        break;
      case Zero::kCalloc:
        b.p = calloc(1, b.size);
        if (!b.p) bench::fail(kName, "calloc returned NULL");
        break;
    }
    bench::fill_block(b.p, b.size, b.tag, kPage);
  }
  for (Block& b : slots)
    if (b.p) retire(b);
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  uint64_t threads = args.u64("threads", 1);
  uint64_t ops = args.u64("ops", 200);
  Params params{};
  params.live = args.u64("live", 4);
  params.min = args.u64("min", 256 * 1024);
  params.max = args.u64("max", 64 * 1024 * 1024);
  params.uniform = args.u64("uniform", 0) != 0;
  const uint64_t zero = args.u64("zero", 0);
  args.finish(
      "large-object churn, every page touched; --ops in all, --live per thread; --uniform 1: uniform sizes; "
      "--zero 1: new char[n](), 2: calloc");
  if (threads == 0 || params.live == 0 || params.min < 8 || params.max < params.min || zero > 2) {
    bench::fail(kName, "bad parameters");
  }
  params.zero = static_cast<Zero>(zero);

  std::vector<Worker> workers(threads);
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  double t0 = bench::now_s();
  std::vector<std::thread> ts;
  for (uint64_t t = 0; t < threads; t++) ts.emplace_back(run, &workers[t], t, params, bench::share(ops, threads, t));
  for (std::thread& t : ts) t.join();
  double t1 = bench::now_s();
  getrusage(RUSAGE_SELF, &r1);
  uint64_t checksum = 0;
  for (Worker& w : workers) {
    if (!w.ok) bench::fail(kName, "a large block's contents changed while it was live");
    checksum += w.sum;
  }
  bench::print_result(kName, threads, ops, checksum, t1 - t0, "minflt=" + std::to_string(r1.ru_minflt - r0.ru_minflt));
  return 0;
}
