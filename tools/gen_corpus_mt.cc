// tm_gen_corpus_mt ROOT [--clean]
// Writes the heap_mt seed corpus ROOT/corpus/heap_mt/<sha1 of content>, the dictionary
// ROOT/fuzz/heap_mt.dict and the self-test input ROOT/corpus/selftest/poke-heap_mt, built
// with the heap_mt encoder (harness/tm_harness_mt.h, FORMAT.md "Multi-threaded programs").
// Deterministic: re-running writes the same files (existing ones are left alone). --clean
// first removes the files of corpus/heap_mt/ (not corpus/regressions/). Run through
// tools/gen-corpus.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "corpus_io.h"
#include "tm_harness_mt.h"

namespace {

using tmh::MtOp;
using tmh::MtProgram;
using tmh::Op;
using tmh::SizeExpr;
using Bytes = std::vector<uint8_t>;
using Ops = std::vector<MtOp>;

// ---- Program building --------------------------------------------------------------------------

// Shorthands: heap op, thread select, barrier, exact size.
MtOp H(const Op& op) { return MtOp::heap(op); }
MtOp T(unsigned t) { return MtOp::select(t); }
MtOp B() { return MtOp::barrier(); }
SizeExpr X(uint64_t n) { return SizeExpr::exact(n); }

// A program: thread count, config bits and v1 header flags (paranoid 1, fill-usable 2,
// end order << 2).
MtProgram prog(unsigned threads, const Ops& ops, bool strict = false, bool owners_free = false, uint8_t flags = 0) {
  MtProgram p;
  p.header = static_cast<uint8_t>(tmh::kMtFormatVersion << 4 | (flags & 15));
  p.config = MtProgram::make_config(threads, strict, owners_free);
  p.ops = ops;
  return p;
}

// Appends b to a.
void append(Ops& a, const Ops& b) { a.insert(a.end(), b.begin(), b.end()); }

// Sizes of every tier: small (class edges), medium, large.
const std::vector<uint64_t> kSmall = {1, 16, 17, 48, 100, 128, 129, 256, 1000, 4096, 8192};
const std::vector<uint64_t> kMedium = {8193, 12000, 20000, 65536, 100000, 262144, 524288};
const std::vector<uint64_t> kLarge = {524289, 1 << 20, 3 << 20, 8 << 20};

// Producer thread p fills `count` slots with `sizes` (cycled) and sends them to consumer c,
// which receives them (as many as have arrived), frees what it got; the rest is drained after
// the barrier.
Ops producer_consumer(unsigned p, unsigned c, const std::vector<uint64_t>& sizes, unsigned count, bool calloc) {
  Ops o;
  o.push_back(T(p));
  for (unsigned i = 0; i < count; ++i) {
    const uint64_t n = sizes[i % sizes.size()];
    o.push_back(calloc ? H(Op::calloc(i, 1, X(n))) : H(Op::malloc(i, X(n))));
    o.push_back(MtOp::send(i, c));
  }
  o.push_back(T(c));
  for (unsigned i = 0; i < count; ++i) {
    o.push_back(MtOp::recv(i));
    o.push_back(H(Op::free(i)));
  }
  o.push_back(B());
  o.push_back(T(c));
  o.push_back(MtOp::drain());
  return o;
}

// The seed programs (numbered in the comments below).
std::vector<MtProgram> seeds() {
  std::vector<MtProgram> v;
  // 1-6: producer / consumer handoff through mailboxes, every tier, malloc and calloc.
  v.push_back(prog(2, producer_consumer(0, 1, kSmall, 32, false)));
  v.push_back(prog(2, producer_consumer(0, 1, kMedium, 16, false)));
  v.push_back(prog(2, producer_consumer(0, 1, kLarge, 6, false)));
  v.push_back(prog(2, producer_consumer(1, 0, kSmall, 24, true)));
  {
    Ops o = producer_consumer(0, 1, kSmall, 16, false);  // two pairs at once
    append(o, {B()});
    append(o, producer_consumer(2, 3, kMedium, 12, false));
    v.push_back(prog(4, o));
  }
  {
    Ops o;  // every thread produces for the next one (ring), 8 threads
    for (unsigned t = 0; t < 8; ++t) {
      o.push_back(T(t));
      o.push_back(H(Op::alloc_range(0, 15, SizeExpr::cls(t * 7 % 56))));
      o.push_back(MtOp::send_range(0, 16, (t + 1) % 8));
      o.push_back(H(Op::malloc(20, X(kMedium[t % kMedium.size()]))));
      o.push_back(MtOp::send(20, (t + 3) % 8));
      for (unsigned i = 0; i < 8; ++i) o.push_back(MtOp::recv(30 + i));
      o.push_back(MtOp::drain());
    }
    o.push_back(B());
    for (unsigned t = 0; t < 8; ++t) {
      o.push_back(T(t));
      o.push_back(MtOp::drain());
      o.push_back(H(Op::free_range(30, 8, 1, false)));
    }
    v.push_back(prog(8, o));
  }
  // 7-10: one block realloc'ed alternately by two threads through small -> medium -> large
  // and back (gives at phase ends), also with strict overlap and owners-free.
  for (int variant = 0; variant < 4; ++variant) {
    Ops o = {T(0), H(Op::malloc(0, X(24)))};
    const uint64_t path[] = {24, 200, 5000, 9000, 70000, 600000, 2 << 20, 300000, 8000, 64, 16, 0};
    unsigned owner = 0;
    for (uint64_t n : path) {
      o.push_back(T(owner));
      o.push_back(MtOp::give(0, 1 - owner, 0));
      o.push_back(B());
      owner = 1 - owner;
      o.push_back(T(owner));
      o.push_back(H(Op::realloc(0, X(n))));
      if (variant & 1) o.push_back(H(Op::realloc(0, SizeExpr::relative(0, true, 0, 1, true))));
    }
    v.push_back(prog(2, o, variant >= 2, (variant & 1) != 0));
  }
  // 11-14: threads exit with live blocks; the main thread (or another thread) frees them.
  for (unsigned tier = 0; tier < 3; ++tier) {
    const std::vector<uint64_t>& sizes = tier == 0 ? kSmall : tier == 1 ? kMedium : kLarge;
    Ops o;
    for (unsigned t = 0; t < 3; ++t) {
      o.push_back(T(t));
      for (unsigned i = 0; i < 10; ++i) o.push_back(H(Op::malloc(i, X(sizes[(i + t) % sizes.size()]))));
      o.push_back(MtOp::exit());
    }
    o.push_back(B());
    v.push_back(prog(3, o));
  }
  {
    Ops o;  // exit, then the replacement thread frees and reallocates the exited one's blocks
    o.push_back(T(0));
    o.push_back(H(Op::alloc_range(0, 40, X(64))));
    o.push_back(H(Op::alloc_range(40, 8, X(20000))));
    o.push_back(MtOp::exit());
    o.push_back(H(Op::free_range(0, 20, 2, false)));
    o.push_back(H(Op::realloc(1, X(3000))));
    o.push_back(H(Op::realloc(41, X(40000))));
    o.push_back(T(1));
    o.push_back(H(Op::alloc_range(0, 40, X(64))));
    o.push_back(MtOp::exit());
    o.push_back(H(Op::free_range(0, 40, 1, true)));
    o.push_back(B());
    o.push_back(T(0));
    o.push_back(MtOp::migrate(1));
    o.push_back(MtOp::exit());
    o.push_back(B());
    o.push_back(T(1));
    o.push_back(H(Op::free_range(0, 64, 1, false)));
    v.push_back(prog(2, o));
  }
  // 15-17: thread churn: every phase, every thread allocates, sends half away and exits.
  for (unsigned threads : {2u, 4u, 8u}) {
    Ops o;
    for (unsigned round = 0; round < 6; ++round) {
      for (unsigned t = 0; t < threads; ++t) {
        o.push_back(T(t));
        o.push_back(MtOp::drain());
        o.push_back(H(Op::alloc_range(0, 12, SizeExpr::cls((round * 9 + t * 5) % 56))));
        o.push_back(MtOp::send_range(0, 6, (t + 1) % threads));
        o.push_back(H(Op::malloc(13, X(kMedium[(round + t) % kMedium.size()]))));
        o.push_back(MtOp::exit());
      }
      o.push_back(B());
    }
    v.push_back(prog(threads, o, false, threads == 4));
  }
  // 18-20: realloc of foreign blocks (given at a phase end), every tier, grow and shrink.
  for (unsigned tier = 0; tier < 3; ++tier) {
    const std::vector<uint64_t>& sizes = tier == 0 ? kSmall : tier == 1 ? kMedium : kLarge;
    Ops o = {T(0)};
    for (unsigned i = 0; i < sizes.size(); ++i) {
      o.push_back(H(Op::malloc(i, X(sizes[i]))));
      o.push_back(MtOp::give(i, 1, i));
    }
    o.push_back(B());
    o.push_back(T(1));
    for (unsigned i = 0; i < sizes.size(); ++i) {
      o.push_back(H(Op::realloc(i, SizeExpr::relative(i, false, i % 2 ? 1 : 2, 0, true))));
    }
    o.push_back(T(0));
    for (unsigned i = 0; i < sizes.size(); ++i) o.push_back(H(Op::malloc(i, X(sizes[i]))));
    v.push_back(prog(2, o, tier == 1));
  }
  // 21-24: contention on one size class: every thread allocates and frees the same class
  // while sending every other block to a neighbour (remote frees into a busy run).
  for (unsigned cls : {0u, 3u, 20u, 55u}) {
    Ops o;
    for (unsigned t = 0; t < 4; ++t) {
      o.push_back(T(t));
      for (unsigned r = 0; r < 3; ++r) {
        o.push_back(H(Op::alloc_range(0, 63, SizeExpr::cls(cls))));
        o.push_back(MtOp::send_range(0, 16, (t + 1) % 4));
        o.push_back(MtOp::send_range(32, 16, (t + 3) % 4));
        o.push_back(MtOp::drain());
        o.push_back(H(Op::free_range(16, 16, 1, false)));
      }
    }
    o.push_back(B());
    for (unsigned t = 0; t < 4; ++t) {
      o.push_back(T(t));
      o.push_back(MtOp::drain());
    }
    v.push_back(prog(4, o, cls == 20));
  }
  // 25-26: medium blocks side by side freed by two threads at once (coalescing races).
  for (uint64_t n : {20000u, 100000u}) {
    Ops o = {T(0), H(Op::alloc_range(0, 24, X(n)))};
    for (unsigned i = 0; i < 24; i += 2) o.push_back(MtOp::give(i, 1, i));
    o.push_back(B());
    o.push_back(T(0));
    o.push_back(H(Op::free_range(1, 12, 2, false)));
    o.push_back(T(1));
    o.push_back(H(Op::free_range(0, 12, 2, true)));
    o.push_back(B());
    o.push_back(T(0));
    o.push_back(H(Op::alloc_range(0, 24, X(n / 2))));
    o.push_back(T(1));
    o.push_back(H(Op::alloc_range(0, 24, X(n / 3))));
    v.push_back(prog(2, o));
  }
  // 27-28: heap checks and release_cached while other threads allocate.
  {
    Ops o;
    for (unsigned t = 0; t < 3; ++t) {
      o.push_back(T(t));
      o.push_back(H(Op::alloc_range(0, 32, SizeExpr::cls(t * 11))));
      o.push_back(H(Op::alloc_range(32, 4, X(30000 + t))));
      o.push_back(H(Op::free_range(0, 32, 3, false)));
    }
    o.push_back(T(3));
    for (unsigned i = 0; i < 6; ++i) {
      o.push_back(H(Op::check_heap()));
      o.push_back(MtOp::yield(3));
    }
    o.push_back(H(Op::release_cached()));
    v.push_back(prog(4, o));
  }
  {
    Ops o;
    for (unsigned t = 0; t < 2; ++t) {
      o.push_back(T(t));
      o.push_back(H(Op::alloc_range(0, 6, X(1 << 20))));
      o.push_back(H(Op::free_range(0, 6, 1, false)));
      o.push_back(H(Op::release_cached()));
      o.push_back(H(Op::alloc_range(0, 6, X(200000))));
    }
    v.push_back(prog(2, o));
  }
  // 29: an OOM phase: every thread's allocations may fail, then a normal phase.
  {
    Ops o = {H(Op::oom_window(1, 4))};
    for (unsigned t = 0; t < 3; ++t) {
      o.push_back(T(t));
      o.push_back(H(Op::malloc(0, X(20000))));
      o.push_back(H(Op::malloc(1, X(2 << 20))));
      o.push_back(H(Op::realloc(0, X(600000))));
      o.push_back(MtOp::send(0, (t + 1) % 3));
    }
    o.push_back(B());
    for (unsigned t = 0; t < 3; ++t) {
      o.push_back(T(t));
      o.push_back(MtOp::recv(5));
      o.push_back(H(Op::realloc(5, X(100))));
      o.push_back(H(Op::malloc(1, X(3 << 20))));
    }
    v.push_back(prog(3, o));
  }
  // 30-31: aligned blocks handed over and freed / reallocated elsewhere.
  {
    Ops o = {T(0)};
    const uint64_t aligns[] = {16, 64, 4096, 65536, 1 << 20};
    for (unsigned i = 0; i < 5; ++i) {
      o.push_back(H(Op::aligned_alloc(i, aligns[i], X(100 + i * 5000))));
      o.push_back(H(Op::posix_memalign(10 + i, aligns[i], X(3000 + i))));
      o.push_back(MtOp::send(i, 1));
      o.push_back(MtOp::give(10 + i, 1, 10 + i));
    }
    o.push_back(T(1));
    for (unsigned i = 0; i < 5; ++i) o.push_back(MtOp::recv(i));
    o.push_back(B());
    o.push_back(T(1));
    o.push_back(MtOp::drain());
    for (unsigned i = 0; i < 5; ++i) o.push_back(H(Op::realloc(10 + i, X(50000))));
    v.push_back(prog(2, o, true));
  }
  // 32: fill-usable + touch_usable on blocks that change threads; paranoid verification.
  {
    Ops o = {T(0), H(Op::alloc_range(0, 8, X(100))), H(Op::touch_usable(3)), MtOp::send_range(0, 8, 1), T(1)};
    for (unsigned i = 0; i < 8; ++i) o.push_back(MtOp::recv(i));
    o.push_back(H(Op::realloc(0, X(5000))));
    o.push_back(B());
    o.push_back(T(1));
    o.push_back(MtOp::drain());
    o.push_back(H(Op::touch_usable(0)));
    v.push_back(prog(2, o, false, false, 1 | 2));
  }
  // 33-36: the final-free orders with blocks of exited threads.
  for (uint8_t order = 0; order < 4; ++order) {
    Ops o;
    for (unsigned t = 0; t < 4; ++t) {
      o.push_back(T(t));
      o.push_back(H(Op::alloc_range(t * 4, 6, X(40 + t * 3000))));
      o.push_back(H(Op::malloc(40, X(kLarge[t % kLarge.size()]))));
      o.push_back(MtOp::send(t * 4, (t + 2) % 4));
      o.push_back(MtOp::exit());
    }
    v.push_back(prog(4, o, order == 1, false, static_cast<uint8_t>(order << 2)));
  }
  // 37-38: interleaving noise (yield / spin) around sends and receives.
  for (uint8_t y : {uint8_t{2}, uint8_t{200}}) {
    Ops o;
    for (unsigned t = 0; t < 2; ++t) {
      o.push_back(T(t));
      for (unsigned i = 0; i < 16; ++i) {
        o.push_back(H(Op::malloc(i, X(16 + 48 * i))));
        o.push_back(MtOp::send(i, 1 - t));
        o.push_back(MtOp::yield(y));
        o.push_back(MtOp::recv(32 + i));
        o.push_back(H(Op::realloc(32 + i, X(700 - 40 * i))));
      }
    }
    v.push_back(prog(2, o));
  }
  // 39-40: many phases with gives in a ring (blocks travel through every thread).
  for (unsigned threads : {3u, 6u}) {
    Ops o;
    for (unsigned t = 0; t < threads; ++t) {
      o.push_back(T(t));
      o.push_back(H(Op::alloc_range(0, 4, X(kSmall[t % kSmall.size()] + 100))));
      o.push_back(H(Op::malloc(4, X(kMedium[t % kMedium.size()]))));
    }
    for (unsigned round = 0; round < 10; ++round) {
      for (unsigned t = 0; t < threads; ++t) {
        o.push_back(T(t));
        o.push_back(H(Op::realloc(round % 5, SizeExpr::relative(round % 5, false, round % 2 ? 3 : 4, 0, true))));
        o.push_back(MtOp::migrate((t + 1) % threads));
      }
      o.push_back(B());
    }
    v.push_back(prog(threads, o));
  }
  // 41: next-thread stepping and aliases in a compact stream.
  {
    Ops o;
    for (unsigned i = 0; i < 24; ++i) {
      o.push_back(H(Op::malloc(i % 8, X(32 + i * 700))));
      o.push_back(MtOp::send(i % 8, 0));
      o.push_back(MtOp::next());
      o.push_back(MtOp::recv(16 + i % 4));
    }
    v.push_back(prog(5, o));
  }
  // 42-55: every third seed again with an arena mode: each thread its own arena (frees of
  // foreign blocks, remote-free lists), one shared arena (lock contention), two arenas.
  const size_t base = v.size();
  for (size_t i = 0; i < base; i += 3) {
    MtProgram q = v[i];
    const unsigned mode = 1 + (i / 3) % 3;
    q.config = static_cast<uint8_t>((q.config & ~(3u << tmh::kMtConfigArenaShift)) | mode << tmh::kMtConfigArenaShift);
    v.push_back(q);
  }
  return v;
}

// ---- Dictionary --------------------------------------------------------------------------------

// Escaped form of a dictionary token (\x20\x01).
std::string dict_escape(const Bytes& b) {
  std::string s;
  char buf[8];
  for (uint8_t c : b) {
    snprintf(buf, sizeof buf, "\\x%02x", c);
    s += buf;
  }
  return s;
}

// Tokens: thread ops with every thread operand, common op pairs and heap ops.
std::string mt_dict() {
  std::vector<std::pair<std::string, Bytes>> entries;
  auto add = [&](const std::string& name, const Ops& ops) {
    Bytes b;
    for (const MtOp& m : ops) tmh::encode_mt_op(m, b);
    entries.push_back({name, b});
  };
  for (unsigned t = 0; t < 8; ++t) {
    const std::string n = std::to_string(t);
    add("thread" + n, {T(t)});
    add("barrier_thread" + n, {B(), T(t)});
    add("send0_to" + n, {MtOp::send(0, t)});
    add("give0_to" + n, {MtOp::give(0, t, 0)});
    add("migrate_to" + n, {MtOp::migrate(t)});
    add("send_range_to" + n, {MtOp::send_range(0, 16, t)});
  }
  add("recv0", {MtOp::recv(0)});
  add("recv_free", {MtOp::recv(1), H(Op::free(1))});
  add("recv_realloc", {MtOp::recv(2), H(Op::realloc(2, SizeExpr::relative(2, false, 1, 0, true)))});
  add("exit_barrier", {MtOp::exit(), B()});
  add("drain_barrier", {MtOp::drain(), B()});
  add("spin", {MtOp::yield(200)});
  add("malloc_small", {H(Op::malloc(0, X(48)))});
  add("malloc_medium", {H(Op::malloc(0, X(20000)))});
  add("malloc_large", {H(Op::malloc(0, X(1 << 20)))});
  add("alloc_range_small", {H(Op::alloc_range(0, 32, X(64)))});
  add("free_range_all", {H(Op::free_range(0, 64, 1, false))});
  add("check", {H(Op::check_heap())});
  add("oom", {H(Op::oom_window(0, 8))});
  std::string out =
      "# Generated by tools/gen-corpus (tm_gen_corpus_mt); harness/FORMAT.md \"Multi-threaded programs\" tokens.\n";
  std::set<Bytes> seen;
  for (auto& [name, b] : entries) {
    if (b.size() < 2 || !seen.insert(b).second) continue;
    out += name + "=\"" + dict_escape(b) + "\"\n";
  }
  return out;
}

// ---- Output ------------------------------------------------------------------------------------

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    fprintf(stderr, "usage: tm_gen_corpus_mt REPO_ROOT [--clean]\n");
    return 2;
  }
  const std::string root = argv[1];
  const bool clean = argc > 2 && strcmp(argv[2], "--clean") == 0;
  const std::string dir = root + "/corpus/heap_mt";
  if (!tmtools::mkdirs(dir) || !tmtools::mkdirs(root + "/corpus/selftest") || !tmtools::mkdirs(root + "/fuzz"))
    return 1;
  if (clean) tmtools::clean_dir(dir);
  const std::vector<MtProgram> ps = seeds();
  int fresh = 0;
  for (const MtProgram& p : ps) {
    const Bytes b = tmh::encode_mt(p);
    const std::string path = dir + "/" + tmtools::sha1_hex(b);
    struct stat st;
    if (stat(path.c_str(), &st) == 0) continue;
    if (!tmtools::write_file(path, b)) return 1;
    ++fresh;
  }
  printf("tm_gen_corpus_mt: corpus/heap_mt: %zu seeds (%d new)\n", ps.size(), fresh);
  // Self-test input (fuzz.selftest.heap_mt.*): thread 0 allocates two blocks and peeks into
  // the second; thread 1 allocates, frees and allocates again (the faulty backends' third
  // malloc of a live predecessor / third free happen in it or in the final frees).
  {
    const MtProgram poke =
        prog(2, {T(0), H(Op::malloc(0, X(100))), H(Op::malloc(1, X(20000))), T(1), H(Op::malloc(0, X(300))),
                 H(Op::free(0)), H(Op::malloc(1, X(50))), H(Op::malloc(2, X(70))), T(0), H(Op::peek(1, 1234)),
                 H(Op::check_heap()), B(), T(0), H(Op::free(0))});
    if (!tmtools::write_file(root + "/corpus/selftest/poke-heap_mt", tmh::encode_mt(poke))) return 1;
  }
  const std::string d = mt_dict();
  FILE* f = fopen((root + "/fuzz/heap_mt.dict").c_str(), "wb");
  if (!f) return 1;
  fwrite(d.data(), 1, d.size(), f);
  return fclose(f) == 0 ? 0 : 1;
}
