"""tm-mutate's reports: report.json (every mutant with its result), report.md (score per file
and per function, every surviving mutant as a diff with its location) and html/ (the mutated
files of src/ with each line's mutants, survivors highlighted)."""
import html
import json
import os
from collections import defaultdict

DETECTED = ("killed", "timeout")


def score(counts):
    """Mutation score: detected / (detected + survived); equivalents and mutants that did not
    compile are not in it. None when nothing counts."""
    detected = sum(counts.get(s, 0) for s in DETECTED)
    total = detected + counts.get("survived", 0)
    return None if total == 0 else detected / total


def fmt_score(s):
    return "-" if s is None else f"{100 * s:.1f}%"


def diff_of(m, text):
    """A diff of one mutant: the source lines it changes, before and after."""
    b, e = m["offset"], m["offset"] + m["length"]
    ls = text.rfind("\n", 0, b) + 1
    le = text.find("\n", e)
    le = len(text) if le < 0 else le
    before = text[ls:le]
    after = text[ls:b] + m["replacement"] + text[e:le]
    return (f"--- {m['file']}:{m['line']}\n" + "\n".join("-" + x for x in before.split("\n")) + "\n" +
            "\n".join("+" + x for x in after.split("\n")))


def classify(mutants, results, equivalent):
    """Result status of each mutant: its test result, 'equivalent' when listed, or 'pending'."""
    out = {}
    for m in mutants:
        r = results.get(m["id"])
        if m["id"] in equivalent:
            out[m["id"]] = "equivalent"
        elif r is None:
            out[m["id"]] = "pending"
        else:
            out[m["id"]] = r["status"]
    return out


def write(out_dir, root, mutants, results, equivalent, meta):
    """Writes report.json, report.md and html/; returns the overall score (or None)."""
    status = classify(mutants, results, equivalent)
    per_file = defaultdict(lambda: defaultdict(int))
    per_func = defaultdict(lambda: defaultdict(int))
    per_op = defaultdict(lambda: defaultdict(int))
    totals = defaultdict(int)
    for m in mutants:
        s = status[m["id"]]
        per_file[m["file"]][s] += 1
        per_func[(m["file"], m["function"])][s] += 1
        per_op[m["operator"]][s] += 1
        totals[s] += 1
    texts = {}
    for f in per_file:
        with open(os.path.join(root, f)) as fh:
            texts[f] = fh.read()
    overall = score(totals)

    # ---- JSON ----
    doc = {
        "meta": meta,
        "totals": dict(totals),
        "score": overall,
        "files": {f: {"counts": dict(c), "score": score(c)} for f, c in sorted(per_file.items())},
        "functions": [{"file": f, "function": fn, "counts": dict(c), "score": score(c)}
                      for (f, fn), c in sorted(per_func.items())],
        "mutants": [dict(m, status=status[m["id"]], result=results.get(m["id"]),
                         equivalent_reason=equivalent.get(m["id"])) for m in mutants],
    }
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(doc, f, indent=1)

    # ---- Markdown ----
    cols = ["killed", "timeout", "survived", "equivalent", "identical", "release-identical", "did-not-compile",
            "pending"]
    md = [f"# Mutation testing report (tm-mutate)\n",
          f"{meta.get('summary', '')}\n",
          f"**Mutation score: {fmt_score(overall)}** (killed + timeout over killed + timeout + survived; "
          f"{totals.get('equivalent', 0)} listed as equivalent, {totals.get('identical', 0)} compiled to the "
          f"unmutated code (release and ASan), {totals.get('release-identical', 0)} to the unmutated release code "
          f"(not run under ASan) and {totals.get('did-not-compile', 0)} non-compiling "
          f"mutants are not counted; {totals.get('pending', 0)} not run).\n",
          "## Per file\n", "| file | mutants | " + " | ".join(cols) + " | score |",
          "|---|---:|" + "---:|" * len(cols) + "---:|"]
    for f, c in sorted(per_file.items()):
        md.append(f"| {f} | {sum(c.values())} | " + " | ".join(str(c.get(k, 0)) for k in cols) +
                  f" | {fmt_score(score(c))} |")
    md += ["", "## Per operator\n", "| operator | mutants | " + " | ".join(cols) + " | score |",
           "|---|---:|" + "---:|" * len(cols) + "---:|"]
    for op, c in sorted(per_op.items()):
        md.append(f"| {op} | {sum(c.values())} | " + " | ".join(str(c.get(k, 0)) for k in cols) +
                  f" | {fmt_score(score(c))} |")
    md += ["", "## Per function (functions with a mutant that ran)\n",
           "| file | function | run | killed | survived | score |", "|---|---|---:|---:|---:|---:|"]
    for (f, fn), c in sorted(per_func.items()):
        run_count = sum(c.get(k, 0) for k in ("killed", "timeout", "survived"))
        if run_count:
            md.append(f"| {f} | `{fn}` | {run_count} | {c.get('killed', 0) + c.get('timeout', 0)} | "
                      f"{c.get('survived', 0)} | {fmt_score(score(c))} |")
    survivors = [m for m in mutants if status[m["id"]] == "survived"]
    md += ["", f"## Surviving mutants ({len(survivors)})\n",
           "Each is a change of `src/` that no test, property, corpus input or fuzz probe noticed: "
           "strengthen the harness so it is killed, or list it in `tools/mutation-equivalent.txt` "
           "with the reason it cannot change behaviour.\n"]
    for m in survivors:
        md += [f"### `{m['id']}` {m['file']}:{m['line']} in `{m['function']}` ({m['operator']}: {m['description']})\n",
               "```diff", diff_of(m, texts[m["file"]]), "```", ""]
    killers = defaultdict(int)
    for m in mutants:
        r = results.get(m["id"])
        if r and r.get("killer") and status[m["id"]] in DETECTED:
            killers[r["killer"].split(":")[0].split(" ")[0]] += 1
    if killers:
        md += ["## What killed the mutants\n", "| first tier to fail | mutants |", "|---|---:|"]
        for k, n in sorted(killers.items(), key=lambda kv: -kv[1]):
            md.append(f"| {k} | {n} |")
        md.append("")
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")

    # ---- HTML ----
    hdir = os.path.join(out_dir, "html")
    os.makedirs(hdir, exist_ok=True)
    style = ("body{font-family:sans-serif} pre{margin:0} table{border-collapse:collapse} "
             "td{vertical-align:top;padding:0 6px} .n{color:#888;text-align:right} "
             ".survived{background:#fcc} .killed{background:#dfd} .timeout{background:#dfd} "
             ".equivalent{background:#eee} .mix{background:#fec} code{white-space:pre}")
    index = [f"<html><head><meta charset='utf-8'><title>tm-mutate</title><style>{style}</style></head><body>",
             f"<h1>Mutation score {fmt_score(overall)}</h1><p>{html.escape(meta.get('summary', ''))}</p>",
             "<table border=1><tr><th>file</th><th>mutants</th><th>killed</th><th>survived</th><th>score</th></tr>"]
    by_line = defaultdict(list)
    for m in mutants:
        by_line[(m["file"], m["line"])].append(m)
    for f, c in sorted(per_file.items()):
        page = f.replace("/", "_") + ".html"
        index.append(f"<tr><td><a href='{page}'>{html.escape(f)}</a></td><td>{sum(c.values())}</td>"
                     f"<td>{c.get('killed', 0) + c.get('timeout', 0)}</td><td>{c.get('survived', 0)}</td>"
                     f"<td>{fmt_score(score(c))}</td></tr>")
        rows = [f"<html><head><meta charset='utf-8'><title>{html.escape(f)}</title><style>{style}</style></head>"
                f"<body><h1>{html.escape(f)}: {fmt_score(score(c))}</h1><p><a href='index.html'>index</a> "
                "red: a surviving mutant on the line; green: all of its mutants that ran were killed "
                "(hover for the mutants)</p><table>"]
        for i, line in enumerate(texts[f].splitlines(), 1):
            ms = by_line.get((f, i), [])
            states = {status[m["id"]] for m in ms} - {"pending", "did-not-compile"}
            cls = "survived" if "survived" in states else "killed" if states & set(DETECTED) else \
                "equivalent" if states and states <= {"equivalent", "identical", "release-identical"} else ""
            tip = "\n".join(f"{m['id']} {status[m['id']]}: {m['description']}" for m in ms)
            rows.append(f"<tr class='{cls}' title='{html.escape(tip, quote=True)}'><td class='n'>{i}</td>"
                        f"<td><code>{html.escape(line)}</code></td></tr>")
        rows.append("</table></body></html>")
        with open(os.path.join(hdir, page), "w") as fh:
            fh.write("\n".join(rows))
    index.append("</table></body></html>")
    with open(os.path.join(hdir, "index.html"), "w") as fh:
        fh.write("\n".join(index))
    return overall
