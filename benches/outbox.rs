//! The outbox's two hot paths on either backend, in one process:
//!
//! - `writers`: W threads record tier changes (one customer per call, as the service's
//!   recorder does, alternating low and medium so no alert is raised) for D seconds:
//!   tier changes recorded per second;
//! - `confirm`: W threads ask `needs_recording` for scores that confirm the stored tier
//!   (the service's path for a score that changes nothing, no write): checks per second.
//!
//!   cargo bench --bench outbox -- OUTBOX [writers|confirm] [THREADS] [SECONDS]
//!
//! OUTBOX is a file path (SQLite) or a `postgres://` URL; `bench/outbox.sh` runs both
//! backends on a PostgreSQL server it starts.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use churnguard::alerts::{Alert, AlertPolicy, Observation, Outbox};
use churnguard::scoring::{ModelRef, Tier};

/// Distinct customers per thread.
const CUSTOMERS: usize = 2_000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let target = args
        .first()
        .expect("usage: outbox OUTBOX [writers|confirm] [THREADS] [SECONDS]");
    let mode = args.get(1).map_or("writers", String::as_str);
    let threads: usize = args.get(2).map_or(16, |s| s.parse().expect("THREADS"));
    let seconds: u64 = args.get(3).map_or(10, |s| s.parse().expect("SECONDS"));
    let outbox = Outbox::open(target).expect("open the outbox");
    let policy = AlertPolicy::default();
    let model = ModelRef {
        name: "churn".into(),
        version: "v1".into(),
    };
    let build =
        |t: &churnguard::alerts::Transition<'_>| t.alert(model.clone(), 0.5, Alert::SOURCE_SERVICE);
    let run = format!("{:x}", std::process::id());
    let ids: Vec<Vec<String>> = (0..threads)
        .map(|w| {
            (0..CUSTOMERS)
                .map(|i| format!("bench-{run}-{w}-{i}"))
                .collect()
        })
        .collect();
    let t0 = 1_700_000_000;
    // Every customer starts at low, recorded once (not timed).
    for mine in &ids {
        let first: Vec<Observation<'_>> = mine
            .iter()
            .map(|c| Observation {
                customer_id: c,
                tier: Tier::Low,
                as_of: t0,
            })
            .collect();
        outbox.record_many(&policy, &first, build).expect("seed");
    }
    // The service's steady state: the confirming check reads a warm cache (each
    // customer read once from the database, untimed).
    if mode == "confirm" {
        std::thread::scope(|s| {
            for mine in &ids {
                let (outbox, policy) = (&outbox, &policy);
                s.spawn(move || {
                    for c in mine {
                        let obs = Observation {
                            customer_id: c,
                            tier: Tier::Low,
                            as_of: t0 + 1,
                        };
                        assert!(!outbox.needs_recording(policy, &[obs]).expect("warm"));
                    }
                });
            }
        });
    }
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for mine in &ids {
            let (outbox, policy, stop, done) = (&outbox, &policy, &stop, &done);
            s.spawn(move || {
                let mut round: i64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    for c in mine {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        match mode {
                            "writers" => {
                                let tier = if round % 2 == 1 {
                                    Tier::Medium
                                } else {
                                    Tier::Low
                                };
                                let obs = Observation {
                                    customer_id: c,
                                    tier,
                                    as_of: t0 + round,
                                };
                                let s = outbox.record_group(policy, &[obs], build).expect("record");
                                assert_eq!(s.observed - s.unchanged - s.stale, 1, "a change");
                            }
                            "confirm" => {
                                let obs = Observation {
                                    customer_id: c,
                                    tier: Tier::Low,
                                    as_of: t0 + round,
                                };
                                let needs = outbox.needs_recording(policy, &[obs]).expect("check");
                                assert!(!needs, "a confirming score needs no write");
                            }
                            other => panic!("unknown mode `{other}`: writers or confirm"),
                        }
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let backend = if churnguard::alerts::outbox::is_postgres_url(target) {
        "postgres"
    } else {
        "sqlite"
    };
    println!(
        "{backend} {mode} threads={threads} ops={n} seconds={elapsed:.2} per_second={:.0}",
        n as f64 / elapsed
    );
}
