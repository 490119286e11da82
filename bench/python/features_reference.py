#!/usr/bin/env python3
"""A straightforward Python-polars implementation of churnguard's monthly-snapshot
feature set, timed on the same files, for issue #3's comparison ("the full
monthly-snapshot training set ... no slower than a straightforward Python-polars
implementation of the same features on the same files").

    bench/.venv/bin/python bench/python/features_reference.py DATA_DIR \
        [--out FILE.parquet] [--check CHURNGUARD_TRAINING_SET.parquet] [--max-snapshots 24]

What it reproduces (definitions from src/features/compute.rs, population and labels from
src/features/population.rs and src/labels.rs, snapshot dates from labels::plan with the
default windows: horizon 30 days, a snapshot every 30 days, 90 days of history, at most
24 snapshots, explicit churn from the `churn` table):

* tenure; one-hot of plan/channel/country (top 8 levels + other); monthly_fee;
* logins: 7/30/90-day counts, days since last login, trend, active days in 30;
* tickets: 30/90-day counts, open at T, open high/urgent, mean resolution hours and
  mean csat of tickets closed in 90 days, urgent share, days since last ticket;
* orders: recency, 90/365-day frequency and revenue, mean/std of inter-order intervals,
  overdue ratio, refunds in 365 days (RFM quintile *scores* are left out: they need cut
  points learned by the trainer);
* events: 30-day total, per type 30-day count and change vs the prior 30 days;
* label (churn within [T, T+30d)) and split, so the output matches the training set.

Implementation: the obvious one. Tables are read once with polars (customer ids mapped
to integer codes and timestamps to epoch seconds), then for every snapshot T one lazy
query per table filters rows before T, aggregates per customer with conditional
expressions, and the per-table results are left-joined onto the population at T.
Polars uses every core (POLARS_MAX_THREADS to change).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import polars as pl

DAY = 86_400
HORIZON = 30
SNAPSHOT_DAYS = 30
MIN_HISTORY = 90
VALIDATION_SHARE = 0.25
HIGH = ["high", "major", "urgent", "critical", "blocker"]


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", s.lower())[:48]


def scan(data: Path, table: str) -> pl.LazyFrame | None:
    pq, csv, part_dir = data / f"{table}.parquet", data / f"{table}.csv", data / table
    if pq.exists():
        return pl.scan_parquet(pq)
    if part_dir.is_dir():
        return pl.scan_parquet(part_dir / "*.parquet")
    if csv.exists():
        return pl.scan_csv(csv, try_parse_dates=True)
    return None


def secs(col: str) -> pl.Expr:
    """A Date/Datetime (or text) column as UTC epoch seconds (Int64)."""
    return pl.col(col).cast(pl.Datetime("ms")).dt.epoch("s")


def load(data: Path):
    customers = scan(data, "customers").collect()
    customers = customers.with_row_index("cid").with_columns(signup=secs("signup_at"))
    index = customers.select("customer_id", "cid").lazy()

    def activity(table: str, cols: dict[str, pl.Expr]) -> pl.DataFrame | None:
        lf = scan(data, table)
        if lf is None:
            return None
        return (
            lf.join(index, on="customer_id", how="inner")
            .select(pl.col("cid"), **cols)
            .sort("cid", "at" if "at" in cols else list(cols)[0])
            .collect()
        )

    logins = activity("logins", {"at": secs("at")})
    logins = logins.with_columns(day=pl.col("at") // DAY)
    tickets = activity(
        "tickets",
        {
            "at": secs("opened_at"),
            "closed": secs("closed_at"),
            "high": pl.col("priority").str.to_lowercase().str.strip_chars().is_in(HIGH).fill_null(False),
            "csat": pl.col("csat").cast(pl.Float64),
        },
    )
    orders = activity("orders", {"at": secs("at"), "amount": pl.col("amount").cast(pl.Float64)})
    # Days since the customer's previous order, on the later order's row (null on the first):
    # for any T, the intervals among orders before T are those on rows before T.
    orders = orders.with_columns(gap=(pl.col("at").diff().over("cid") / DAY))
    events = activity("events", {"at": secs("at"), "event_type": pl.col("event_type").cast(pl.Categorical)})
    churn = activity("churn", {"at": secs("churned_at")})
    return customers, logins, tickets, orders, events, churn


def plan(customers, tables, max_snapshots: int):
    lo = customers["signup"].min()
    hi = customers["signup"].max()
    for t in tables:
        if t is not None and t.height:
            lo, hi = min(lo, t["at"].min()), max(hi, t["at"].max())
    data_end = (hi // DAY) * DAY
    first = (lo // DAY) * DAY + MIN_HISTORY * DAY
    dates, t = [], data_end - HORIZON * DAY
    while t >= first and len(dates) < max_snapshots:
        dates.append(t)
        t -= SNAPSHOT_DAYS * DAY
    dates.reverse()
    n_val = min(max(round(len(dates) * VALIDATION_SHARE), 1), len(dates) - 1)
    val_start = dates[len(dates) - n_val]
    out = []
    for t in dates:
        if t >= val_start:
            out.append((t, "validation"))
        elif t + HORIZON * DAY <= val_start:
            out.append((t, "train"))
    return out


def snapshot(T: int, split: str, customers, logins, tickets, orders, events, churn, event_types, onehot):
    d = lambda n: T - n * DAY  # noqa: E731
    c = pl.col
    # Population: signed up before T, and no churn before T unless an order came after it.
    last_churn = churn.lazy().filter(c("at") < T).group_by("cid").agg(last_churn=c("at").max())
    od = (
        orders.lazy()
        .filter(c("at") < T)
        .group_by("cid")
        .agg(
            last_order=c("at").max(),
            orders_90d=(c("at") >= d(90)).sum(),
            orders_365d=(c("at") >= d(365)).sum(),
            revenue_90d=c("amount").filter(c("at") >= d(90)).sum(),
            revenue_365d=c("amount").filter(c("at") >= d(365)).sum(),
            interval_mean_days=c("gap").mean(),
            interval_std_days=c("gap").std(ddof=0),
            n_gaps=c("gap").count(),
            refunds_365d=((c("amount") < 0) & (c("at") >= d(365))).sum(),
        )
    )
    pop = (
        customers.lazy()
        .filter(c("signup") < T)
        .join(last_churn, on="cid", how="left")
        .join(od, on="cid", how="left")
        .filter(c("last_churn").is_null() | (c("last_order") > c("last_churn")))
    )
    lg = (
        logins.lazy()
        .filter(c("at") < T)
        .group_by("cid")
        .agg(
            last_login=c("at").max(),
            logins_7d=(c("at") >= d(7)).sum(),
            logins_30d=(c("at") >= d(30)).sum(),
            logins_90d=(c("at") >= d(90)).sum(),
            prior=((c("at") >= d(90)) & (c("at") < d(30))).sum(),
            active_days_30d=c("day").filter(c("at") >= d(30)).n_unique(),
        )
    )
    open_ = c("closed").is_null() | (c("closed") >= T)
    closed90 = c("closed").is_not_null() & (c("closed") < T) & (c("closed") >= d(90))
    tk = (
        tickets.lazy()
        .filter(c("at") < T)
        .group_by("cid")
        .agg(
            tickets_30d=(c("at") >= d(30)).sum(),
            tickets_90d=(c("at") >= d(90)).sum(),
            tickets_open=open_.sum(),
            tickets_open_urgent=(open_ & c("high")).sum(),
            resolution_hours_90d=((c("closed") - c("at")) / 3600).filter(closed90).mean(),
            high_90d=(c("high") & (c("at") >= d(90))).sum(),
            csat_mean_90d=c("csat").filter(closed90 & c("csat").is_not_null()).mean(),
            last_ticket=c("at").max(),
        )
    )
    ev_aggs = [(c("at") >= d(30)).sum().alias("events_30d")]
    for ty in event_types:
        s = slug(ty)
        is_ty = c("event_type") == ty
        ev_aggs.append((is_ty & (c("at") >= d(30))).sum().alias(f"events_{s}_30d"))
        ev_aggs.append((is_ty & (c("at") < d(30))).sum().alias(f"_prior_{s}"))
    ev = events.lazy().filter((c("at") < T) & (c("at") >= d(60))).group_by("cid").agg(ev_aggs)
    labels = (
        churn.lazy()
        .filter((c("at") >= T) & (c("at") < T + HORIZON * DAY))
        .select("cid")
        .unique()
        .with_columns(label=pl.lit(1, pl.Int32))
    )
    q = pop.join(lg, on="cid", how="left").join(tk, on="cid", how="left").join(ev, on="cid", how="left")
    q = q.join(labels, on="cid", how="left")
    tenure = ((T - c("signup")) / DAY).clip(lower_bound=0.0)
    since = lambda col: pl.when(c(col).is_null()).then(tenure).otherwise((T - c(col)) / DAY)  # noqa: E731
    zero = lambda cols: [c(x).fill_null(0).cast(pl.Float64) for x in cols]  # noqa: E731
    q = q.with_columns(
        tenure_days=tenure,
        days_since_last_login=since("last_login"),
        days_since_last_ticket=since("last_ticket"),
        order_recency_days=since("last_order"),
        *zero(["logins_7d", "logins_30d", "logins_90d", "active_days_30d", "prior", "tickets_30d",
               "tickets_90d", "tickets_open", "tickets_open_urgent", "high_90d", "orders_90d",
               "orders_365d", "revenue_90d", "revenue_365d", "refunds_365d", "n_gaps", "events_30d"]
              + [f"events_{slug(t)}_30d" for t in event_types] + [f"_prior_{slug(t)}" for t in event_types]),
        label=c("label").fill_null(0),
    ).with_columns(
        login_trend=(c("logins_30d") + 1) / (c("prior") / 2 + 1),
        urgent_share_90d=pl.when(c("tickets_90d") > 0).then(c("high_90d") / c("tickets_90d")).otherwise(0.0),
        interval_std_days=pl.when(c("n_gaps") >= 2).then(c("interval_std_days")),
        overdue_ratio=pl.when(c("interval_mean_days") > 0).then(c("order_recency_days") / c("interval_mean_days")),
        *[((c(f"events_{slug(t)}_30d") + 1) / (c(f"_prior_{slug(t)}") + 1)).alias(f"events_{slug(t)}_change")
          for t in event_types],
    )
    cols = ["customer_id", pl.lit(fmt_date(T)).alias("as_of"), "tenure_days"]
    for name, levels in onehot.items():
        v = c(name)
        for lv in levels:
            cols.append((v == lv).fill_null(False).cast(pl.Float64).alias(f"{slug(name)}_{slug(lv)}"))
        cols.append((~v.is_in(levels)).fill_null(True).cast(pl.Float64).alias(f"{slug(name)}_other"))
    cols += ["monthly_fee", "logins_7d", "logins_30d", "logins_90d", "days_since_last_login", "login_trend",
             "active_days_30d", "tickets_30d", "tickets_90d", "tickets_open", "tickets_open_urgent",
             "resolution_hours_90d", "urgent_share_90d", "csat_mean_90d", "days_since_last_ticket",
             "order_recency_days", "orders_90d", "orders_365d", "revenue_90d", "revenue_365d",
             "interval_mean_days", "interval_std_days", "overdue_ratio", "refunds_365d", "events_30d"]
    for t in event_types:
        cols += [f"events_{slug(t)}_30d", f"events_{slug(t)}_change"]
    cols += ["label", pl.lit(split).alias("split")]
    return q.select(cols).sort("customer_id").collect()


def fmt_date(t: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t))


def check(ours: pl.DataFrame, path: str) -> int:
    """Compares every common feature column with churnguard's training set; returns mismatches."""
    cg = pl.read_parquet(path)
    keys = ["customer_id", "as_of"]
    common = [x for x in ours.columns if x in cg.columns and x not in keys + ["split"]]
    j = ours.join(cg, on=keys, how="full", suffix="_cg", coalesce=True)
    only_ours = j.filter(pl.col("split_cg").is_null()).height
    only_cg = j.filter(pl.col("split").is_null()).height
    print(f"check vs {path}: {ours.height} rows here, {cg.height} in churnguard's; "
          f"{only_ours} only here, {only_cg} only there; {len(common)} common columns")
    bad = only_ours + only_cg
    j = j.filter(pl.col("split").is_not_null() & pl.col("split_cg").is_not_null())
    for col in common:
        a, b = pl.col(col).cast(pl.Float64), pl.col(f"{col}_cg").cast(pl.Float64)
        both_null = a.is_null() & b.is_null()
        close = (a - b).abs() <= 1e-6 * (1 + b.abs())
        n = j.select((~(both_null | close.fill_null(False))).sum()).item()
        if n:
            print(f"  {col}: {n} rows differ")
            bad += n
    print("check: all common columns agree" if bad == 0 else f"check: {bad} differences")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--out", help="write the training set here (.parquet)")
    ap.add_argument("--check", help="compare with churnguard's `features --training-set` output")
    ap.add_argument("--max-snapshots", type=int, default=24)
    a = ap.parse_args()
    t0 = time.perf_counter()
    customers, logins, tickets, orders, events, churn = load(a.data)
    t_load = time.perf_counter() - t0
    rows = sum(x.height for x in (customers, logins, tickets, orders, events, churn) if x is not None)
    snaps = plan(customers, [logins, tickets, orders, events, churn], a.max_snapshots)
    cutoff = max(t for t, s in snaps if s == "train")
    event_types = (
        events.filter(pl.col("at") < cutoff)
        .group_by("event_type").len().sort(["len", "event_type"], descending=[True, False])
        .head(8)["event_type"].cast(pl.String).to_list()
    )
    onehot = {}
    for name in ["plan", "channel", "country"]:
        if name in customers.columns:
            lv = (customers.filter(pl.col(name).is_not_null()).group_by(name).len()
                  .sort(["len", name], descending=[True, False]).head(8)[name].to_list())
            onehot[name] = lv
    t1 = time.perf_counter()
    frames = [snapshot(t, s, customers, logins, tickets, orders, events, churn, event_types, onehot) for t, s in snaps]
    out = pl.concat(frames)
    t_feat = time.perf_counter() - t1
    t2 = time.perf_counter()
    if a.out:
        out.write_parquet(a.out)
    t_write = time.perf_counter() - t2
    total = time.perf_counter() - t0
    print(f"python-polars {pl.__version__} reference, {pl.thread_pool_size()} threads: "
          f"{customers.height} customers, {rows} rows read, {len(snaps)} snapshots "
          f"({sum(s == 'train' for _, s in snaps)} train), {out.height} examples x {out.width} columns")
    print(f"seconds: load {t_load:.2f}  features {t_feat:.2f}  write {t_write:.2f}  total {total:.2f}")
    print(f"RESULT features_reference load_s={t_load:.3f} features_s={t_feat:.3f} write_s={t_write:.3f} "
          f"total_s={total:.3f} snapshots={len(snaps)} examples={out.height} columns={out.width}")
    if a.check:
        return 1 if check(out, a.check) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
