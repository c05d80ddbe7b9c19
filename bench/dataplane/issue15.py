"""The closing table of issue 15 (and issue 9's pair target): HAProxy, bare Python and Isthmus, each as a plaintext
pair, an mTLS pair and a single hop, from the rows of one run.

    ROWS                              (topology, kind) -> the run's row name
    per_rep(rows) -> {key: value}     the ratios of one repetition (run.ratios takes their median and spread)
    TARGETS                           (key, label, limit, higher is better), as run.TARGETS
    table(result) -> str              the printed table

Per row: max rps (wrk), CPU µs per request at max and at 1,000 rps per proxy (client + server for a pair: both
sides of the pair run on the one proxy core), peak RSS MB per proxy (the larger of the two runs' peaks). Ratios:
Isthmus / HAProxy rps per topology (mTLS pair: against the HAProxy TLS pair), Isthmus / HAProxy CPU per request
at 1,000 rps (both sides summed), bare / HAProxy rps, and the largest RSS of any Isthmus sidecar.
"""

from __future__ import annotations

from typing import Any

TOPOLOGIES = ("plaintext pair", "mTLS pair", "single hop")
KINDS = ("HAProxy", "bare Python", "Isthmus")
ROWS = {
    ("plaintext pair", "HAProxy"): "haproxy-pair", ("plaintext pair", "bare Python"): "bare-pair",
    ("plaintext pair", "Isthmus"): "isthmus-pair",
    ("mTLS pair", "HAProxy"): "haproxy-tls-pair", ("mTLS pair", "bare Python"): "bare-tls-pair",
    ("mTLS pair", "Isthmus"): "isthmus-mtls-pair",
    ("single hop", "HAProxy"): "haproxy-single", ("single hop", "bare Python"): "bare-single",
    ("single hop", "Isthmus"): "isthmus-single",
}
SHORT = {"plaintext pair": "pair", "mTLS pair": "mtls_pair", "single hop": "single"}

# (key, label, limit, higher is better); keys are those of run.ratios
TARGETS = [
    ("rps_ratio_pair", "issue 15: Isthmus plaintext pair >= 0.75 of the HAProxy pair's rps", 0.75, True),
    ("rps_ratio_pair", "issue 9: Isthmus plaintext pair >= 0.6 of the HAProxy pair's rps", 0.6, True),
    ("rps_ratio_single", "issue 15: Isthmus single hop >= 0.75 of HAProxy's rps", 0.75, True),
    ("rps_ratio_mtls_pair", "issue 15: Isthmus mTLS pair >= 0.6 of the HAProxy TLS pair's rps", 0.6, True),
    ("cpu_1k_ratio_pair", "issue 15: CPU/request @1,000 rps, plaintext pair <= 1.3x HAProxy's", 1.3, False),
    ("cpu_1k_ratio_mtls_pair", "issue 15: CPU/request @1,000 rps, mTLS pair <= 1.3x HAProxy TLS's", 1.3, False),
    ("cpu_1k_ratio_single", "issue 15: CPU/request @1,000 rps, single hop <= 1.3x HAProxy's", 1.3, False),
    ("isthmus_rss_mb_worst", "issue 15: RSS <= 30 MB per sidecar (worst Isthmus sidecar, any row)", 30.0, False),
]


def _cpu_us(row: dict[str, Any], key: str) -> float:
    """CPU µs per request, every proxy of the row summed (`key`: cpu_per_1k_max_s or cpu_per_1k_s, s per 1k)."""
    return sum(v for k, v in row.items() if k.endswith("." + key)) * 1000


def _rss(row: dict[str, Any]) -> float:
    return max([v for k, v in row.items() if k.endswith(".rss_mb_1k") or k.endswith(".rss_mb_max")] or [0.0])


def per_rep(rows: dict[str, dict[str, Any]]) -> dict[str, float]:
    """One repetition's issue-15 ratios (Isthmus / HAProxy rps, `rps_ratio_<topology>`, are run.ratios' own)."""
    out: dict[str, float] = {}
    for topology in TOPOLOGIES:
        short = SHORT[topology]
        h, b, i = (rows[ROWS[(topology, kind)]] for kind in KINDS)
        if h["rps"] > 0:
            out[f"rps_ratio_bare_haproxy_{short}"] = b["rps"] / h["rps"]
        if b["rps"] > 0:
            out[f"rps_ratio_isthmus_bare_{short}"] = i["rps"] / b["rps"]
        for key, name in (("cpu_per_1k_s", "cpu_1k_ratio"), ("cpu_per_1k_max_s", "cpu_max_ratio")):
            if _cpu_us(h, key) > 0:
                out[f"{name}_{short}"] = _cpu_us(i, key) / _cpu_us(h, key)
    out["isthmus_rss_mb_worst"] = max(_rss(rows[ROWS[(t, "Isthmus")]]) for t in TOPOLOGIES)
    return out


def _f(spread: dict[str, float] | None, digits: int, reps: int, scale: float = 1.0) -> str:
    if spread is None:
        return "-"
    text = f"{spread['median'] * scale:.{digits}f}"
    if reps > 1:
        text += f" ({spread['min'] * scale:.{digits}f}-{spread['max'] * scale:.{digits}f})"
    return text


def _per_proxy(summary: dict[str, dict[str, float]], roles: list[str], key: str, digits: int, reps: int,
               scale: float) -> str:
    return " + ".join(_f(summary.get(f"{role}.{key}"), digits, reps, scale) for role in roles)


def rows_table(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    reps = result["plan"]["repetitions"]
    fixed = result["plan"]["fixed_rps"]
    header = ["issue 15", "max rps", "CPU µs/req @max (client + server)", f"CPU µs/req @{fixed:g}",
              "RSS MB (peak of the two runs)"]
    body = []
    for topology in TOPOLOGIES:
        for kind in KINDS:
            name = ROWS[(topology, kind)]
            row = result["rows"][name]
            s, roles = row["summary"], row["proxies"]
            rss = " / ".join(_f(_worst(s, role), 1, reps) for role in roles)
            body.append([f"{kind}, {topology} ({name})", _f(s.get("rps"), 0, reps),
                         _per_proxy(s, roles, "cpu_per_1k_max_s", 1, reps, 1000),
                         _per_proxy(s, roles, "cpu_per_1k_s", 1, reps, 1000), rss])
    return header, body


def _worst(summary: dict[str, dict[str, float]], role: str) -> dict[str, float] | None:
    a, b = summary.get(f"{role}.rss_mb_1k"), summary.get(f"{role}.rss_mb_max")
    if a is None or b is None:
        return a or b
    return {k: max(a[k], b[k]) for k in ("median", "min", "max")}


def ratio_rows(result: dict[str, Any]) -> list[list[str]]:
    reps = result["plan"]["repetitions"]
    r = result["ratios"]
    body = []
    for topology in TOPOLOGIES:
        short = SHORT[topology]
        vs = "HAProxy TLS" if topology == "mTLS pair" else "HAProxy"
        body += [
            [f"{topology}: Isthmus / {vs} rps", _f(r.get(f"rps_ratio_{short}"), 2, reps)],
            [f"{topology}: bare / {vs} rps", _f(r.get(f"rps_ratio_bare_haproxy_{short}"), 2, reps)],
            [f"{topology}: Isthmus / bare rps", _f(r.get(f"rps_ratio_isthmus_bare_{short}"), 2, reps)],
            [f"{topology}: Isthmus / {vs} CPU per request @max", _f(r.get(f"cpu_max_ratio_{short}"), 2, reps)],
            [f"{topology}: Isthmus / {vs} CPU per request @{result['plan']['fixed_rps']:g}",
             _f(r.get(f"cpu_1k_ratio_{short}"), 2, reps)],
        ]
    body.append(["worst Isthmus sidecar RSS MB", _f(r.get("isthmus_rss_mb_worst"), 1, reps)])
    return body
