"""Why each piece of src/ that the properties and corpus replays leave unrun stays unrun.

tools/tm-coverage measures what `ctest -L 'property|corpus'` runs. Every code region of src/ it
leaves unrun gets one of three answers here:

  unit         the unit tests run it (a second profile from `ctest -L unit`): a death test of a
               corruption the harness cannot reach through the API, a test hook, an OS failure
               the tests simulate, ...
  reviewed     tools/coverage-reasons.txt gives the reason no test of this tree runs it (e.g. a
               system call failure no test can provoke, or a path that ends in _exit, which
               writes no profile)
  unexplained  neither: a gap to close with a seed, a property or a test, or to review

The reasons file, one entry per line (blank lines and lines starting with # are ignored):

  <file> <function>() [~"<text>"] <category>: <reason>

An entry names a function as tm-coverage prints it (no namespaces or parameters). With ~"text"
it explains only the regions whose source lines contain that text (write a quote in it as \" and a
backslash as \\); without, every region of the
function (and the function itself when it never runs). Regions are found by the text of their
lines, not line numbers, so edits elsewhere in the file keep an entry's meaning.
"""
import re

ENTRY = re.compile(r'^(?P<file>\S+)\s+(?P<function>\S+\(\))\s+(?:~"(?P<text>(?:[^"\\]|\\.)+)"\s+)?'
                   r'(?P<category>[a-z][a-z0-9-]*):\s*(?P<reason>\S.*)$')


class ReasonError(ValueError):
    """A line of the reasons file that does not parse."""


def parse_reasons(text, name="coverage-reasons.txt"):
    """The entries of a reasons file: dicts with file, function, text (or None), category,
    reason and line. Raises ReasonError for a malformed line."""
    entries = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = ENTRY.match(line)
        if not m:
            raise ReasonError(f"{name}:{number}: expected '<file> <function>() [~\"text\"] <category>: <reason>'")
        entry = {**m.groupdict(), "line": number}
        if entry["text"] is not None:
            entry["text"] = re.sub(r"\\(.)", r"\1", entry["text"])  # \" is a quote, \\ a backslash
        entries.append(entry)
    return entries


def region_text(source_lines, start, end):
    """The source text of lines start..end (1-based, inclusive)."""
    return "\n".join(source_lines[start - 1:end])


def explain(region, unit_count, entries, source_lines):
    """How one unrun region is answered: ('unit', None), ('reviewed', entry) or
    ('unexplained', None). `region` holds file, function and lines (start, end), or lines None
    for a function that never ran; `unit_count` is its execution count under the unit tests."""
    if unit_count > 0:
        return "unit", None
    text = region_text(source_lines, *region["lines"]) if region["lines"] else None
    for e in entries:
        if e["file"] != region["file"] or e["function"] != region["function"]:
            continue
        if e["text"] is None:
            return "reviewed", e
        if text is not None and e["text"] in text:
            return "reviewed", e
    return "unexplained", None


def unused_entries(entries, used):
    """Entries that explained nothing in this run (stale: the code moved or is now covered)."""
    return [e for e in entries if e["line"] not in used]
