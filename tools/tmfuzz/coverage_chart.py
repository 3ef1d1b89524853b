"""Coverage over time of a tm-fuzz campaign, as a CSV file and an SVG chart (no dependencies).

A sample is (seconds since the campaign began, target, cov, ft) from libFuzzer's status lines
once a process finished its initial corpus pass (before that its counters are still climbing
to the corpus's level, and every new process of a target starts that way). The chart has two
panels with one line per target: features (ft) on a log scale, so that targets of a few hundred
and of tens of thousands of features are both readable, and the features gained since the
target's first sample (linear), which shows which targets are still finding new behaviour.
A target that waits for its turn in the schedule has no line yet.
"""
import csv
import html
import math

# Distinguishable colours (Tableau 10).
COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac"]

WIDTH = 1040
PANEL_H = 300
LEFT, RIGHT, TOP, GAP, BOTTOM = 70, 270, 40, 70, 50


def thin(samples, step):
    """At most one sample per `step` seconds per target (the last of each interval), plus the
    first and the last one."""
    out, last_bucket = [], None
    for i, s in enumerate(samples):
        bucket = int(s[0] // step)
        if out and bucket == last_bucket and i != len(samples) - 1:
            out[-1] = s
        else:
            out.append(s)
        last_bucket = bucket
    return out


def write_csv(path, series):
    """series: {target: [(t, cov, ft), ...]}"""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seconds", "target", "cov", "ft"])
        for target, samples in series.items():
            for t, cov, ft in samples:
                w.writerow([f"{t:.1f}", target, cov, ft])


def nice_step(span, ticks=8):
    """A round tick step (1, 2 or 5 times a power of ten) giving about `ticks` ticks."""
    raw = span / ticks if span > 0 else 1
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def panel(out, y0, title, series, wall_min, value, log_scale, colours):
    """Draws one panel: axes, grid, one polyline per target; `value(sample)` is plotted."""
    plot_w = WIDTH - LEFT - RIGHT
    values = [value(s, samples) for samples in series.values() for s in samples]
    if not values:
        return
    lo, hi = min(values), max(values)
    if log_scale:
        lo = 10 ** math.floor(math.log10(max(lo, 1)))
        hi = 10 ** math.ceil(math.log10(max(hi, 1) + 1))
        to_y = lambda v: y0 + PANEL_H - (math.log10(max(v, lo)) - math.log10(lo)) / (
            math.log10(hi) - math.log10(lo)) * PANEL_H
        ticks, v = [], lo
        while v <= hi:
            ticks += [v * k for k in (1, 2, 5) if v * k <= hi]
            v *= 10
    else:
        lo = 0
        step = nice_step(hi - lo, 6)
        hi = max(step, math.ceil(hi / step) * step)
        to_y = lambda v: y0 + PANEL_H - (v - lo) / (hi - lo) * PANEL_H
        ticks = [lo + i * step for i in range(int((hi - lo) / step) + 1)]
    to_x = lambda t: LEFT + (t / 60.0) / wall_min * plot_w
    out.append(f'<text x="{LEFT}" y="{y0 - 12}" font-size="15" font-weight="bold">{html.escape(title)}</text>')
    for v in ticks:
        y = to_y(v)
        major = not log_scale or math.log10(v).is_integer()
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + plot_w}" y2="{y:.1f}" stroke="#ddd" '
                   f'stroke-width="{1 if major else 0.5}"/>')
        if major or len(ticks) <= 12:
            label = f"{v:,.0f}"
            out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{label}</text>')
    xstep = nice_step(wall_min, 10)
    m = 0.0
    while m <= wall_min + 1e-9:
        x = to_x(m * 60)
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + PANEL_H}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{y0 + PANEL_H + 16}" font-size="11" text-anchor="middle">{m:g}</text>')
        m += xstep
    out.append(f'<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{LEFT + plot_w / 2}" y="{y0 + PANEL_H + 34}" font-size="12" text-anchor="middle">'
               f'minutes since the campaign began</text>')
    for (target, samples), colour in zip(series.items(), colours):
        if not samples:
            continue
        pts = " ".join(f"{to_x(s[0]):.1f},{to_y(value(s, samples)):.1f}" for s in samples)
        if len(samples) == 1:
            x, y = to_x(samples[0][0]), to_y(value(samples[0], samples))
            out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>')
        else:
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"/>')


def write_svg(path, series, wall_s, title):
    """series: {target: [(t, cov, ft), ...]} sorted by time; wall_s: the campaign's length."""
    series = {t: thin(s, max(1.0, wall_s / 400)) for t, s in series.items()}
    wall_min = max(wall_s / 60.0, 1 / 60.0)
    colours = [COLOURS[i % len(COLOURS)] for i in range(len(series))]
    height = TOP + 16 + 2 * PANEL_H + GAP + BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'font-family="sans-serif" viewBox="0 0 {WIDTH} {height}">',
           f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
           f'<text x="{WIDTH / 2}" y="18" font-size="16" text-anchor="middle">{html.escape(title)}</text>']
    panel(out, TOP + 16, "Features (ft), log scale", series, wall_min, lambda s, _: s[2], True, colours)
    panel(out, TOP + 16 + PANEL_H + GAP, "Features gained since the target's first sample", series, wall_min,
          lambda s, samples: s[2] - samples[0][2], False, colours)
    # Legend: colour, target, first -> last features.
    y = TOP + 30
    for (target, samples), colour in zip(series.items(), colours):
        x = WIDTH - RIGHT + 14
        out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 18}" y2="{y - 4}" stroke="{colour}" stroke-width="3"/>')
        text = f"{target}: " + (f"{samples[0][2]:,} → {samples[-1][2]:,}" if samples else "no samples")
        out.append(f'<text x="{x + 24}" y="{y}" font-size="11">{html.escape(text)}</text>')
        y += 18
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
