// Time seeds (format v3) for tm_gen_corpus: see gen_corpus_time.h. Each scenario lets the
// virtual clock cross the purge delay (default 1000 ms; the upkeep sweeps every half delay
// and purges what two sweeps in a row found idle) and then uses the purged memory again, so
// that a wrong purge shows up as changed contents of a live block, a calloc'd block that is
// not zero, or committed bytes that do not add up. The upkeep runs on the allocator's slow
// paths only: a medium allocation, a large free, or the first block of a small class the
// thread has not used yet (a cache refill); the scenarios take one after each time step.
#include "gen_corpus_time.h"

#include <cstdint>

namespace tmtools {

namespace {

using tmh::Op;
using tmh::Program;
using tmh::SizeExpr;

constexpr uint64_t KiB = 1024;
constexpr uint64_t MiB = 1024 * 1024;

// advance_time by exactly ms (a value of tmh::kTimeSteps).
Op at(uint64_t ms) {
  for (unsigned i = 0; i < 32; ++i) {
    if (tmh::kTimeSteps[i] == ms) return Op::advance_time(i);
  }
  return Op::advance_time(16);  // 1000 ms
}

Op mal(unsigned slot, uint64_t n) { return Op::malloc(slot, SizeExpr::exact(n)); }
Op cal(unsigned slot, uint64_t n) { return Op::calloc(slot, 1, SizeExpr::exact(n)); }
Op rea(unsigned slot, uint64_t n) { return Op::realloc(slot, SizeExpr::exact(n)); }
Op fre(unsigned slot) { return Op::free(slot); }

// A slow path that runs the upkeep without touching the memory under test: the first block
// of small class `size` (each call site uses another size), freed at once, in slot 63.
void upkeep(std::vector<Op>& ops, uint64_t size) {
  ops.push_back(mal(63, size));
  ops.push_back(fre(63));
}

// Two sweeps' worth of time (half a delay each), each followed by an upkeep: what was idle
// at the first is purged at the second.
void two_sweeps(std::vector<Op>& ops, uint64_t first_size) {
  for (uint64_t k = 0; k < 3; ++k) {
    ops.push_back(at(500));
    upkeep(ops, first_size + 512 * k);
  }
}

Program program(std::vector<Op> ops, uint8_t flags = 0) {
  Program p;
  p.header = static_cast<uint8_t>(tmh::kFormatVersionTime << 4 | flags);
  p.ops = std::move(ops);
  return p;
}

// A freed large block's mapping waits in the global pool; the pool purges it once it has
// waited the delay, and the next large request of that size takes it back (zero-filled).
Program pooled_mapping_purged_and_reused(uint64_t size) {
  std::vector<Op> ops = {mal(0, size), Op::touch_usable(0), fre(0), at(999)};
  ops.push_back(mal(1, 20000));  // medium: the upkeep runs, nothing is due yet
  ops.push_back(at(1));
  ops.push_back(mal(2, 20000));  // now the pooled mapping is purged
  ops.push_back(cal(3, size));   // takes the purged mapping: must read as zero
  ops.push_back(mal(4, size / 2 + 4096));
  ops.push_back(Op::check_heap());
  ops.push_back(fre(3));
  ops.push_back(at(5000));
  ops.push_back(fre(1));  // a medium free runs the upkeep too
  ops.push_back(cal(5, size));
  ops.push_back(Op::check_heap());
  return program(ops);
}

// Free medium blocks of 64 KiB or more between live ones have their interior pages purged
// after two idle sweeps; the neighbours stay intact and the hole serves a calloc (zeroed)
// and an in-place realloc growth of its predecessor.
Program medium_hole_purged(uint64_t hole, uint64_t neighbour) {
  std::vector<Op> ops = {mal(0, neighbour), mal(1, hole), mal(2, neighbour), fre(1)};
  two_sweeps(ops, 4608);
  ops.push_back(Op::check_heap());
  ops.push_back(cal(3, hole - 4096));
  ops.push_back(fre(3));
  two_sweeps(ops, 5120);
  ops.push_back(rea(0, neighbour + hole / 2));  // grows into the purged successor
  ops.push_back(Op::check_heap());
  ops.push_back(cal(4, hole / 2));
  return program(ops);
}

// An empty medium segment the arena retains is purged as a whole after two sweeps; reusing
// it counts its memory as committed again.
Program retained_segment_purged() {
  std::vector<Op> ops = {mal(0, 300 * KiB), mal(1, 200 * KiB), fre(0), fre(1), mal(2, 64)};
  two_sweeps(ops, 4608);
  ops.push_back(cal(3, 500 * KiB));
  ops.push_back(cal(4, 100 * KiB));
  ops.push_back(Op::check_heap());
  ops.push_back(Op::release_cached());
  ops.push_back(mal(5, 300 * KiB));
  return program(ops);
}

// Free runs of a small segment in use are purged when idle; later allocations of other
// classes take the purged runs back (calloc needs no clearing there).
Program small_runs_purged(uint64_t block) {
  std::vector<Op> ops = {Op::alloc_range(0, 60, SizeExpr::exact(block)), Op::free_range(1, 59, 1, false)};
  two_sweeps(ops, 4608);
  ops.push_back(Op::check_heap());
  ops.push_back(Op::calloc(1, 1, SizeExpr::exact(block + 16)));
  ops.push_back(Op::alloc_range(2, 40, SizeExpr::exact(block * 2)));
  ops.push_back(Op::check_heap());
  return program(ops);
}

// Large blocks freed at different times: the older mapping is purged first; a request no
// pooled mapping fits gathers the unpurged ones' pages into a fresh mapping.
Program gather_after_partial_purge() {
  std::vector<Op> ops = {mal(0, 3 * MiB), mal(1, 5 * MiB), fre(0), at(600), fre(1), at(500)};
  ops.push_back(mal(2, 20000));  // the first mapping is due, the second is not
  ops.push_back(cal(3, 7 * MiB));
  ops.push_back(Op::check_heap());
  ops.push_back(fre(3));
  ops.push_back(at(2000));
  ops.push_back(fre(2));
  ops.push_back(cal(4, 7 * MiB));
  ops.push_back(rea(4, 9 * MiB));
  return program(ops);
}

// realloc of every tier across a purge of the memory around it.
Program realloc_across_purges() {
  std::vector<Op> ops = {mal(0, 100), mal(1, 30 * KiB), mal(2, 700 * KiB), mal(3, 100 * KiB), mal(4, 100 * KiB)};
  ops.push_back(fre(3));
  two_sweeps(ops, 4608);
  ops.push_back(rea(0, 200));
  ops.push_back(rea(1, 120 * KiB));
  ops.push_back(rea(2, 2 * MiB));
  ops.push_back(at(1000));
  ops.push_back(rea(2, 600 * KiB));
  ops.push_back(rea(1, 9000));
  ops.push_back(Op::check_heap());
  return program(ops);
}

// Aligned blocks carved out of purged medium and pooled memory.
Program aligned_after_purge() {
  std::vector<Op> ops = {mal(0, 200 * KiB), mal(1, 100 * KiB), mal(2, 2 * MiB), fre(0), fre(2)};
  two_sweeps(ops, 4608);
  ops.push_back(Op::aligned_alloc(3, 65536, SizeExpr::exact(150 * KiB)));
  ops.push_back(Op::posix_memalign(4, 4096, SizeExpr::exact(60 * KiB)));
  ops.push_back(Op::aligned_alloc(5, 2 * MiB, SizeExpr::exact(2 * MiB)));
  ops.push_back(Op::check_heap());
  return program(ops);
}

// Short steps that add up to the delay, with allocations in between.
Program small_steps() {
  std::vector<Op> ops;
  for (unsigned i = 0; i < 8; ++i) {
    ops.push_back(mal(i, 90 * KiB + i * 4096));
    if (i % 2 == 1) ops.push_back(fre(i - 1));
    ops.push_back(at(250));
  }
  ops.push_back(Op::check_heap());
  ops.push_back(at(3600000));
  upkeep(ops, 6656);
  ops.push_back(Op::check_heap());
  return program(ops);
}

// Memory pools: a reset hands the pool's segments to the global pool, where they are purged
// after the delay and then serve the pool (or the arenas) again.
Program pool_segments_purged() {
  std::vector<Op> ops = {Op::heap_malloc(0, 0, SizeExpr::exact(300 * KiB)), Op::heap_malloc(0, 1, SizeExpr::exact(64)),
                         Op::heap_malloc(0, 2, SizeExpr::exact(3 * MiB)), Op::heap_reset(0), at(1001)};
  ops.push_back(mal(3, 20000));  // the upkeep purges the pooled segments
  ops.push_back(Op::heap_calloc(0, 4, 1, SizeExpr::exact(200 * KiB)));
  ops.push_back(Op::heap_calloc(0, 5, 1, SizeExpr::exact(2 * MiB)));
  ops.push_back(Op::heap_stats(0));
  ops.push_back(Op::heap_destroy(0));
  ops.push_back(at(1000));
  ops.push_back(fre(3));
  ops.push_back(cal(6, 300 * KiB));
  ops.push_back(Op::check_heap());
  return program(ops);
}

// Random mixes of allocations, frees and time steps (deterministic).
std::vector<Program> random_programs(uint64_t seed, unsigned count) {
  std::vector<Program> out;
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&] {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  };
  for (unsigned p = 0; p < count; ++p) {
    std::vector<Op> ops;
    for (unsigned i = 0; i < 60; ++i) {
      const unsigned slot = static_cast<unsigned>(next() % 16);
      const uint64_t pick = next() % 10;
      const uint64_t size = uint64_t{1} << (4 + next() % 19);  // 16 B .. 4 MiB
      const uint64_t n = size + next() % size;
      if (pick < 4) {
        ops.push_back(mal(slot, n));
      } else if (pick < 6) {
        ops.push_back(fre(slot));
      } else if (pick < 7) {
        ops.push_back(cal(slot, n));
      } else if (pick < 8) {
        ops.push_back(rea(slot, n));
      } else {
        ops.push_back(Op::advance_time(static_cast<unsigned>(5 + next() % 20)));  // 50 ms .. 2500 ms
      }
    }
    out.push_back(program(ops));
  }
  return out;
}

}  // namespace

std::vector<Program> time_seeds(const std::string& target) {
  std::vector<Program> seeds;
  if (target == "heap_ops") {
    for (uint64_t size : {600 * KiB, 2 * MiB, 5 * MiB}) seeds.push_back(pooled_mapping_purged_and_reused(size));
    seeds.push_back(medium_hole_purged(200 * KiB, 100 * KiB));
    seeds.push_back(retained_segment_purged());
    seeds.push_back(small_runs_purged(1024));
    seeds.push_back(gather_after_partial_purge());
    seeds.push_back(small_steps());
    for (Program& p : random_programs(1, 6)) seeds.push_back(std::move(p));
  } else if (target == "realloc") {
    seeds.push_back(realloc_across_purges());
    seeds.push_back(medium_hole_purged(300 * KiB, 50 * KiB));
    seeds.push_back(pooled_mapping_purged_and_reused(9 * MiB));
    for (Program& p : random_programs(2, 4)) seeds.push_back(std::move(p));
  } else if (target == "split_coalesce") {
    for (uint64_t hole : {64 * KiB + 16, 70 * KiB, 200 * KiB, 480 * KiB}) {
      seeds.push_back(medium_hole_purged(hole, 100 * KiB));
    }
    seeds.push_back(medium_hole_purged(128 * KiB, 8 * KiB + 16));
    seeds.push_back(retained_segment_purged());
    seeds.push_back(small_steps());
    for (Program& p : random_programs(3, 4)) seeds.push_back(std::move(p));
  } else if (target == "aligned") {
    seeds.push_back(aligned_after_purge());
    seeds.push_back(small_runs_purged(4096));
    for (Program& p : random_programs(4, 2)) seeds.push_back(std::move(p));
  } else if (target == "heap_pools") {
    seeds.push_back(pool_segments_purged());
    seeds.push_back(retained_segment_purged());
    for (Program& p : random_programs(5, 2)) seeds.push_back(std::move(p));
  }
  return seeds;
}

}  // namespace tmtools
