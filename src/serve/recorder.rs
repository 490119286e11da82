//! Group commit for the service's outbox writes.
//!
//! Requests whose scores change a customer's recorded tier hand them to one writer
//! thread, which records everything queued meanwhile in a single transaction (up to
//! [`MAX_GROUP`] scores) and answers each request with its own alert flags. Under many
//! concurrent new customers this turns a commit per request into a commit per group;
//! an alert is still committed with fsync before its request is answered.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::state::Recorded;
use crate::alerts::outbox::{Observation, Outbox};
use crate::alerts::{Alert, AlertPolicy, TaskConfig};
use crate::history::History;
use crate::scoring::{Scorer, Trend30};

/// What the service's alerts carry besides the score: the 30-day trend of the fresh
/// score against the score history (when one is configured), the task settings (profile
/// attributes, plan, owner, due date). A request that sent its `activity` gets the whole
/// task, as the batch builds it ([`crate::alerts::task::of_activity`]); one that sent a
/// feature row gets the profile numbers the row holds, no trail nor owner
/// ([`crate::alerts::task::of_features`]).
#[derive(Debug, Clone)]
pub struct AlertExtras {
    pub history: Option<History>,
    pub task: TaskConfig,
}

impl AlertExtras {
    /// The trend of `r`: its probability against its customer's score about 30 days
    /// before its `as_of` (read only when an alert is raised: rare, and one partition's
    /// two columns).
    fn trend(&self, r: &Recorded) -> Trend30 {
        let before = self.history.as_ref().and_then(|h| {
            h.probability_30d_before(&r.customer_id, r.as_of)
                .map_err(|e| {
                    tracing::warn!(error = %e.chain(), "could not read the score history; the alert's trend is unknown");
                })
                .ok()
                .flatten()
        });
        Trend30::of(r.score.churn_probability, before)
    }
}

/// Most scores recorded in one transaction.
pub const MAX_GROUP: usize = 256;

/// Requests waiting for the writer before senders wait in turn.
const QUEUE: usize = 1024;

struct Job {
    items: Vec<Recorded>,
    scorer: Arc<Scorer>,
    reply: oneshot::Sender<Result<Vec<bool>, String>>,
}

/// The handle requests record through; the writer thread stops when it is dropped.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("items", &self.items.len())
            .finish()
    }
}

impl Recorder {
    /// Starts the writer thread over `outbox`.
    pub fn start(
        outbox: Outbox,
        policy: AlertPolicy,
        extras: AlertExtras,
    ) -> std::io::Result<Recorder> {
        let (tx, mut rx) = mpsc::channel::<Job>(QUEUE);
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut n = first.items.len();
                    let mut jobs = vec![first];
                    while n < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(job) => {
                                n += job.items.len();
                                jobs.push(job);
                            }
                            Err(_) => break,
                        }
                    }
                    // A panic fails this group's requests (their replies are dropped),
                    // not the writer.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        write_group(&outbox, &policy, &extras, jobs)
                    }));
                }
            })?;
        Ok(Recorder { tx })
    }

    /// Records `items` (scored by `scorer`) in the next group; per item, whether the
    /// policy raised an alert. Returns once the group is committed.
    pub async fn record(
        &self,
        scorer: Arc<Scorer>,
        items: Vec<Recorded>,
    ) -> Result<Vec<bool>, String> {
        let (reply, answer) = oneshot::channel();
        let stopped = |_| "the outbox writer stopped".to_string();
        self.tx
            .send(Job {
                items,
                scorer,
                reply,
            })
            .await
            .map_err(stopped)?;
        answer
            .await
            .map_err(|_| "the outbox writer stopped".to_string())?
    }
}

fn write_group(outbox: &Outbox, policy: &AlertPolicy, extras: &AlertExtras, jobs: Vec<Job>) {
    let index: Vec<(usize, usize)> = jobs
        .iter()
        .enumerate()
        .flat_map(|(k, j)| (0..j.items.len()).map(move |i| (k, i)))
        .collect();
    let mut raised: Vec<Vec<bool>> = jobs.iter().map(|j| vec![false; j.items.len()]).collect();
    let result = {
        let observations: Vec<Observation<'_>> = index
            .iter()
            .map(|&(k, i)| {
                let r = &jobs[k].items[i];
                Observation {
                    customer_id: &r.customer_id,
                    tier: r.score.alerting_tier(),
                    as_of: r.as_of,
                }
            })
            .collect();
        outbox.record_group(policy, &observations, |t| {
            let (k, i) = index[t.index];
            raised[k][i] = true;
            let (r, scorer) = (&jobs[k].items[i], &jobs[k].scorer);
            let task = match &r.activity {
                Some(a) => crate::alerts::task::of_activity(a, r.as_of, &extras.task),
                None => crate::alerts::task::of_features(&scorer.artifact.spec, &r.row),
            };
            Alert::for_score(t, scorer, &r.score, &r.row, Alert::SOURCE_SERVICE).with_task(
                task,
                extras.trend(r),
                extras.task.due_days,
            )
        })
    };
    match result {
        Ok(_) => {
            for (job, flags) in jobs.into_iter().zip(raised) {
                let _ = job.reply.send(Ok(flags));
            }
        }
        Err(e) => {
            let message = e.chain().to_string();
            for job in jobs {
                let _ = job.reply.send(Err(message.clone()));
            }
        }
    }
}
