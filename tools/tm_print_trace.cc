// tm_print_trace [--target T] FILE...
// tm_print_trace --clauses: the contract clauses (harness/contract.h), one per line:
//   name <TAB> source <TAB> profiles that include it (comma-separated) <TAB> summary
// Prints the decoded op trace of each input (harness/FORMAT.md) for the op-program targets
// heap_ops (default), realloc, split_coalesce, aligned and heap_pools (format v2: pool ops).
// The unit targets (size_class, bitmap, fit_index) use their own record formats: run their
// binary with TM_FUZZ_TRACE=1 (tools/tm-repro does) to see their trace.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tm_harness.h"

int main(int argc, char** argv) {
  tmh::Profile profile = tmh::Profile::kGeneral;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--target" || a == "-t") && i + 1 < argc) {
      const std::string t = argv[++i];
      if (!tmh::profile_from_name(t, &profile)) {
        fprintf(stderr,
                "tm_print_trace: '%s' is not an op-program target (heap_ops realloc split_coalesce aligned "
                "heap_pools)\n",
                t.c_str());
        return 2;
      }
    } else if (a.rfind("--target=", 0) == 0) {
      if (!tmh::profile_from_name(a.substr(9), &profile)) {
        fprintf(stderr, "tm_print_trace: '%s' is not an op-program target\n", a.c_str() + 9);
        return 2;
      }
    } else if (a == "--clauses") {
      for (unsigned c = 0; c < tmh::kClauseCount; ++c) {
        const tmh::Clause clause = static_cast<tmh::Clause>(c);
        const tmh::ClauseInfo& ci = tmh::clause_info(clause);
        std::string profiles;
        for (unsigned p = 0; p < static_cast<unsigned>(tmh::ContractProfile::kCount); ++p) {
          const auto cp = static_cast<tmh::ContractProfile>(p);
          if (!tmh::profile_includes(cp, clause)) continue;
          profiles += (profiles.empty() ? "" : ",") + std::string(tmh::contract_profile_name(cp));
        }
        printf("%s\t%s\t%s\t%s\n", ci.name, ci.source, profiles.c_str(), ci.summary);
      }
      return 0;
    } else if (a == "-h" || a == "--help") {
      printf("usage: tm_print_trace [--target heap_ops|realloc|split_coalesce|aligned|heap_pools] FILE...\n");
      return 0;
    } else {
      files.push_back(a);
    }
  }
  if (files.empty()) {
    fprintf(stderr, "usage: tm_print_trace [--target T] FILE...\n");
    return 2;
  }
  int rc = 0;
  for (const std::string& f : files) {
    FILE* fp = fopen(f.c_str(), "rb");
    if (!fp) {
      fprintf(stderr, "tm_print_trace: cannot open %s: %s\n", f.c_str(), strerror(errno));
      rc = 1;
      continue;
    }
    std::vector<uint8_t> data;
    int c;
    while ((c = fgetc(fp)) != EOF) data.push_back(static_cast<uint8_t>(c));
    fclose(fp);
    if (files.size() > 1) printf("== %s\n", f.c_str());
    fputs(tmh::format_program(tmh::decode(data.data(), data.size(), profile), profile).c_str(), stdout);
  }
  return rc;
}
