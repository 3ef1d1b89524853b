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
      // Canonical programs decode identically in every profile.
      const Program g = tmh::decode(e1.data(), e1.size(), tmh::Profile::kGeneral);
      if (tmh::encode(g) != e1) {
        check(false, "a canonical encoding decodes differently in the general profile");
        return;
      }
      (void)tmh::format_program(p, profile);
    }
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
    const Program p = tmh::decode(data.data(), data.size());
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
};

void test_faults() {
  const SizeExpr s100 = SizeExpr::exact(100);
  std::vector<FaultCase> cases;
  cases.push_back({"overlap",
                   prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100), Op::malloc(3, s100)}),
                   "overlaps live slot"});
  cases.push_back(
      {"misaligned", prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100)}), "not aligned to 16"});
  cases.push_back({"realloc-copy",
                   prog({Op::malloc(0, s100), Op::realloc(0, SizeExpr::exact(200)),
                         Op::realloc(0, SizeExpr::exact(300)), Op::realloc(0, SizeExpr::exact(400))}),
                   "did not keep the first"});
  cases.push_back({"calloc-dirty", prog({Op::calloc(0, 1, s100), Op::calloc(1, 1, s100), Op::calloc(2, 1, s100)}),
                   "is not zeroed"});
  cases.push_back(
      {"usable-short", prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100)}), "usable size 99 < 100"});
  cases.push_back(
      {"stats-leak",
       prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100), Op::free(0), Op::free(1), Op::free(2)}),
       "live_blocks"});
  cases.push_back({"realloc-fail-clobber", prog({Op::malloc(0, s100), Op::realloc(0, SizeExpr::huge(0))}),
                   "after a failed realloc"});
  cases.push_back({"errno", prog({Op::malloc(0, SizeExpr::huge(1))}), "expected ENOMEM"});
  cases.push_back({"huge-succeeds", prog({Op::malloc(0, SizeExpr::huge(0))}), "must fail with ENOMEM"});
  cases.push_back(
      {"heap-check", prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::free(0), Op::free(1)}), "heap check failed"});
  cases.push_back({"free-stomps",
                   prog({Op::malloc(0, s100), Op::malloc(1, s100), Op::malloc(2, s100), Op::malloc(3, s100),
                         Op::malloc(4, s100), Op::free(0), Op::free(1), Op::free(2)}),
                   "content of slot"});
  cases.push_back({"zero-null", prog({Op::malloc(0, SizeExpr::exact(0))}), "returned NULL"});
  cases.push_back({"aligned-einval", prog({Op::aligned_alloc(0, 64, s100)}), "must succeed"});

  check(static_cast<int>(cases.size()) == tmh::faulty_mode_count() - 1, "every fault mode has a case");
  for (const FaultCase& c : cases) {
    auto be = tmh::make_backend(std::string("faulty:") + c.mode);
    if (!be) {
      check(false, std::string("no faulty backend ") + c.mode);
      continue;
    }
    const tmh::Result r = run_on(*be, c.program);
    const std::string w = what_line(r.message);
    const bool ok = !r.ok && w.find(c.expect) != std::string::npos;
    check(ok, std::string("fault ") + c.mode + " not reported as '" + c.expect +
                  "'; got: " + (r.ok ? std::string("PASS") : r.message));
    if (ok) printf("selftest: fault %-22s caught at op #%zu: %s\n", c.mode, r.op_index, w.c_str());
  }
  // Poke: peek turns into a corruption the model does not know about.
  auto sys = tmh::make_system_backend();
  const Program poke =
      prog({Op::malloc(0, s100), Op::malloc(1, SizeExpr::exact(20000)), Op::peek(1, 1234), Op::check_heap()});
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
  if (failures) {
    fprintf(stderr, "selftest: %d failure(s)\n", failures);
    return 1;
  }
  printf("selftest: all passed\n");
  return 0;
}
