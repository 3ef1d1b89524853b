"""Mutation points of a C++ source file, from clang's syntax tree (clang -Xclang -ast-dump=json).

Every mutant is one textual replacement of a byte range of the file, derived from a node of
the tree (never from hand-written lists of lines). Operators (see OPERATORS):

  ror      relational operator replacement: < <-> <=, > <-> >=, == <-> !=
  aor      arithmetic / bitwise operator replacement: + <-> -, += <-> -=, & <-> |, &= <-> |=
  lcr      logical connector replacement: && <-> ||
  neg      condition negation: the condition of if / while / do / for / ?: becomes !(cond)
  cbr      constant boundary: an integer literal N becomes (N + 1) and (N - 1)
  shift    a shift by n becomes a shift by (n + 1) and (n - 1)
  align    align_up <-> align_down
  sdl      statement deletion: a statement that stores, updates a counter, a bit, a link or a
           statistic (an assignment, ++/--, or a call of a mutating member such as store,
           fetch_add, set_bit) becomes (void)0
  swap     two adjacent call arguments of the same type swap places
  ret      a returned value becomes a constant: true/false for bool, nullptr for pointers,
           0 (or 1 where it was 0) for integers

Skipped: code outside function bodies (constants, static_asserts), macro bodies (a macro's
argument is mutated where it is spelled), the arguments of reports and check failures
(report_*, fail), sanitizer annotations (poison/unpoison: no code without ASan), the
bodies of report_* functions, the test hooks (tm_test_*, *_for_test:
the harness's instruments) and the planted-bug switches (TM_PLANT_IF). Comments are never mutated: mutants come from tree nodes, not from text.
"""
import hashlib
import json
import re
import subprocess

OPERATORS = ("ror", "aor", "lcr", "neg", "cbr", "shift", "align", "sdl", "swap", "ret")

ROR = {"<": ["<="], "<=": ["<"], ">": [">="], ">=": [">"], "==": ["!="], "!=": ["=="]}
AOR = {"+": ["-"], "-": ["+"], "&": ["|"], "|": ["&"]}
COMPOUND = {"+=": ["-="], "-=": ["+="], "|=": ["&="], "&=": ["|="]}
LCR = {"&&": ["||"], "||": ["&&"]}
# Calls whose arguments are a report or a check's failure message: not mutated.
REPORT_CALLEE = re.compile(r"^(report_\w*|fail|\w*_report|tm_report\w*)$")
# Sanitizer annotations (src/sanitizer.h): no code at all without ASan, so a mutant in one is
# equivalent in the release build the tiers run; the asan preset's AsanPoisoning tests check them.
ANNOTATION_CALLEE = re.compile(r"^(poison\w*|unpoison\w*|__asan_\w+|__msan_\w+|__tsan_\w+)$")
# Member or free functions whose call, as a statement of its own, changes state.
MUTATING_CALLEE = re.compile(
    r"^(store|fetch_add|fetch_sub|fetch_or|fetch_and|fetch_xor|exchange|compare_exchange_\w+|"
    r"set\w*|clear\w*|reset\w*|push\w*|insert\w*|remove\w*|erase\w*|unlink\w*|link\w*|"
    r"add\w*|sub\w*|note\w*|mark\w*|stats_\w*|count\w*|raise\w*|lower\w*|write\w*|"
    r"free_block_\w*|chunk_map_\w*|list_\w*|\w*_unlink|\w*_link|\w*_insert|"
    r"\w*_remove|\w*_push|\w*_set\w*|\w*_clear\w*|\w*_add\w*|\w*_sub\w*|\w*_note\w*|memset|memcpy)$")
INT_TYPES = re.compile(
    r"^(const )?(unsigned |signed )?(char|short|int|long|long long|size_t|ssize_t|ptrdiff_t|"
    r"u?int(8|16|32|64)_t|uintptr_t|intptr_t|unsigned|uint16_t|off_t)$")


class Mutant(dict):
    """One mutant: a JSON-serialisable dict (id, file, line, col, offset, length, original,
    replacement, operator, function, description)."""


def mutant_id(file, offset, length, replacement, operator):
    h = hashlib.sha1(f"{file}\0{offset}\0{length}\0{replacement}\0{operator}".encode()).hexdigest()
    return h[:10]


def dump_ast(clang, args, path, cwd):
    """The translation unit's syntax tree as parsed JSON."""
    cmd = [clang] + list(args) + ["-fsyntax-only", "-Xclang", "-ast-dump=json", path]
    out = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr.decode(errors='replace')[-2000:]}")
    return json.loads(out.stdout)


class _Loc:
    """Tracks the file of clang's JSON locations, which name a file only when it changes."""

    def __init__(self):
        self.file = None

    def read(self, loc):
        """(file, offset, tokLen, kind) of a location; kind: 'plain', 'macroarg' or 'macro'."""
        if not loc:
            return None
        if "spellingLoc" in loc or "expansionLoc" in loc:
            spell = loc.get("spellingLoc", {})
            exp = loc.get("expansionLoc", {})
            sp = self._plain(spell)
            self._plain(exp)
            ep = self._plain(exp)
            kind = "macroarg" if spell.get("isMacroArgExpansion") or exp.get("isMacroArgExpansion") else "macro"
            if not sp:
                return None
            return (sp[0], sp[1], sp[2], kind, ep[1] if ep and ep[0] == sp[0] else None)
        p = self._plain(loc)
        return (p[0], p[1], p[2], "plain", None) if p else None

    def _plain(self, loc):
        if "file" in loc:
            self.file = loc["file"]
        if "offset" not in loc:
            return None
        return (self.file, loc["offset"], loc.get("tokLen", 0))


def is_test_hook(name):
    """Test-only entry points (tinymalloc_test.h: tm_test_*, the *_for_test resets): the
    harness's instruments, not allocator behaviour."""
    return name.startswith("tm_test_") or name.endswith("_for_test")


def _strip_implicit(node):
    while node and node.get("kind") in ("ImplicitCastExpr", "ExprWithCleanups", "MaterializeTemporaryExpr",
                                        "CXXBindTemporaryExpr", "ConstantExpr", "FullExpr"):
        inner = node.get("inner") or []
        if not inner:
            break
        node = inner[0]
    return node


def _callee_name(call):
    """Name of the function a CallExpr / CXXMemberCallExpr calls, or None."""
    inner = call.get("inner") or []
    if not inner:
        return None
    callee = _strip_implicit(inner[0])
    if callee is None:
        return None
    if callee.get("kind") == "MemberExpr":
        return callee.get("name")
    if callee.get("kind") == "DeclRefExpr":
        return (callee.get("referencedDecl") or {}).get("name")
    if callee.get("kind") == "UnresolvedLookupExpr":
        return callee.get("name")
    return None


class _Walker:
    def __init__(self, rel_file, text):
        self.rel = rel_file
        self.text = text
        self.loc = _Loc()
        self.mutants = []
        self.seen = set()

    # ---- ranges -----------------------------------------------------------------------------

    def span(self, node):
        """(begin, end) byte offsets of a node in the mutated file, or None when it is not
        spelled there in full (another file, a macro body)."""
        rng = node.get("_span")
        return rng if rng != "x" else None

    def in_skipped_macro(self, loc):
        """True for the argument of a macro whose arguments are not code under test (the
        planted-bug switch TM_PLANT_IF)."""
        return loc[3] == "macroarg" and loc[4] is not None and self.text.startswith("TM_PLANT_IF", loc[4])

    def text_of(self, sp):
        return self.text[sp[0]:sp[1]]

    # ---- traversal ----------------------------------------------------------------------------

    def walk(self, node, ctx):
        """ctx: (function name or None, inside a report/skip region)."""
        if not isinstance(node, dict):
            return
        b = e = None
        if "loc" in node:
            self.loc.read(node["loc"])
        if "range" in node:
            b = self.loc.read(node["range"].get("begin"))
            e = self.loc.read(node["range"].get("end"))
        if b and e and b[0] == self.rel and e[0] == self.rel and b[3] != "macro" and e[3] != "macro" \
                and e[1] + e[2] >= b[1] and not self.in_skipped_macro(b) and not self.in_skipped_macro(e):
            node["_span"] = (b[1], e[1] + e[2])
        else:
            node["_span"] = "x"
        func, skip = ctx
        kind = node.get("kind")
        if kind in ("FunctionDecl", "CXXMethodDecl", "CXXConstructorDecl", "CXXDestructorDecl") and node.get("inner"):
            name = node.get("name", "?")
            func = name
            if name.startswith("report_") or name.startswith("print_") or is_test_hook(name):
                skip = True
        if kind in ("CallExpr", "CXXMemberCallExpr") and (REPORT_CALLEE.match(_callee_name(node) or "")
                                                          or ANNOTATION_CALLEE.match(_callee_name(node) or "")):
            skip = True
        if kind == "StaticAssertDecl":
            skip = True
        children = node.get("inner") or []
        for c in children:
            self.walk(c, (func, skip))
        if func is not None and not skip and self.span(node):
            self.visit(node, func)

    # ---- mutants ------------------------------------------------------------------------------

    def add(self, begin, end, replacement, operator, func, description):
        original = self.text[begin:end]
        if original == replacement:
            return
        key = (begin, end, replacement)
        if key in self.seen:
            return
        self.seen.add(key)
        line = self.text.count("\n", 0, begin) + 1
        col = begin - (self.text.rfind("\n", 0, begin) + 1) + 1
        self.mutants.append(Mutant(id=mutant_id(self.rel, begin, end - begin, replacement, operator), file=self.rel,
                                   line=line, col=col, offset=begin, length=end - begin, original=original,
                                   replacement=replacement, operator=operator, function=func,
                                   description=description))

    def operator_token(self, node, op):
        """Offsets of the operator token of a binary node, found between its operands."""
        inner = node.get("inner") or []
        if len(inner) < 2:
            return None
        lhs, rhs = self.span(inner[0]), self.span(inner[1])
        if not lhs or not rhs:
            return None
        gap = self.text[lhs[1]:rhs[0]]
        i = gap.find(op)
        if i < 0:
            return None
        # the same characters must not continue the token (e.g. '<' of '<<', '&' of '&&')
        j = i + len(op)
        if j < len(gap) and gap[j] in "<>=&|+-" and not (op.endswith("=") and gap[j] not in "="):
            return None
        if i > 0 and gap[i - 1] in "<>=&|+-!":
            return None
        return (lhs[1] + i, lhs[1] + j)

    def visit(self, node, func):
        kind = node.get("kind")
        sp = self.span(node)
        if kind == "BinaryOperator":
            op = node.get("opcode")
            table = {**ROR, **AOR, **LCR}
            if op in table:
                tok = self.operator_token(node, op)
                if tok:
                    name = "ror" if op in ROR else "lcr" if op in LCR else "aor"
                    for r in table[op]:
                        self.add(tok[0], tok[1], r, name, func, f"{op} -> {r}")
            if op in ("<<", ">>"):
                rhs = self.span((node.get("inner") or [None, None])[1] or {})
                if rhs:
                    t = self.text_of(rhs)
                    self.add(rhs[0], rhs[1], f"({t} + 1)", "shift", func, f"{op} {t} -> {op} ({t} + 1)")
                    self.add(rhs[0], rhs[1], f"({t} - 1)", "shift", func, f"{op} {t} -> {op} ({t} - 1)")
        elif kind == "CompoundAssignOperator":
            op = node.get("opcode")
            if op in COMPOUND:
                tok = self.operator_token(node, op)
                if tok:
                    for r in COMPOUND[op]:
                        self.add(tok[0], tok[1], r, "aor", func, f"{op} -> {r}")
        if kind in ("IfStmt", "WhileStmt", "DoStmt", "ForStmt"):
            # a body that is a single statement (a CompoundStmt's are visited with it)
            cond = self.condition(node)
            for child in node.get("inner") or []:
                if child and child is not cond and child.get("kind") != "CompoundStmt":
                    self.deletion(child, func)
        if kind in ("IfStmt", "WhileStmt", "DoStmt", "ForStmt", "ConditionalOperator"):
            cond = self.condition(node)
            csp = self.span(cond) if cond else None
            if csp:
                t = self.text_of(csp)
                self.add(csp[0], csp[1], f"!({t})", "neg", func, f"condition negated: !({_short(t)})")
        elif kind == "IntegerLiteral":
            t = self.text_of(sp)
            if re.fullmatch(r"[0-9][0-9a-fA-FxXuUlL']*", t):
                self.add(sp[0], sp[1], f"({t} + 1)", "cbr", func, f"{t} -> {t} + 1")
                self.add(sp[0], sp[1], f"({t} - 1)", "cbr", func, f"{t} -> {t} - 1")
        elif kind == "CallExpr" and _callee_name(node) in ("align_up", "align_down"):
            callee = _strip_implicit((node.get("inner") or [None])[0])
            csp = self.span(callee) if callee else None
            if csp and self.text_of(csp) in ("align_up", "align_down"):
                other = "align_down" if self.text_of(csp) == "align_up" else "align_up"
                self.add(csp[0], csp[1], other, "align", func, f"{self.text_of(csp)} -> {other}")
        elif kind == "CompoundStmt":
            for stmt in node.get("inner") or []:
                self.deletion(stmt, func)
        elif kind == "ReturnStmt":
            self.return_constant(node, func)
        if kind in ("CallExpr", "CXXMemberCallExpr"):
            self.swapped_arguments(node, func)

    def condition(self, node):
        kind = node.get("kind")
        inner = [c for c in (node.get("inner") or []) if c]
        if kind == "IfStmt":
            if node.get("hasVar"):
                return None
            i = 1 if node.get("hasInit") else 0
            return inner[i] if len(inner) > i else None
        if kind == "WhileStmt":
            return None if node.get("hasVar") else (inner[0] if inner else None)
        if kind == "DoStmt":
            return inner[1] if len(inner) > 1 else None
        if kind == "ForStmt":
            # children: init, condition variable, cond, inc, body (absent ones are {} in the dump)
            raw = node.get("inner") or []
            if len(raw) >= 3 and raw[2] and raw[2].get("kind"):
                return raw[2]
            return None
        if kind == "ConditionalOperator":
            return inner[0] if inner else None
        return None

    def deletion(self, stmt, func):
        sp = self.span(stmt)
        if not sp:
            return
        node = _strip_implicit(stmt)
        kind = node.get("kind")
        what = None
        if kind == "BinaryOperator" and node.get("opcode") == "=":
            what = "assignment"
        elif kind == "CompoundAssignOperator":
            what = "update"
        elif kind == "UnaryOperator" and node.get("opcode") in ("++", "--"):
            what = "counter update"
        elif kind in ("CallExpr", "CXXMemberCallExpr"):
            name = _callee_name(node) or ""
            if MUTATING_CALLEE.match(name) and not REPORT_CALLEE.match(name):
                what = f"call of {name}"
        if what:
            self.add(sp[0], sp[1], "(void)0", "sdl", func, f"{what} removed: {_short(self.text_of(sp))}")

    def swapped_arguments(self, node, func):
        inner = node.get("inner") or []
        args = inner[1:]
        for a, b in zip(args, args[1:]):
            if not a or not b or a.get("kind") == "CXXDefaultArgExpr" or b.get("kind") == "CXXDefaultArgExpr":
                continue
            ta = (_strip_implicit(a).get("type") or {}).get("qualType")
            tb = (_strip_implicit(b).get("type") or {}).get("qualType")
            sa, sb = self.span(a), self.span(b)
            if not ta or ta != tb or not sa or not sb or sa[1] > sb[0]:
                continue
            xa, xb = self.text_of(sa), self.text_of(sb)
            if xa == xb:
                continue
            sep = self.text[sa[1]:sb[0]]
            self.add(sa[0], sb[1], xb + sep + xa, "swap", func, f"arguments swapped: {_short(xa)}, {_short(xb)}")

    def return_constant(self, node, func):
        inner = node.get("inner") or []
        if not inner:
            return
        value = inner[0]
        sp = self.span(value)
        if not sp:
            return
        core = _strip_implicit(value)
        if core.get("kind") in ("CallExpr", "CXXMemberCallExpr") and REPORT_CALLEE.match(_callee_name(core) or ""):
            return  # a check's failure report
        qt = ((value.get("type") or {}).get("qualType") or "").strip()
        desugared = ((value.get("type") or {}).get("desugaredQualType") or qt).strip()
        t = self.text_of(sp)
        if qt == "bool":
            for c in ("true", "false"):
                if t != c:
                    self.add(sp[0], sp[1], c, "ret", func, f"return {_short(t)} -> return {c}")
        elif qt.endswith("*") or desugared.endswith("*"):
            if t not in ("nullptr", "NULL"):
                self.add(sp[0], sp[1], "nullptr", "ret", func, f"return {_short(t)} -> return nullptr")
        elif INT_TYPES.match(qt) or INT_TYPES.match(desugared):
            c = "1" if t == "0" else "0"
            self.add(sp[0], sp[1], c, "ret", func, f"return {_short(t)} -> return {c}")


def _short(t, n=60):
    t = " ".join(t.split())
    return t if len(t) <= n else t[: n - 3] + "..."


def discover(repo_root, rel_file, clang="clang++-14", args=()):
    """Every mutant of repo_root/rel_file, sorted by offset."""
    path = f"{repo_root}/{rel_file}"
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if not text.isascii():
        # offsets are bytes; the tools read the file as text: keep them equal
        raise RuntimeError(f"{rel_file}: non-ASCII source, offsets would not match")
    tree = dump_ast(clang, args, rel_file, repo_root)
    w = _Walker(rel_file, text)
    w.walk(tree, (None, False))
    return sorted(w.mutants, key=lambda m: (m["offset"], m["length"], m["replacement"]))


def apply(text, mutant):
    """The source text with the mutant applied."""
    b, n = mutant["offset"], mutant["length"]
    if text[b:b + n] != mutant["original"]:
        raise RuntimeError(f"mutant {mutant['id']}: the source at {mutant['file']}:{mutant['line']} changed")
    return text[:b] + mutant["replacement"] + text[b + n:]
