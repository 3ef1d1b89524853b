// The run-time option API (tm_option_set / tm_option_get) follows the option table, and any
// sequence of in-range settings leaves a working allocator, blocks live across the changes
// included.
//
//   In a forked child, a random sequence of steps: sets and gets by an option's name in any
//   ASCII case, by a name no option has, or by a null name; values at the bounds of the
//   option's range, inside it, or just and far outside it; allocations in every tier (filled
//   with a pattern of their own); frees of a live block, checked first; heap checks; leak
//   reports, which must count exactly the live blocks debug mode recorded. A model
//   holds every option's value: a get must return it, a set in range must return 0 and change
//   it, anything else must return -1 with errno EINVAL and change nothing. Blocks allocated
//   under one setting are freed under another (debug mode on and off, caches on and off,
//   sampling, arenas, pool limits, purge delay 0), and the heap must check clean after every
//   step and at the end, with everything freed (and debug mode's quarantine released).
//
// Reproduce a failure:
//   RC_PARAMS="reproduce=<base64 printed by RapidCheck>" ./tm_prop_options
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <sys/mman.h>
#include <unistd.h>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "options.h"
#include "prop_history.h"
#include "prop_isolate.h"
#include "tinymalloc.h"

namespace {

enum class StepKind { kSet, kGet, kAllocate, kFree, kCheck, kLeakReport };

// Which name a set or get uses.
enum class NameKind { kOption, kUnknown, kEmpty, kNull };

// Which value a set passes.
enum class ValueKind { kMin, kMax, kInside, kBelowMin, kAboveMax, kLongMin, kLongMax };

struct Step {
  StepKind kind = StepKind::kCheck;
  NameKind name = NameKind::kOption;
  size_t option = 0;       // index in the option table (kOption)
  uint32_t case_mask = 0;  // bit i set: character i of the name in upper case
  ValueKind value = ValueKind::kInside;
  uint32_t inside = 0;    // scaled into the range for kInside
  size_t size = 1;        // kAllocate: bytes
  size_t pick = 0;        // kFree: which live block (modulo their count)
  bool null_out = false;  // kGet: a null value pointer
};

struct Case {
  std::vector<Step> steps;
};

const char* kind_name(StepKind k) {
  switch (k) {
    case StepKind::kSet:
      return "set";
    case StepKind::kGet:
      return "get";
    case StepKind::kAllocate:
      return "allocate";
    case StepKind::kFree:
      return "free";
    case StepKind::kCheck:
      return "check";
    case StepKind::kLeakReport:
      return "leak report";
  }
  return "?";
}

// The name a step passes (unused for kNull).
std::string step_name(const Step& s) {
  if (s.name == NameKind::kEmpty) return "";
  std::string name = tmalloc::option_info(s.option)->name;
  if (s.name == NameKind::kUnknown) name += "_x";
  for (size_t i = 0; i < name.size() && i < 32; ++i) {
    if ((s.case_mask >> i) & 1u) name[i] = static_cast<char>(name[i] >= 'a' && name[i] <= 'z' ? name[i] - 32 : name[i]);
  }
  return name;
}

// The value a set step passes for its option.
long step_value(const Step& s) {
  const tmalloc::OptionInfo* o = tmalloc::option_info(s.option);
  switch (s.value) {
    case ValueKind::kMin:
      return o->min_value;
    case ValueKind::kMax:
      return o->max_value;
    case ValueKind::kInside: {
      // Mostly small values: the large ends of wide ranges (a purge delay of an hour) say
      // little more than their bounds.
      const unsigned long span = static_cast<unsigned long>(o->max_value - o->min_value) + 1;
      const unsigned long small = span < 16 ? span : 16;
      return o->min_value + static_cast<long>((s.inside % 4 == 0 ? s.inside / 4 % span : s.inside / 4 % small));
    }
    case ValueKind::kBelowMin:
      return o->min_value - 1;
    case ValueKind::kAboveMax:
      return o->max_value + 1;
    case ValueKind::kLongMin:
      return LONG_MIN;
    case ValueKind::kLongMax:
      return LONG_MAX;
  }
  return 0;
}

void showValue(const Case& c, std::ostream& os) {
  for (size_t i = 0; i < c.steps.size(); ++i) {
    const Step& s = c.steps[i];
    os << "  #" << i << " " << kind_name(s.kind);
    if (s.kind == StepKind::kSet || s.kind == StepKind::kGet) {
      os << " " << (s.name == NameKind::kNull ? "(null)" : "\"" + step_name(s) + "\"");
      if (s.kind == StepKind::kSet) os << " = " << step_value(s);
      if (s.kind == StepKind::kGet && s.null_out) os << " (null value pointer)";
    }
    if (s.kind == StepKind::kAllocate) os << " " << s.size << " bytes";
    if (s.kind == StepKind::kFree) os << " live block " << s.pick;
    os << "\n";
  }
}

rc::Gen<Step> gen_step() {
  return rc::gen::build<Step>(
      rc::gen::set(&Step::kind, rc::gen::weightedElement<StepKind>({{4, StepKind::kSet},
                                                                    {2, StepKind::kGet},
                                                                    {3, StepKind::kAllocate},
                                                                    {2, StepKind::kFree},
                                                                    {1, StepKind::kCheck},
                                                                    {1, StepKind::kLeakReport}})),
      rc::gen::set(
          &Step::name,
          rc::gen::weightedElement<NameKind>(
              {{12, NameKind::kOption}, {1, NameKind::kUnknown}, {1, NameKind::kEmpty}, {1, NameKind::kNull}})),
      rc::gen::set(&Step::option, rc::gen::inRange<size_t>(0, tmalloc::kOptionCount)),
      rc::gen::set(&Step::case_mask, rc::gen::weightedOneOf<uint32_t>(
                                         {{3, rc::gen::just<uint32_t>(0)}, {1, rc::gen::arbitrary<uint32_t>()}})),
      rc::gen::set(&Step::value, rc::gen::weightedElement<ValueKind>({{2, ValueKind::kMin},
                                                                      {2, ValueKind::kMax},
                                                                      {6, ValueKind::kInside},
                                                                      {1, ValueKind::kBelowMin},
                                                                      {1, ValueKind::kAboveMax},
                                                                      {1, ValueKind::kLongMin},
                                                                      {1, ValueKind::kLongMax}})),
      rc::gen::set(&Step::inside, rc::gen::arbitrary<uint32_t>()), rc::gen::set(&Step::size, tmprop::tier_size()),
      rc::gen::set(&Step::pick, rc::gen::arbitrary<size_t>()),
      rc::gen::set(&Step::null_out, rc::gen::weightedElement<bool>({{9, false}, {1, true}})));
}

rc::Gen<Case> gen_case() {
  return rc::gen::build<Case>(rc::gen::set(&Case::steps, tmprop::list_of(40, gen_step(), /*non_empty=*/true)));
}

// A live block, the byte its contents are made of, and whether debug mode recorded it (debug or
// leaks was set when the block was allocated).
struct Live {
  unsigned char* p;
  size_t size;
  unsigned char fill;
  bool recorded;
};

// What tm_leak_report wrote to a memory file, and the blocks it returned.
struct LeakReport {
  size_t returned = 0;
  std::string text;
};

LeakReport leak_report() {
  LeakReport r;
  const int fd = memfd_create("tm_prop_leaks", 0);
  if (fd < 0) return r;
  r.returned = tm_leak_report(fd);
  r.text = tmprop::detail::read_fd(fd);
  ::close(fd);
  return r;
}

// Whether all of a block still holds its fill byte.
bool intact(const Live& b) {
  for (size_t i = 0; i < b.size; ++i) {
    if (b.p[i] != b.fill) return false;
  }
  return true;
}

// The heap check's verdict as a failure message ("" when clean).
std::string heap_verdict(const char* when) {
  tm_check_report_t report;
  if (tm_check_heap_report(&report) == TM_CHECK_OK) return "";
  return std::string("heap check ") + when + ": " + report.message;
}

// The child: runs the steps against the model. "" when everything held, else what did not.
std::string run_case(const Case& c) {
  std::vector<long> model(tmalloc::kOptionCount);
  for (size_t i = 0; i < tmalloc::kOptionCount; ++i) {
    if (tm_option_get(tmalloc::option_info(i)->name, &model[i]) != 0) return "initial get failed";
  }
  std::vector<Live> live;
  unsigned char next_fill = 1;
  for (size_t i = 0; i < c.steps.size(); ++i) {
    const Step& s = c.steps[i];
    const std::string at = "step #" + std::to_string(i) + ": ";
    const std::string name = step_name(s);
    const char* name_arg = s.name == NameKind::kNull ? nullptr : name.c_str();
    const bool known = s.name == NameKind::kOption;
    switch (s.kind) {
      case StepKind::kSet: {
        const long value = step_value(s);
        const tmalloc::OptionInfo* o = tmalloc::option_info(s.option);
        const bool valid = known && value >= o->min_value && value <= o->max_value;
        errno = 0;
        const int rc = tm_option_set(name_arg, value);
        if (valid) {
          if (rc != 0) return at + "a set in range returned " + std::to_string(rc);
          model[s.option] = value;
        } else if (rc != -1 || errno != EINVAL) {
          return at + "a set of an unknown name or a value out of range returned " + std::to_string(rc) + " errno " +
                 std::to_string(errno);
        }
        break;
      }
      case StepKind::kGet: {
        long value = -12345;
        errno = 0;
        const int rc = tm_option_get(name_arg, s.null_out ? nullptr : &value);
        if (known && !s.null_out) {
          if (rc != 0) return at + "a get returned " + std::to_string(rc);
          if (value != model[s.option]) {
            return at + "got " + std::to_string(value) + ", the model holds " + std::to_string(model[s.option]);
          }
        } else if (rc != -1 || errno != EINVAL) {
          return at + "a get of an unknown name or into a null pointer returned " + std::to_string(rc) + " errno " +
                 std::to_string(errno);
        }
        break;
      }
      case StepKind::kAllocate: {
        auto* p = static_cast<unsigned char*>(tm_malloc(s.size));
        if (p == nullptr) return at + "malloc(" + std::to_string(s.size) + ") failed";
        const unsigned char fill = next_fill++;
        if (next_fill == 0) next_fill = 1;
        std::memset(p, fill, s.size);
        // Debug mode records blocks while debug or leaks is set (the leak report needs them).
        const size_t debug_index = tmalloc::option_index("debug", 5);
        const size_t leaks_index = tmalloc::option_index("leaks", 5);
        live.push_back({p, s.size, fill, model[debug_index] != 0 || model[leaks_index] != 0});
        break;
      }
      case StepKind::kFree: {
        if (live.empty()) break;
        const size_t k = s.pick % live.size();
        if (!intact(live[k])) return at + "a live block's contents changed";
        tm_free(live[k].p);
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
        break;
      }
      case StepKind::kCheck:
        for (const Live& b : live) {
          if (!intact(b)) return at + "a live block's contents changed";
        }
        break;
      case StepKind::kLeakReport: {
        // Every live block debug mode recorded, whatever the mode is now; nothing else.
        size_t blocks = 0;
        size_t bytes = 0;
        for (const Live& b : live) {
          blocks += b.recorded ? 1 : 0;
          bytes += b.recorded ? b.size : 0;
        }
        const LeakReport r = leak_report();
        if (r.returned != blocks) {
          return at + "tm_leak_report returned " + std::to_string(r.returned) + ", " + std::to_string(blocks) +
                 " live blocks were allocated in debug mode\n" + r.text;
        }
        const std::string head =
            "tinymalloc: leak report: " + std::to_string(blocks) + " blocks, " + std::to_string(bytes) + " bytes in ";
        if (r.text.rfind(head, 0) != 0) return at + "the leak report does not start with \"" + head + "\":\n" + r.text;
        const size_t report_index = tmalloc::option_index("report", 6);
        const std::string json = "{\"tinymalloc\":\"leaks\",\"blocks\":" + std::to_string(blocks) +
                                 ",\"bytes\":" + std::to_string(bytes) + ",";
        if ((r.text.find(json) != std::string::npos) != (model[report_index] == 1)) {
          return at + "the leak report's JSON summary is there with report=text or missing with report=json:\n" +
                 r.text;
        }
        break;
      }
    }
    const std::string verdict = heap_verdict(("after " + at).c_str());
    if (!verdict.empty()) return verdict;
  }
  for (const Live& b : live) {
    if (!intact(b)) return "at the end: a live block's contents changed";
    tm_free(b.p);
  }
  // Debug mode's quarantine holds freed blocks (live in the statistics) until it lets them go.
  tm_release_cached();
  std::string verdict = heap_verdict("at the end");
  if (!verdict.empty()) return verdict;
  tm_stats_t stats;
  tm_stats(&stats);
  if (stats.live_blocks != 0) return "at the end: " + std::to_string(stats.live_blocks) + " blocks still live";
  return "";
}

RC_GTEST_PROP(Options, SetAndGetFollowTheTableAndAnySettingsLeaveAWorkingHeap, ()) {
  const Case c = *gen_case();
  const tmprop::ChildOutcome o = tmprop::run_in_child([&] { return run_case(c); });
  RC_LOG() << "child: " << o.status << "\n" << o.stderr_tail;
  RC_ASSERT(o.returned);
  RC_ASSERT(o.result == "");
}

}  // namespace
