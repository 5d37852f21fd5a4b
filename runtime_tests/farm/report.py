"""The farm report: one self-contained HTML page with, per device, the trend of decode speed (median and
range of the repeats) and of KL divergence against the full model for every recipe and runner, and the
latest results with their regression verdicts."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from llamaport.runtime_tests import html, plots
from llamaport.runtime_tests.farm.regressions import judge, previous_result


KLD_FLOOR = 1e-16  # an fp32 bundle's KL divergence is ~1e-13; zero has no place on a log axis


def _series(rows) -> tuple[dict, dict]:
    decode, kld = defaultdict(list), defaultdict(list)
    for r in sorted(rows, key=lambda r: r.created):
        if "error" in r.summary:  # a job error has no numbers
            continue
        name, s = f"{r.recipe} / {r.runner}", r.summary
        runs = s.get("decode_runs") or [s["decode_tokens_per_s"]]
        decode[name].append((r.run_id, s["decode_tokens_per_s"], min(runs), max(runs)))
        if "kld_mean" in s:
            k = max(s["kld_mean"], KLD_FLOOR)
            kld[name].append((r.run_id, k, k, k))
    return decode, kld


def render(store) -> str:
    rows = store.results()
    by_device = defaultdict(list)
    for r in rows:
        by_device[r.device_id].append(r)
    body = [html.paragraph(f"{len(rows)} results on {len(by_device)} devices, from {store.url}.")]
    for device_id, device_rows in sorted(by_device.items()):
        row = store.device(device_id)
        health = f"health {row.health} ({row.health_reason})" if row else "health unknown"
        body += [html.heading(f"{device_id}: {health}")]
        decode, kld = _series(device_rows)
        if decode:
            body.append(html.image(plots.trend(decode, "decode tokens/s", f"{device_id}: decode speed over time"),
                                   f"{device_id} decode trend"))
        if kld:
            body.append(html.image(plots.trend(kld, "KL divergence vs full model", f"{device_id}: accuracy over time",
                                               log=True), f"{device_id} KLD trend"))
        latest = sorted(device_rows, key=lambda r: -r.created)[:12]
        verdicts = [judge(r, previous_result(store, r)) for r in latest]
        body.append(html.table(
            ["run", "recipe", "runner", "decode tok/s", "change", "KLD", "verdict"],
            [[r.run_id, r.recipe, r.runner, r.summary.get("decode_tokens_per_s"), v.decode_change,
              r.summary.get("kld_mean"), ", ".join(v.flags) or "ok"] for r, v in zip(latest, verdicts)],
            ["fail" if {"decode_regression", "kld_regression", "job_error"} & set(v.flags) else "" for v in verdicts]))
    return html.page("llamaport farm", body)
