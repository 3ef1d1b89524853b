// Self-test of the verification harness (ctest harness.selftest):
//  1. the decoder is total and the encoder canonical (random inputs, every profile);
//  2. the printer produces the documented trace lines;
//  3. clean programs pass on correct allocators (the system malloc and the faulty backend
//     with no fault), and so does every corpus file given on the command line;
//  4. every fault of the faulty backend is reported by the check it targets, and the
//     poke self-test (a byte changed behind the model's back) is reported.
// Exit status 0 when all hold; each failure is printed.
#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tm_harness.h"

extern "C" const char* __asan_default_options() { return "allocator_may_return_null=1"; }
extern "C" const char* __tsan_default_options() { return "allocator_may_return_null=1"; }
extern "C" const char* __msan_default_options() { return "allocator_may_return_null=1"; }

namespace {

using tmh::Op;
using tmh::Program;
using tmh::SizeExpr;

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    fprintf(stderr, "SELFTEST FAIL: %s\n", what.c_str());
  }
}

uint64_t rng_state = 0x9E3779B97F4A7C15ull;
uint64_t rnd() {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

Program prog(std::vector<Op> ops, uint8_t flags = 0) {
  Program p;
  p.header = static_cast<uint8_t>(tmh::kFormatVersion << 4 | flags);
  p.ops = std::move(ops);
  return p;
}

// A v2 program (memory-pool ops).
Program prog2(std::vector<Op> ops, uint8_t flags = 0) {
  Program p = prog(std::move(ops), flags);
  p.header = static_cast<uint8_t>(tmh::kFormatVersionPools << 4 | flags);
  return p;
}

tmh::Result run_on(tmh::Backend& be, const Program& p, bool poke = false) {
  tmh::Options o;
  o.abort_on_failure = false;
  o.free_after_failure = true;  // system and faulty backends only
  o.self_test_poke = poke;
  o.target = "selftest";
  tmh::Interpreter in(be, o);
  return in.run(p);
}

std::string what_line(const std::string& report) {
  const size_t a = report.find("what: ");
  if (a == std::string::npos) return report;
  const size_t b = report.find('\n', a);
  return report.substr(a, b - a);
}

void test_format() {
  // Totality + canonical fixpoint: decode(encode(decode(x))) encodes to the same bytes.
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> in(rnd() % 300);
    for (auto& b : in) b = static_cast<uint8_t>(rnd());
    for (int pr = 0; pr < static_cast<int>(tmh::Profile::kCount); ++pr) {
      const auto profile = static_cast<tmh::Profile>(pr);
      const Program p = tmh::decode(in.data(), in.size(), profile);
      const std::vector<uint8_t> e1 = tmh::encode(p);
      const Program q = tmh::decode(e1.data(), e1.size(), profile);
      const std::vector<uint8_t> e2 = tmh::encode(q);
      if (e1 != e2 || q.ops.size() != p.ops.size()) {
        check(false, "encode(decode(x)) is not a fixpoint for a random input, profile " +
                         std::string(tmh::profile_name(profile)));
        return;
      }
      // Canonical programs decode identically in every profile (v2 programs: in every
      // profile that reads v2).
      const tmh::Profile other = p.uses_pools() ? tmh::Profile::kPools : tmh::Profile::kGeneral;
      const Program g = tmh::decode(e1.data(), e1.size(), other);
      if (tmh::encode(g) != e1) {
        check(false, "a canonical encoding decodes differently in profile " + std::string(tmh::profile_name(other)));
        return;
      }
      (void)tmh::format_program(p, profile);
    }
  }
  // Version gating: a v1 target reads every header as v1 (the corpora keep their meaning);
  // the pools profile reads opcodes 16-26 as pool ops only with a v2+ header.
  {
    const uint8_t in[] = {0x20, 16, 1, 21, 1};  // v2: heap_create pool 1, heap_reset pool 1
    const Program v2 = tmh::decode(in, sizeof in, tmh::Profile::kPools);
    check(v2.format == 2 && v2.ops.size() == 2 && v2.ops[0].kind == tmh::OpKind::kHeapCreate && v2.ops[0].pool == 1 &&
              v2.ops[1].kind == tmh::OpKind::kHeapReset,
          "v2 header: pool opcodes in the pools profile");
    for (int pr = 0; pr < static_cast<int>(tmh::Profile::kCount); ++pr) {
      const auto profile = static_cast<tmh::Profile>(pr);
      if (profile == tmh::Profile::kPools) continue;
      const Program v1 = tmh::decode(in, sizeof in, profile);
      std::vector<uint8_t> as_v1(in, in + sizeof in);
      as_v1[0] = 0x10;
      const Program ref = tmh::decode(as_v1.data(), as_v1.size(), profile);
      bool same = v1.format == 1 && v1.ops.size() == ref.ops.size();
      for (size_t i = 0; same && i < v1.ops.size(); ++i) same = v1.ops[i].kind == ref.ops[i].kind;
      for (const Op& op : v1.ops) same = same && !tmh::is_pool_op(op.kind);
      check(same, std::string("v2 header decodes as v1 in profile ") + tmh::profile_name(profile));
    }
    std::vector<uint8_t> v1_header(in, in + sizeof in);
    v1_header[0] = 0x10;
    const Program a = tmh::decode(v1_header.data(), v1_header.size(), tmh::Profile::kPools);
    bool no_pool = a.format == 1;
    for (const Op& op : a.ops) no_pool = no_pool && !tmh::is_pool_op(op.kind);
    check(no_pool, "v1 header in the pools profile: no pool ops");
    // The encoder writes a v2 header for pool ops.
    const std::vector<uint8_t> e = tmh::encode(prog({Op::heap_stats(3)}, 5));
    check(e.size() == 3 && e[0] == 0x25 && e[1] == 23 && e[2] == 3, "encoder: v2 header for a pool op");
  }
  // Empty input and a lone header.
  check(tmh::decode(nullptr, 0).ops.empty(), "empty input decodes to no ops");
  const uint8_t h = 0xFF;
  check(tmh::decode(&h, 1).ops.empty(), "header-only input decodes to no ops");
  // Truncated operands read as 0: opcode realloc with nothing after it.
  const uint8_t t[2] = {0x10, 0x02};
  const Program tp = tmh::decode(t, 2);
  check(tp.ops.size() == 1 && tp.ops[0].kind == tmh::OpKind::kRealloc && tp.ops[0].slot == 0 &&
            tp.ops[0].size.static_value() == 0,
        "truncated realloc decodes with zero operands");
}

void test_printer() {
  const Program p =
      prog({Op::realloc(5, SizeExpr::exact(8193)), Op::malloc(3, SizeExpr::cls(55, 2)),
            Op::aligned_alloc(1, 64, SizeExpr::exact(100)), Op::realloc(2, SizeExpr::relative(0, true, 2, 19, true)),
            Op::calloc(4, 0x40 | 32, SizeExpr::pow2(32 % 27))});
  const std::vector<uint8_t> bytes = tmh::encode(p);
  const std::string s = tmh::format_program(tmh::decode(bytes.data(), bytes.size()), tmh::Profile::kGeneral);
  check(s.find("#0 realloc slot 5 -> 8193 bytes\n") != std::string::npos, "printer: realloc line\n" + s);
  check(s.find("#1 malloc slot 3 <- 8191 (class 55 size 8192-1) bytes") != std::string::npos,
        "printer: class line\n" + s);
  check(s.find("#2 aligned_alloc slot 1 <- 100 bytes, align 64") != std::string::npos, "printer: aligned line\n" + s);
  check(s.find("#3 realloc slot 2 -> usable(own slot)/2-256 bytes") != std::string::npos, "printer: relative\n" + s);
  check(s.find("#4 calloc slot 4 <- 4294967296 x 32 (2^5) bytes") != std::string::npos, "printer: calloc\n" + s);
  const Program q =
      prog2({Op::heap_malloc(2, 5, SizeExpr::exact(8193)), Op::heap_calloc(1, 4, 3, SizeExpr::exact(24)),
             Op::heap_realloc(2, 5, SizeExpr::exact(100)), Op::heap_free(3, 6), Op::heap_reset(0), Op::heap_destroy(1),
             Op::heap_stats(2), Op::heap_alloc_range(3, 10, 3, SizeExpr::exact(64)), Op::heap_fill()});
  const std::vector<uint8_t> qb = tmh::encode(q);
  const std::string t =
      tmh::format_program(tmh::decode(qb.data(), qb.size(), tmh::Profile::kPools), tmh::Profile::kPools);
  check(t.find("format v2 (header 0x20), profile heap_pools") != std::string::npos, "printer: v2 header\n" + t);
  check(t.find("#0 heap_malloc pool 2 slot 5 <- 8193 bytes\n") != std::string::npos, "printer: heap_malloc\n" + t);
  check(t.find("#1 heap_calloc pool 1 slot 4 <- 3 x 24 bytes\n") != std::string::npos, "printer: heap_calloc\n" + t);
  check(t.find("#2 heap_realloc pool 2 slot 5 -> 100 bytes\n") != std::string::npos, "printer: heap_realloc\n" + t);
  check(t.find("#3 heap_free pool 3 slot 6\n#4 heap_reset pool 0\n#5 heap_destroy pool 1\n#6 heap_stats pool 2\n") !=
            std::string::npos,
        "printer: heap_free/reset/destroy/stats\n" + t);
  check(t.find("#7 heap_alloc_range pool 3 slots 10,11,12 <- 64 bytes each\n") != std::string::npos,
        "printer: heap_alloc_range\n" + t);
  check(t.find("#8 heap_fill: create pools until the limit\n") != std::string::npos, "printer: heap_fill\n" + t);
}

// Programs that exercise every op on a correct allocator.
std::vector<Program> clean_programs() {
  std::vector<Program> v;
  v.push_back(prog({Op::malloc(0, SizeExpr::exact(100)),
                    Op::calloc(1, 3, SizeExpr::exact(24)),
                    Op::realloc(0, SizeExpr::exact(9000)),
                    Op::realloc(0, SizeExpr::exact(50)),
                    Op::aligned_alloc(2, 4096, SizeExpr::exact(100)),
                    Op::posix_memalign(3, 64, SizeExpr::exact(1000)),
                    Op::usable_size(3),
                    Op::usable_size(9),
                    Op::check_heap(),
                    Op::refill(1),
                    Op::touch_usable(0),
                    Op::peek(0, 7),
                    Op::swap(0, 1),
                    Op::free(0),
                    Op::free(0),
                    Op::release_cached(),
                    Op::oom_window(1, 4),
                    Op::malloc(4, SizeExpr::exact(1 << 20)),
                    Op::malloc(5, SizeExpr::exact(16)),
                    Op::alloc_range(10, 8, SizeExpr::exact(20000)),
                    Op::free_range(10, 8, 2, false),
                    Op::free_range(17, 8, 2, true)}));
  // Impossible and invalid requests.
  std::vector<Op> bad;
  for (unsigned i = 0; i < 16; ++i) {
    bad.push_back(Op::malloc(i, SizeExpr::huge(i)));
    bad.push_back(Op::calloc(i, 0x80 | 3, SizeExpr::exact(5)));  // SIZE_MAX/4 * 5 overflows
    bad.push_back(Op::aligned_alloc(i, 3, SizeExpr::exact(64)));
    bad.push_back(Op::posix_memalign(i, 4, SizeExpr::exact(64)));
    bad.push_back(Op::posix_memalign(i, uint64_t{1} << 40, SizeExpr::exact(64)));
  }
  bad.push_back(Op::malloc(20, SizeExpr::exact(64)));
  bad.push_back(Op::realloc(20, SizeExpr::huge(0)));
  bad.push_back(Op::realloc(20, SizeExpr::exact(0)));
  bad.push_back(Op::realloc(21, SizeExpr::exact(0)));
  bad.push_back(Op::malloc(22, SizeExpr::exact(0)));
  bad.push_back(Op::calloc(23, 0, SizeExpr::exact(10)));
  v.push_back(prog(bad));
  // Every pool op, the pool limit, pool blocks through the v1 ops.
  v.push_back(prog2({Op::heap_create(0),
                     Op::heap_malloc(0, 0, SizeExpr::exact(100)),
                     Op::heap_calloc(1, 1, 3, SizeExpr::exact(24)),
                     Op::heap_realloc(0, 0, SizeExpr::exact(9000)),
                     Op::heap_realloc(0, 1, SizeExpr::exact(10)),  // skipped: slot 1 is pool 1's
                     Op::heap_alloc_range(2, 10, 8, SizeExpr::exact(20000)),
                     Op::realloc(10, SizeExpr::exact(40000)),
                     Op::free(11),
                     Op::heap_free(2, 12),
                     Op::heap_free(2, 40),
                     Op::heap_stats(2),
                     Op::swap(0, 13),
                     Op::touch_usable(13),
                     Op::heap_reset(2),
                     Op::check_heap(),
                     Op::heap_malloc(2, 20, SizeExpr::huge(0)),
                     Op::heap_calloc(2, 21, 0x80 | 3, SizeExpr::exact(5)),
                     Op::heap_fill(),
                     Op::heap_create(3),
                     Op::heap_malloc(3, 22, SizeExpr::exact(5)),
                     Op::heap_unfill(),
                     Op::heap_create(1),
                     Op::heap_malloc(1, 23, SizeExpr::exact(700000)),
                     Op::heap_destroy(0),
                     Op::malloc(24, SizeExpr::exact(64))}));
  // Random canonical programs, every header flag combination.
  for (int i = 0; i < 16; ++i) {
    std::vector<uint8_t> bytes(1 + rnd() % 400);
    for (auto& b : bytes) b = static_cast<uint8_t>(rnd());
    Program p = tmh::decode(bytes.data(), bytes.size());
    // Random ops (re-encoded canonically by the interpreter's decoder), each flag set.
    p.header = static_cast<uint8_t>(tmh::kFormatVersion << 4 | (i & 15));
    v.push_back(p);
  }
  return v;
}

void test_clean(const std::vector<std::string>& corpus_files) {
  auto sys = tmh::make_system_backend();
  auto ref = tmh::make_faulty_backend(0);
  int n = 0;
  for (const Program& p : clean_programs()) {
    for (tmh::Backend* be : {sys.get(), ref.get()}) {
      const tmh::Result r = run_on(*be, p);
      check(r.ok, "clean program " + std::to_string(n) + " fails on backend " + be->name() + ":\n" + r.message);
    }
    ++n;
  }
  size_t files = 0;
  for (const std::string& f : corpus_files) {
    FILE* fp = fopen(f.c_str(), "rb");
    if (!fp) continue;
    std::vector<uint8_t> data;
    int c;
    while ((c = fgetc(fp)) != EOF) data.push_back(static_cast<uint8_t>(c));
    fclose(fp);
    // A corpus directory names its target: heap_pools files decode with the pools profile.
    const tmh::Profile profile =
        f.find("/heap_pools/") != std::string::npos ? tmh::Profile::kPools : tmh::Profile::kGeneral;
    const Program p = tmh::decode(data.data(), data.size(), profile);
    const tmh::Result r = run_on(*ref, p);
    check(r.ok, "corpus file " + f + " fails on the reference (fault-free) backend:\n" + r.message);
    ++files;
  }
  printf("selftest: %d clean programs pass on system and reference backends; %zu corpus files pass on reference\n", n,
         files);
}

struct FaultCase {
  const char* mode;
  Program program;
  const char* expect;  // substring of the report's "what:" line
  const char* clause;  // the contract clause the report names (harness/contract.h)
};

// The clause a report names on its "clause:" line ("" when none).
std::string clause_of(const std::string& report) {
  const size_t a = report.find("\nclause: ");
  if (a == std::string::npos) return "";
  const size_t b = report.find(' ', a + 9);
  return report.substr(a + 9, b - a - 9);
}

// Runs c's program with TM_HARNESS_WAIVE=<its clause>: the run must pass, the clause's
// count of recorded deviations grow, and no other clause's count (a waived deviation is
// recorded, not hidden, and the model stays in step with the allocator afterwards). The
// faulty allocator's own statistics and heap check are waived too: they describe what it
// really did (a block it handed out twice counts once), which the model then differs from.
void check_waived(const FaultCase& c, tmh::Backend& be) {
  using tmh::Clause;
  tmh::Clause clause;
  if (!tmh::clause_from_name(c.clause, &clause)) {
    check(false, std::string("fault ") + c.mode + ": unknown clause " + c.clause);
    return;
  }
  uint64_t before[tmh::kClauseCount];
  for (unsigned i = 0; i < tmh::kClauseCount; ++i) before[i] = tmh::deviation_count(static_cast<tmh::Clause>(i));
  setenv("TM_HARNESS_WAIVE", (std::string(c.clause) + ",stats,heap-check,pools").c_str(), 1);
  const tmh::Result r = run_on(be, c.program);
  unsetenv("TM_HARNESS_WAIVE");
  std::string grown;
  for (unsigned i = 0; i < tmh::kClauseCount; ++i) {
    const auto k = static_cast<tmh::Clause>(i);
    const bool introspection = k == Clause::kStats || k == Clause::kHeapCheck || k == Clause::kPools;
    if (k != clause && !introspection && tmh::deviation_count(k) != before[i]) {
      grown += std::string(" ") + tmh::clause_name(k);
    }
  }
  check(r.ok && tmh::deviation_count(clause) > before[static_cast<unsigned>(clause)] && grown.empty(),
        std::string("fault ") + c.mode + " with " + c.clause + " waived: " +
            (r.ok ? "passes, recorded " +
                        std::to_string(tmh::deviation_count(clause) - before[static_cast<unsigned>(clause)]) +
                        " deviation(s) of it; other clauses recorded:" + (grown.empty() ? " none" : grown)
                  : "fails:\n" + r.message));
}

// Contract profiles: each includes the one before it, and a clause outside the run's profile
// is no deviation (tinymalloc's realloc(p, 0) rule is not glibc's profile).
void test_contract() {
  using tmh::Clause;
  using tmh::ContractProfile;
  check(tmh::profile_includes(ContractProfile::kC11, Clause::kContent), "c11 has content");
  check(!tmh::profile_includes(ContractProfile::kC11, Clause::kErrnoEnomem), "c11 lacks errno-enomem");
  check(tmh::profile_includes(ContractProfile::kPosix, Clause::kErrnoEnomem), "posix has errno-enomem");
  check(!tmh::profile_includes(ContractProfile::kPosix, Clause::kUsableSize), "posix lacks usable-size");
  check(tmh::profile_includes(ContractProfile::kGlibc, Clause::kUsableSize), "glibc has usable-size");
  check(!tmh::profile_includes(ContractProfile::kGlibc, Clause::kReallocZero), "glibc lacks realloc-zero");
  check(tmh::profile_includes(ContractProfile::kTinymalloc, Clause::kPools), "tinymalloc has pools");
  for (unsigned i = 0; i < tmh::kClauseCount; ++i) {
    tmh::Clause c;
    const auto k = static_cast<Clause>(i);
    check(tmh::clause_from_name(tmh::clause_name(k), &c) && c == k, std::string("clause name ") + tmh::clause_name(k));
  }
  setenv("TM_HARNESS_WAIVE", "all,-content", 1);
  const tmh::Contract w = tmh::contract_from_env(ContractProfile::kGlibc);
  unsetenv("TM_HARNESS_WAIVE");
  check(w.is_waived(Clause::kNoOverlap) && !w.is_waived(Clause::kContent) && w.enforced(Clause::kContent) &&
            !w.enforced(Clause::kNoOverlap) && !w.applies(Clause::kPools),
        "TM_HARNESS_WAIVE=all,-content under glibc");
  // zero-null: malloc(0) returns NULL. Under the tinymalloc profile a malloc-zero deviation;
  // under glibc's none (C lets malloc(0) return NULL).
  auto be = tmh::make_backend("faulty:zero-null");
  const Program p = prog({Op::malloc(0, SizeExpr::exact(0))});
  setenv("TM_HARNESS_CONTRACT", "glibc", 1);
  const uint64_t before = tmh::deviation_count(Clause::kMallocZero);
  const tmh::Result r = run_on(*be, p);
  unsetenv("TM_HARNESS_CONTRACT");
  check(r.ok && tmh::deviation_count(Clause::kMallocZero) == before,
        "malloc(0) = NULL is no deviation under the glibc profile:\n" + r.message);
  printf("selftest: contract profiles, waivers and clause names checked\n");
}

void test_faults() {
  const SizeExpr s100 = SizeExpr::exact(100);
  std::vector<FaultCase> cases;
  cases.push_back({"overlap",
                   prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100), Op::malloc(3, s100)}),
                   "overlaps live slot", "no-overlap"});
  cases.push_back({"misaligned", prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100)}),
                   "not aligned to 16", "align-min"});
  cases.push_back({"realloc-copy",
                   prog({Op::malloc(0, s100), Op::realloc(0, SizeExpr::exact(200)),
                         Op::realloc(0, SizeExpr::exact(300)), Op::realloc(0, SizeExpr::exact(400))}),
                   "did not keep the first", "realloc-preserves"});
  cases.push_back({"calloc-dirty", prog({Op::calloc(0, 1, s100), Op::calloc(1, 1, s100), Op::calloc(2, 1, s100)}),
                   "is not zeroed", "calloc-zero"});
  cases.push_back({"usable-short", prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100)}),
                   "usable size 99 < 100", "usable-size"});
  cases.push_back(
      {"stats-leak",
       prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100), Op::free(0), Op::free(1), Op::free(2)}),
       "live_blocks", "stats"});
  cases.push_back({"realloc-fail-clobber", prog({Op::malloc(0, s100), Op::realloc(0, SizeExpr::huge(0))}),
                   "after a failed realloc", "realloc-fail-keeps"});
  cases.push_back({"errno", prog({Op::malloc(0, SizeExpr::huge(1))}), "expected ENOMEM", "errno-enomem"});
  cases.push_back(
      {"huge-succeeds", prog({Op::malloc(0, SizeExpr::huge(0))}), "must fail with ENOMEM", "impossible-fails"});
  cases.push_back({"heap-check", prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::free(0), Op::free(1)}),
                   "heap check failed", "heap-check"});
  cases.push_back({"free-stomps",
                   prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100), Op::malloc(3, s100),
                         Op::malloc(4, s100), Op::free(0), Op::free(1), Op::free(2)}),
                   "content of slot", "content"});
  cases.push_back({"zero-null", prog({Op::malloc(0, SizeExpr::exact(0))}), "returned NULL", "malloc-zero"});
  cases.push_back({"aligned-einval", prog({Op::aligned_alloc(0, 64, s100)}), "must succeed", "sane-success"});
  cases.push_back(
      {"pool-reset-leak",
       prog2({Op::heap_malloc(0, 0, s100), Op::heap_reset(0), Op::heap_malloc(0, 0, s100), Op::heap_reset(0)}),
       "stats after this op: live_blocks", "stats"});
  cases.push_back({"pool-destroy-other",
                   prog2({Op::heap_malloc(0, 0, s100), Op::heap_malloc(1, 1, s100), Op::heap_destroy(0)}),
                   "content of slot 1", "content"});
  cases.push_back({"pool-stats-off",
                   prog2({Op::heap_malloc(0, 0, s100), Op::heap_stats(0), Op::heap_stats(0), Op::heap_stats(0)}),
                   "heap_stats of pool 0", "pools"});
  cases.push_back({"pool-realloc-escape",
                   prog2({Op::heap_malloc(0, 0, s100), Op::heap_realloc(0, 0, SizeExpr::exact(200)),
                          Op::heap_realloc(0, 0, SizeExpr::exact(300))}),
                   "heap_stats of pool 0 after a realloc", "pools"});
  cases.push_back({"pool-free-stale",
                   prog2({Op::heap_alloc_range(1, 0, 4, s100), Op::free(0), Op::free(1), Op::free(2)}),
                   "heap_stats of pool 1 after free()", "pools"});

  check(static_cast<int>(cases.size()) == tmh::faulty_mode_count() - 1, "every fault mode has a case");
  for (const FaultCase& c : cases) {
    auto be = tmh::make_backend(std::string("faulty:") + c.mode);
    if (!be) {
      check(false, std::string("no faulty backend ") + c.mode);
      continue;
    }
    const tmh::Result r = run_on(*be, c.program);
    const std::string w = what_line(r.message);
    const bool ok = !r.ok && w.find(c.expect) != std::string::npos && clause_of(r.message) == c.clause;
    check(ok, std::string("fault ") + c.mode + " not reported as '" + c.expect + "' under clause " + c.clause +
                  "; got: " + (r.ok ? std::string("PASS") : r.message));
    if (ok) printf("selftest: fault %-22s caught at op #%zu (%s): %s\n", c.mode, r.op_index, c.clause, w.c_str());
    // Waived, on a fresh backend (faults count calls). Not the pool faults: a pool that lost
    // track of its blocks makes the next pool op misuse, which the emulation aborts on.
    if (std::string(c.clause) != "pools") check_waived(c, *tmh::make_backend(std::string("faulty:") + c.mode));
  }
  // Poke: peek turns into a corruption the model does not know about (a block patterned
  // entirely, so the peek reads offset 1234 itself).
  auto sys = tmh::make_system_backend();
  const Program poke =
      prog({Op::malloc(0, s100), Op::malloc(1, SizeExpr::exact(12000)), Op::peek(1, 1234), Op::check_heap()});
  const tmh::Result clean = run_on(*sys, poke, false);
  check(clean.ok, "poke program passes without self-test mode:\n" + clean.message);
  const tmh::Result r = run_on(*sys, poke, true);
  const std::string w = what_line(r.message);
  check(!r.ok && w.find("content of slot 1") != std::string::npos && w.find("offset 1234") != std::string::npos,
        "poke not reported: " + r.message);
  if (!r.ok) printf("selftest: poke (system backend) caught at op #%zu: %s\n", r.op_index, w.c_str());
}

void list_files(const std::string& path, std::vector<std::string>& out) {
  DIR* d = opendir(path.c_str());
  if (!d) {
    out.push_back(path);
    return;
  }
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    list_files(path + "/" + e->d_name, out);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) list_files(argv[i], files);
  test_format();
  test_printer();
  test_clean(files);
  test_faults();
  test_contract();
  if (failures) {
    fprintf(stderr, "selftest: %d failure(s)\n", failures);
    return 1;
  }
  printf("selftest: all passed\n");
  return 0;
}
