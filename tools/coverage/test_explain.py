#!/usr/bin/env python3
"""Checks how tm-coverage answers for unrun code (ctest coverage.explain): the reasons file's
format, the three answers, text-restricted entries, stale entries, and that the committed
tools/coverage-reasons.txt parses and names only files and functions that exist."""
import os
import re
import sys
import unittest

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, TOOLS)

from coverage import explain  # noqa: E402

SOURCE = """int checked(int* p) {
  if (p == nullptr) {
    return report("null pointer");
  }
  if (*p < 0) {
    return fail(TM_CHECK_STATS, "negative");
  }
  return *p;
}""".split("\n")

REASONS = """# comment
src/demo.cc checked() ~"TM_CHECK_STATS" check-failure: only a corrupted counter reaches it

src/demo.cc never_run() test-hook: called by tools only
src/demo.cc gone() os-failure: stale on purpose
"""


class ParseTest(unittest.TestCase):
    def test_entries_are_read_with_their_parts(self):
        entries = explain.parse_reasons(REASONS)
        self.assertEqual(len(entries), 3)
        first = entries[0]
        self.assertEqual((first["file"], first["function"], first["text"], first["category"]),
                         ("src/demo.cc", "checked()", "TM_CHECK_STATS", "check-failure"))
        self.assertEqual(first["reason"], "only a corrupted counter reaches it")
        self.assertEqual(first["line"], 2)
        self.assertIsNone(entries[1]["text"])

    def test_quotes_and_backslashes_in_the_text_are_escaped(self):
        entry = explain.parse_reasons('src/demo.cc checked() ~"report(\\"null \\\\n\\")" check-failure: x')[0]
        self.assertEqual(entry["text"], 'report("null \\n")')

    def test_a_malformed_line_names_its_number(self):
        for bad in ("src/demo.cc checked check-failure: no parentheses",
                    "src/demo.cc checked() check-failure:",
                    "src/demo.cc checked() Check: capital category",
                    'src/demo.cc checked() ~"unterminated check-failure: x'):
            with self.assertRaisesRegex(explain.ReasonError, r"reasons.txt:2:"):
                explain.parse_reasons("# head\n" + bad + "\n", "reasons.txt")


class ExplainTest(unittest.TestCase):
    def setUp(self):
        self.entries = explain.parse_reasons(REASONS)

    def answer(self, function, lines, unit_count=0):
        return explain.explain({"file": "src/demo.cc", "function": function, "lines": lines}, unit_count,
                               self.entries, SOURCE)

    def test_code_the_unit_tests_run_is_answered_by_them(self):
        self.assertEqual(self.answer("checked()", (2, 4), unit_count=3), ("unit", None))

    def test_a_text_entry_explains_only_regions_holding_its_text(self):
        answer, entry = self.answer("checked()", (5, 7))
        self.assertEqual((answer, entry["category"]), ("reviewed", "check-failure"))
        self.assertEqual(self.answer("checked()", (2, 4)), ("unexplained", None))

    def test_a_function_entry_explains_every_region_and_the_unrun_function(self):
        self.assertEqual(self.answer("never_run()", None)[0], "reviewed")
        self.assertEqual(self.answer("never_run()", (3, 3))[0], "reviewed")

    def test_another_file_or_function_is_not_explained(self):
        self.assertEqual(explain.explain({"file": "src/other.cc", "function": "never_run()", "lines": None}, 0,
                                         self.entries, SOURCE), ("unexplained", None))
        self.assertEqual(self.answer("checked_twice()", (5, 7)), ("unexplained", None))

    def test_entries_that_explained_nothing_are_stale(self):
        used = {self.answer("checked()", (5, 7))[1]["line"], self.answer("never_run()", None)[1]["line"]}
        self.assertEqual([e["function"] for e in explain.unused_entries(self.entries, used)], ["gone()"])


class CommittedReasonsTest(unittest.TestCase):
    def test_the_committed_file_parses_and_names_existing_code(self):
        path = os.path.join(TOOLS, "coverage-reasons.txt")
        with open(path) as f:
            entries = explain.parse_reasons(f.read(), "tools/coverage-reasons.txt")
        self.assertGreater(len(entries), 0)
        for e in entries:
            where = f"tools/coverage-reasons.txt:{e['line']}"
            source = os.path.join(ROOT, e["file"])
            self.assertTrue(os.path.isfile(source), f"{where}: no file {e['file']}")
            with open(source) as f:
                text = f.read()
            name = e["function"][:-2].split("::")[-1]
            self.assertTrue(re.search(r"\b" + re.escape(name) + r"\s*\(", text),
                            f"{where}: {e['function']} not in {e['file']}")
            if e["text"] is not None:
                self.assertTrue(e["text"] in text, f"{where}: text not in {e['file']}")


if __name__ == "__main__":
    unittest.main()
