"""Report plots (matplotlib, Agg), returned as PNG bytes so the HTML can embed them."""

from __future__ import annotations

import io
import os


def _figure(width=7.5, height=3.4):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    return plt, fig, ax


def _png(plt, fig, tight_bbox: bool = False) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    # tight_bbox grows the canvas to hold annotations that reach past the axes (point labels at the edges)
    fig.savefig(buf, format="png", bbox_inches="tight" if tight_bbox else None)
    plt.close(fig)
    return buf.getvalue()


def _plain_log_ticks(axis) -> None:
    """Log axes spanning less than a decade otherwise label every minor tick in 10^x notation."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def kld_per_position(series: dict[str, list[float]]) -> bytes:
    """KL divergence against the full model at every teacher-forced position, one line per series."""
    plt, fig, ax = _figure()
    floor = 1e-12  # log axis: exact matches (KLD 0) sit on the floor
    for i, (label, values) in enumerate(series.items()):  # the first wide and pale, later ones drawn over it
        ax.plot(range(1, len(values) + 1), [max(v, floor) for v in values], label=label,
                lw=2.4 if i == 0 else 0.9, alpha=0.45 if i == 0 else 1.0)
    ax.set_yscale("log")
    ax.set_xlabel("position in the eval text")
    ax.set_ylabel("KLD vs full model (nats)")
    ax.set_title("Per-position KL divergence")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(plt, fig)


def latency_distribution(token_latencies_ms: dict[str, list[float]]) -> bytes:
    """Per-token decode latency of each runner: a box per runner, every token of every repeat."""
    plt, fig, ax = _figure(height=1.4 + 0.5 * max(1, len(token_latencies_ms)))
    labels = list(token_latencies_ms)
    ax.boxplot([token_latencies_ms[k] for k in labels], vert=False, showfliers=True, flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(labels) + 1), labels)
    ax.set_xscale("log")
    _plain_log_ticks(ax.xaxis)
    ax.set_xlabel("decode latency per token (ms, log scale)")
    ax.set_title("Decode latency distribution")
    ax.grid(alpha=0.3, axis="x")
    return _png(plt, fig)


def _short_labels(names: list[str]) -> tuple[list[str], str]:
    """Recipe ids without the calibration note and without the prefix every one shares (e.g. 'et-xnnpack-'),
    which the title states once: long labels overlap and run off the figure."""
    ids = [n.split(" (", 1)[0] for n in names]
    prefix = os.path.commonprefix(ids)
    prefix = prefix[:prefix.rfind("-") + 1] if len(ids) > 1 else ""
    return [i[len(prefix):] or i for i in ids], prefix


def pareto(points, front: set[str]) -> bytes:
    """Size vs decode speed, colour = KLD; the Pareto-optimal builds are ringed and labelled in bold."""
    import matplotlib.colors as mcolors

    plt, fig, ax = _figure(width=8.5, height=4.6)
    kld = [max(p.kld_mean, 1e-12) for p in points]
    sc = ax.scatter([p.artifact_mb for p in points], [p.decode_tokens_per_s for p in points], c=kld,
                    cmap="viridis_r", norm=mcolors.LogNorm(min(kld), max(max(kld), min(kld) * 10)), s=70, zorder=3)
    labels, prefix = _short_labels([p.name for p in points])
    middle = (min(p.artifact_mb for p in points) + max(p.artifact_mb for p in points)) / 2
    span = (max(p.decode_tokens_per_s for p in points) - min(p.decode_tokens_per_s for p in points)) or 1.0
    placed: list[tuple[float, bool]] = []
    for i, p in enumerate(points):
        on_front = p.name in front
        if on_front:
            ax.scatter([p.artifact_mb], [p.decode_tokens_per_s], s=180, facecolors="none", edgecolors="red", zorder=4)
        right_half = p.artifact_mb > middle  # labels point inwards so none leaves the axes, level with their
        # point so each reads as its point's; one that would print over a label already placed moves below it
        clash = any(abs(y - p.decode_tokens_per_s) < 0.04 * span and side == right_half for y, side in placed)
        placed.append((p.decode_tokens_per_s, right_half))
        ax.annotate(labels[i], (p.artifact_mb, p.decode_tokens_per_s), textcoords="offset points",
                    xytext=(-11 if right_half else 11, -11 if clash else 0), ha="right" if right_half else "left",
                    va="center", fontsize=8, fontweight="bold" if on_front else "normal")
    fig.colorbar(sc, ax=ax, label="KLD vs full model (mean)")
    sizes = [p.artifact_mb for p in points]
    if max(sizes) / min(sizes) > 10:  # a log axis only where sizes span decades
        ax.set_xscale("log")
        _plain_log_ticks(ax.xaxis)
    ax.margins(x=0.2, y=0.12)  # room for the labels beside the outermost points
    ax.set_xlabel("artifact size (MB)")
    ax.set_ylabel("decode tokens/s (median)")
    ax.set_title(f"{prefix + '*: ' if prefix else ''}size vs decode speed vs KLD (red rings: Pareto front)")
    ax.grid(alpha=0.3)
    return _png(plt, fig, tight_bbox=True)


def trend(series: dict[str, list[tuple[str, float, float, float]]], ylabel: str, title: str, log: bool = False) -> bytes:
    """One line per series over the farm's runs, oldest first (labelled by run), each point the median with
    its min-max range as an error bar: a device's history."""
    plt, fig, ax = _figure()
    runs = list(dict.fromkeys(p[0] for points in series.values() for p in points))  # in time order
    for name, points in sorted(series.items()):
        xs = [runs.index(p[0]) for p in points]
        medians = [p[1] for p in points]
        below = [max(p[1] - p[2], 0) for p in points]
        above = [max(p[3] - p[1], 0) for p in points]
        ax.errorbar(xs, medians, yerr=[below, above], marker="o", capsize=3, label=name)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(runs, rotation=30 if len(runs) > 6 else 0, fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("run, oldest first")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _png(plt, fig)
