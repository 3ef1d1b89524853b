// larson: server churn after Larson and Krishnan's benchmark (mimalloc-bench "larsonN").
//
// Each of --threads lineages owns an array of --slots blocks (per thread, as in larson). A thread repeatedly picks a
// random slot, verifies and frees its block and allocates a new one of a random size in 16..1024 B, which it fills.
// --ops operations in all are split evenly over the lineages; --generations times the lineage's thread exits and a
// newly created thread takes over the slot array and the generator state, so the new thread frees blocks that the
// previous generation allocated (frees by a different, already dead, thread).
//
// Result line: larson threads=N ops=<total ops> checksum=0x... time_s=...
#include <thread>
#include <vector>

#include "common.h"

namespace {

constexpr const char* kName = "larson";

struct Block {
  void* p;
  uint32_t size;
  uint64_t tag;
};

// On its own cache line: the threads' counters must not false-share (the benchmark would
// measure itself).
struct alignas(64) Lineage {
  std::vector<Block> slots;
  bench::Rng rng{0};
  uint64_t sum = 0;
  bool ok = true;
};

void new_block(Lineage& l, Block& b) {
  b.size = static_cast<uint32_t>(l.rng.range(16, 1024));
  b.tag = l.rng.next();
  b.p = bench::xmalloc(kName, b.size);
  bench::fill_block(b.p, b.size, b.tag);
}

void retire_block(Lineage& l, Block& b) {
  l.sum += bench::check_block(b.p, b.size, b.tag, &l.ok);
  free(b.p);
  b.p = nullptr;
}

void run_generation(Lineage* l, uint64_t ops) {
  uint64_t n = l->slots.size();
  for (uint64_t i = 0; i < ops; i++) {
    Block& b = l->slots[l->rng.below(n)];
    retire_block(*l, b);
    new_block(*l, b);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bench::Args args(argc, argv);
  uint64_t threads = args.u64("threads", 1);
  uint64_t slots = args.u64("slots", 5000);
  uint64_t ops = args.u64("ops", 8000000);
  uint64_t generations = args.u64("generations", 20);
  args.finish("larson-like server churn; --ops in all, split over the threads; --slots per thread");
  if (threads == 0 || slots == 0 || generations == 0) bench::fail(kName, "threads, slots and generations must be > 0");

  std::vector<Lineage> lineages(threads);
  for (uint64_t t = 0; t < threads; t++) {
    Lineage& l = lineages[t];
    l.rng = bench::Rng(0x1a250000 + t);
    l.slots.resize(slots);
  }

  double t0 = bench::now_s();
  // Generation 0 fills the slots in its own thread, like larson's warm-up.
  uint64_t done = 0;
  for (uint64_t g = 0; g < generations; g++) {
    std::vector<std::thread> workers;
    workers.reserve(threads);
    for (uint64_t t = 0; t < threads; t++) {
      uint64_t per_gen = bench::share(bench::share(ops, threads, t), generations, g);
      done += per_gen;
      workers.emplace_back([&lineages, t, g, per_gen] {
        Lineage& l = lineages[t];
        if (g == 0)
          for (Block& b : l.slots) new_block(l, b);
        run_generation(&l, per_gen);
      });
    }
    for (std::thread& w : workers) w.join();
  }
  // The main thread frees what the last generation left.
  uint64_t checksum = 0;
  bool ok = true;
  for (Lineage& l : lineages) {
    for (Block& b : l.slots) retire_block(l, b);
    checksum += l.sum;
    ok = ok && l.ok;
  }
  double t1 = bench::now_s();
  if (!ok) bench::fail(kName, "block contents changed while the block was live");
  bench::print_result(kName, threads, done, checksum, t1 - t0);
  return 0;
}
