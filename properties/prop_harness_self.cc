// Self-check of the harness model: its checks can fail.
//
// The harness ships a deliberately faulty reference allocator, backend "faulty:<mode>"
// (mode 0 "none" is correct; every other mode injects one bug, firing on the third qualifying
// call). These properties prove that the Interpreter (the shadow heap that the fuzz targets,
// the heap state machine and the tools all rely on) detects every mode:
//   * a fixed targeted program per mode is rejected on faulty:<mode> and accepted on
//     faulty:none (so the detection is due to the fault, not to the program);
//   * random programs (same op mix as the fuzzers, plus the v2 memory-pool ops, which the
//     faulty backend emulates) are always accepted on faulty:none, and within a budget of
//     generated programs every mode is detected.
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_harness_self --gtest_filter=HarnessSelfCheck.<Name>
//   RC_PARAMS="seed=<seed>" ./tm_prop_harness_self   (seed from "Using configuration: seed=...")
//   TM_PROP_NO_FORK=1 runs every program in-process (for gdb).
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "prop_common.h"
#include "prop_isolate.h"
#include "tm_harness.h"

namespace {

using tmh::Op;
using tmh::SizeExpr;

tmh::Program program_of(std::vector<Op> ops) {
  tmh::Program p;
  p.ops = std::move(ops);
  return p;
}

// Targeted program per fault mode (keyed by faulty_mode_name).
std::map<std::string, tmh::Program> targeted_programs() {
  const SizeExpr s64 = SizeExpr::exact(64), s100 = SizeExpr::exact(100);
  std::map<std::string, tmh::Program> m;
  m["overlap"] = program_of({Op::malloc(0, s64), Op::malloc(1, s64), Op::malloc(2, s64), Op::malloc(3, s64),
                             Op::malloc(4, s64), Op::check_heap()});
  m["misaligned"] = program_of({Op::malloc(0, s64), Op::malloc(1, s64), Op::malloc(2, s64), Op::malloc(3, s64)});
  m["realloc-copy"] =
      program_of({Op::malloc(0, s100), Op::realloc(0, SizeExpr::exact(200)), Op::realloc(0, SizeExpr::exact(300)),
                  Op::realloc(0, SizeExpr::exact(400)), Op::realloc(0, SizeExpr::exact(500))});
  m["calloc-dirty"] =
      program_of({Op::calloc(0, 1, s100), Op::calloc(1, 1, s100), Op::calloc(2, 1, s100), Op::calloc(3, 1, s100)});
  m["usable-short"] = program_of({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100), Op::malloc(3, s100),
                                  Op::usable_size(2), Op::usable_size(3)});
  m["stats-leak"] = program_of(
      {Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100), Op::free(0), Op::free(1), Op::free(2)});
  m["realloc-fail-clobber"] = program_of({Op::malloc(0, s100), Op::realloc(0, SizeExpr::huge(0)),
                                          Op::realloc(0, SizeExpr::huge(1)), Op::realloc(0, SizeExpr::huge(2))});
  m["errno"] = program_of({Op::malloc(0, SizeExpr::huge(0)), Op::malloc(1, SizeExpr::huge(1))});
  m["huge-succeeds"] = program_of({Op::malloc(0, SizeExpr::huge(0)), Op::malloc(1, SizeExpr::huge(1))});
  m["heap-check"] = program_of({Op::malloc(0, s64), Op::check_heap(), Op::check_heap(), Op::check_heap()});
  m["free-stomps"] = program_of({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100), Op::malloc(3, s100),
                                 Op::malloc(4, s100), Op::free(0), Op::free(1), Op::free(2), Op::check_heap()});
  m["zero-null"] = program_of({Op::malloc(0, SizeExpr::exact(0))});
  m["aligned-einval"] = program_of({Op::aligned_alloc(0, 64, s100), Op::aligned_alloc(1, 4096, SizeExpr::exact(5000))});
  // Memory pools (v2 pool ops; the faulty backend emulates the pools).
  m["pool-reset-leak"] = program_of({Op::heap_malloc(0, 0, s100), Op::heap_reset(0), Op::heap_malloc(0, 0, s100),
                                     Op::heap_malloc(0, 1, s64), Op::heap_reset(0), Op::heap_stats(0)});
  m["pool-destroy-other"] = program_of({Op::heap_malloc(0, 0, s100), Op::heap_malloc(1, 1, s100),
                                        Op::heap_malloc(1, 2, s64), Op::heap_destroy(0), Op::check_heap()});
  m["pool-stats-off"] = program_of(
      {Op::heap_malloc(0, 0, s100), Op::heap_stats(0), Op::heap_stats(0), Op::heap_stats(0), Op::heap_stats(0)});
  m["pool-realloc-escape"] = program_of({Op::heap_malloc(0, 0, s100), Op::heap_realloc(0, 0, SizeExpr::exact(200)),
                                         Op::heap_realloc(0, 0, SizeExpr::exact(300)),
                                         Op::heap_realloc(0, 0, SizeExpr::exact(400)), Op::heap_reset(0)});
  m["pool-free-stale"] =
      program_of({Op::heap_malloc(1, 0, s100), Op::heap_malloc(1, 1, s100), Op::heap_malloc(1, 2, s100), Op::free(0),
                  Op::free(1), Op::free(2), Op::heap_stats(1)});
  return m;
}

// Every targeted program together: a generic program for a mode this file does not know yet.
tmh::Program union_program() {
  tmh::Program all;
  for (auto& [name, p] : targeted_programs()) all.ops.insert(all.ops.end(), p.ops.begin(), p.ops.end());
  return all;
}

std::string faulty(int mode) { return "faulty:" + std::to_string(mode); }

TEST(HarnessSelfCheck, EveryFaultModeIsCaughtByItsTargetedProgram) {
  const int modes = tmh::faulty_mode_count();
  ASSERT_GE(modes, 2) << "the harness has no fault modes";
  ASSERT_STREQ(tmh::faulty_mode_name(0), "none");
  const auto programs = targeted_programs();
  for (int mode = 1; mode < modes; ++mode) {
    const std::string name = tmh::faulty_mode_name(mode);
    auto it = programs.find(name);
    const tmh::Program p = it != programs.end() ? it->second : union_program();
    if (it == programs.end()) ADD_FAILURE() << "no targeted program for new fault mode '" << name << "' (using all)";
    const tmprop::RunOutcome clean = tmprop::run_program_isolated(faulty(0), p);
    EXPECT_TRUE(clean.ok) << "mode " << name << ": the targeted program fails on the correct faulty:none backend:\n"
                          << clean.message << tmh::format_program(p, tmh::Profile::kGeneral);
    const tmprop::RunOutcome bad = tmprop::run_program_isolated(faulty(mode), p);
    EXPECT_FALSE(bad.ok) << "fault mode " << mode << " (" << name << ") was NOT detected by the Interpreter on:\n"
                         << tmh::format_program(p, tmh::Profile::kGeneral);
    EXPECT_FALSE(bad.crashed) << "mode " << name << ": the run crashed instead of reporting:\n" << bad.message;
  }
}

// ---- Generated programs --------------------------------------------------------------------

constexpr unsigned kSelfSlots = 8;

rc::Gen<SizeExpr> self_size() {
  return rc::gen::weightedOneOf<SizeExpr>({
      {6, rc::gen::map(tmprop::request_size(size_t{1} << 18), [](size_t n) { return SizeExpr::exact(n); })},
      {1, rc::gen::just(SizeExpr::exact(0))},
      {1, rc::gen::map(rc::gen::inRange<unsigned>(0, 16), [](unsigned i) { return SizeExpr::huge(i); })},
  });
}

rc::Gen<Op> self_op() {
  const auto slot = rc::gen::inRange<unsigned>(0, kSelfSlots);
  const auto pool = rc::gen::inRange<unsigned>(0, 2);
  return rc::gen::weightedOneOf<Op>({
      {6, rc::gen::apply([](unsigned s, SizeExpr n) { return Op::malloc(s, n); }, slot, self_size())},
      {2, rc::gen::apply([](unsigned s, uint8_t c, SizeExpr n) { return Op::calloc(s, c, n); }, slot,
                         rc::gen::inRange<uint8_t>(0, 5), self_size())},
      {4, rc::gen::apply([](unsigned s, SizeExpr n) { return Op::realloc(s, n); }, slot, self_size())},
      {4, rc::gen::map(slot, [](unsigned s) { return Op::free(s); })},
      {2, rc::gen::apply([](unsigned s, unsigned k, SizeExpr n) { return Op::aligned_alloc(s, uint64_t{1} << k, n); },
                         slot, rc::gen::inRange<unsigned>(0, 14), self_size())},
      {1, rc::gen::apply([](unsigned s, unsigned k, SizeExpr n) { return Op::posix_memalign(s, uint64_t{1} << k, n); },
                         slot, rc::gen::inRange<unsigned>(3, 14), self_size())},
      {2, rc::gen::map(slot, [](unsigned s) { return Op::usable_size(s); })},
      {1, rc::gen::just(Op::check_heap())},
      // Memory pools (two pool slots: blocks meet their own pool often).
      {6, rc::gen::apply([](unsigned p, unsigned s, SizeExpr n) { return Op::heap_malloc(p, s, n); }, pool, slot,
                         self_size())},
      {3, rc::gen::apply([](unsigned p, unsigned s, SizeExpr n) { return Op::heap_realloc(p, s, n); }, pool, slot,
                         self_size())},
      {1, rc::gen::apply([](unsigned p, unsigned s) { return Op::heap_free(p, s); }, pool, slot)},
      {2, rc::gen::map(pool, [](unsigned p) { return Op::heap_reset(p); })},
      {1, rc::gen::map(pool, [](unsigned p) { return Op::heap_destroy(p); })},
      {1, rc::gen::map(pool, [](unsigned p) { return Op::heap_stats(p); })},
      {1, rc::gen::map(pool, [](unsigned p) { return Op::heap_create(p); })},
  });
}

rc::Gen<tmh::Program> self_program() {
  return rc::gen::mapcat(rc::gen::inRange<size_t>(8, 61), [](size_t length) {
    return rc::gen::map(rc::gen::container<std::vector<Op>>(length, self_op()),
                        [](std::vector<Op> ops) { return program_of(std::move(ops)); });
  });
}

}  // namespace

namespace tmh {
// Printing of generated programs in counterexamples.
inline void showValue(const Program& p, std::ostream& os) { os << "\n" << format_program(p, Profile::kGeneral); }
}  // namespace tmh

namespace {

// The Interpreter accepts every generated program on the correct reference allocator: the
// model has no false positives on this op mix.
RC_GTEST_PROP(HarnessSelfCheck, CorrectReferenceAcceptsGeneratedPrograms, ()) {
  const tmh::Program p = *self_program();
  const tmprop::RunOutcome r = tmprop::run_program_isolated(faulty(0), p);
  if (!r.ok) RC_FAIL("faulty:none (a correct allocator) was rejected:\n" + r.message);
}

// Programs per search. A passing search stops early: over 1,000 seeds 41% caught every mode
// within 10 programs, but the hardest mode (most often pool-realloc-escape, calloc-dirty or
// realloc-copy) has a long tail. With a budget of 100, 1 of about 3,100 seeds we ran missed a
// mode (seed 23645828478379: pool-realloc-escape needs more than 100 programs), so a run of
// 100 seeds failed about 3% of the time with nothing wrong in the harness; 3,000 seeds pass
// with 400.
constexpr int kSearchBudget = 400;

// For each fault mode, the index of the first of up to kSearchBudget programs generated from
// `seed` that exposed it (-1: none; entry 0, faulty:none, stays -1). The whole search runs in
// one forked child (the faulty arena leaks on purpose when a run fails); `error` is set when
// it crashed.
std::vector<int> search_fault_modes(uint64_t seed, std::string* error) {
  const int modes = tmh::faulty_mode_count();
  const tmprop::ChildOutcome c = tmprop::run_in_child([&]() {
    rc::Random random(seed);
    std::vector<int> caught_by(static_cast<size_t>(modes), -1);
    int remaining = modes - 1;
    const auto gen = self_program();
    for (int used = 0; used < kSearchBudget && remaining > 0; ++used) {
      const tmh::Program p = gen(random.split(), rc::kNominalSize).value();
      for (int mode = 1; mode < modes; ++mode) {
        if (caught_by[static_cast<size_t>(mode)] >= 0) continue;
        if (!tmprop::run_program_here(faulty(mode), p).ok) {
          caught_by[static_cast<size_t>(mode)] = used;
          --remaining;
        }
      }
    }
    std::string out;
    for (int v : caught_by) out += std::to_string(v) + " ";
    return out;
  });
  std::vector<int> caught_by;
  if (!c.returned) {
    *error = "the search crashed (" + c.status + "); stderr:\n" + c.stderr_tail;
    return caught_by;
  }
  size_t pos = 0;
  while (pos < c.result.size()) {
    const size_t next = c.result.find(' ', pos);
    caught_by.push_back(std::stoi(c.result.substr(pos, next - pos)));
    pos = next + 1;
  }
  return caught_by;
}

// The seed that once exhausted a budget of 100 programs: every mode is still found within
// the budget (a regression test for the flaky self-check).
TEST(HarnessSelfCheck, SlowSeedFindsEveryFaultModeWithinTheBudget) {
  std::string error;
  const std::vector<int> caught_by = search_fault_modes(23645828478379u, &error);
  ASSERT_TRUE(error.empty()) << error;
  ASSERT_EQ(caught_by.size(), static_cast<size_t>(tmh::faulty_mode_count()));
  for (int mode = 1; mode < tmh::faulty_mode_count(); ++mode) {
    EXPECT_GE(caught_by[static_cast<size_t>(mode)], 0) << tmh::faulty_mode_name(mode) << " not found";
  }
}

// Within a budget of generated programs, every fault mode is detected at least once. The
// search is driven by one generated seed (the programs are drawn from it deterministically),
// so a counterexample is that seed: shrinking a search that found nothing has no meaning.
RC_GTEST_PROP(HarnessSelfCheck, GeneratedProgramsExposeEveryFaultMode, ()) {
  const uint64_t seed = *rc::gen::arbitrary<uint64_t>();
  const int modes = tmh::faulty_mode_count();
  std::string error;
  const std::vector<int> caught_by = search_fault_modes(seed, &error);
  if (!error.empty()) RC_FAIL(error);
  RC_ASSERT(caught_by.size() == static_cast<size_t>(modes));
  std::string missed;
  int used = 0, last = 1;
  for (int mode = 1; mode < modes; ++mode) {
    const int at = caught_by[static_cast<size_t>(mode)];
    if (at < 0) missed += std::string(" ") + tmh::faulty_mode_name(mode);
    if (at > caught_by[static_cast<size_t>(last)]) last = mode;
    used = std::max(used, at + 1);
  }
  if (missed.empty()) RC_CLASSIFY(used > 3, std::string("the hardest mode was ") + tmh::faulty_mode_name(last));
  RC_CLASSIFY(missed.empty() && used <= 3, "every mode caught within 3 programs");
  RC_CLASSIFY(missed.empty() && used > 3 && used <= 10, "every mode caught within 10 programs");
  RC_CLASSIFY(missed.empty() && used > 10, "needed more than 10 programs");
  if (!missed.empty()) {
    RC_FAIL("fault modes not detected by " + std::to_string(kSearchBudget) + " programs generated from seed " +
            std::to_string(seed) + ":" + missed);
  }
}

}  // namespace
