"""report.md and report.json of tools/tm-check-allocator from its result dictionary."""
import json
import os


def write(out_dir, result):
    """Writes DIR/report.json (the dictionary) and DIR/report.md (for people)."""
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=False)
        f.write("\n")
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(markdown(result))


def _fence(text, limit=120):
    lines = text.rstrip("\n").split("\n")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more lines)"]
    return "```\n" + "\n".join(lines) + "\n```\n"


def _case(lines, case):
    """The reproducing input of a clause or crash: where, sizes, message, repro, trace."""
    lines.append(f"- found by: {case['found_by']} (target `{case['target']}`)")
    if case.get("message"):
        lines.append(f"- report: {case['message']}")
    if case.get("file"):
        lines.append(f"- smallest input: `{case['file']}` ({case['bytes']} bytes, minimised from "
                     f"{case['original_bytes']} in {case['minimise_runs']} runs)")
    if case.get("repro"):
        lines.append(f"- reproduce: `{case['repro']}`")
    lines.append("")
    if case.get("trace"):
        lines.append("Decoded trace of the smallest input:")
        lines.append("")
        lines.append(_fence(case["trace"]))


def markdown(r):
    lines = []
    lib = r["library"]
    lines.append(f"# Contract check of {lib['name']}")
    lines.append("")
    lines.append(f"- library: `{lib['path'] or 'the process malloc (no LD_PRELOAD)'}`"
                 + (f", Debian package {lib['package']} {lib['version']}" if lib.get("package") else ""))
    lines.append(f"- contract profile: `{r['profile']}`; verdict: **{r['verdict']}**")
    lines.append(f"- replayed {r['replay']['inputs']} corpus inputs of {len(r['replay']['targets'])} targets in "
                 f"{r['replay']['seconds']:.0f} s; property: {r['property']['summary']}; fuzzing: "
                 f"{r['fuzz']['summary']}")
    lines.append("")
    lines.append("| clause | source | result |")
    lines.append("|---|---|---|")
    for c in r["clauses"]:
        res = "pass" if c["status"] == "pass" else f"**{c['count']} deviation(s)**" + (
            " (waived)" if c["status"] == "deviates (waived)" else "")
        lines.append(f"| `{c['name']}` | {c['source']} | {res} |")
    lines.append(f"| crashes | | {len(r['crashes'])} |")
    lines.append(f"| hangs | | {len(r['hangs'])} |")
    lines.append("")
    for c in r["clauses"]:
        if c["status"] == "pass":
            continue
        lines.append(f"## `{c['name']}` ({c['source']})")
        lines.append("")
        lines.append(c["summary"] + ".")
        lines.append("")
        lines.append(f"- deviations: {c['count']} (counted over the corpus replay and fuzzing; the property "
                     "stops at its first)")
        _case(lines, c["case"])
    for kind in ("crashes", "hangs"):
        for i, c in enumerate(r[kind]):
            lines.append(f"## {kind[:-1] if kind == 'hangs' else 'crash'} {i + 1}: {c['what']}")
            lines.append("")
            _case(lines, c)
    return "\n".join(lines) + "\n"
