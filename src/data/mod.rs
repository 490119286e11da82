//! The data contract: reading, validating and indexing the customer tables.
//!
//! Tables are read with polars (CSV or Parquet, or a directory of Parquet parts) and
//! turned into a [`CustomerBase`]: per-customer, time-sorted slices that the feature
//! code reads through [`CustomerView`]. Every bad cell is reported with its table,
//! file, 1-based data row and column.

mod read;
mod summary;
pub mod write;

pub(crate) use read::cells::{
    datetime_seconds, has as has_column, read_file as read_table_file, read_parquet_columns,
    ticks_per_second,
};
/// Whole-file table reading shared with the score file's reader (CSV cells as text).
pub(crate) use read::dir_parts;
pub use read::split as buckets;
pub use read::{load, load_frames, summarize, LoadOptions};
pub use summary::{BadRow, Summary, TableSummary};

use crate::time::Ts;
use std::path::Path;

/// Whether a file is (to be) CSV: a `.csv` extension in any case; anything else is Parquet.
pub fn is_csv(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"))
}

/// The tables of the data contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Customers,
    Logins,
    Tickets,
    Orders,
    Events,
    Churn,
}

impl Table {
    /// Every table, in the order they are read.
    pub const ALL: [Table; 6] = [
        Table::Customers,
        Table::Logins,
        Table::Tickets,
        Table::Orders,
        Table::Events,
        Table::Churn,
    ];

    /// The table's name, which is also its file name without extension.
    pub fn name(self) -> &'static str {
        match self {
            Table::Customers => "customers",
            Table::Logins => "logins",
            Table::Tickets => "tickets",
            Table::Orders => "orders",
            Table::Events => "events",
            Table::Churn => "churn",
        }
    }

    /// Parses a table name.
    pub fn from_name(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// Ticket priority; unknown or empty values are `Normal`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

impl Priority {
    /// Reads a priority case-insensitively; anything unrecognised is `Normal`.
    pub fn parse(s: &str) -> Priority {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" | "minor" => Priority::Low,
            "high" | "major" => Priority::High,
            "urgent" | "critical" | "blocker" => Priority::Urgent,
            _ => Priority::Normal,
        }
    }
}

/// A support ticket as known in the data (closure may be after any given snapshot).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ticket {
    pub opened: Ts,
    /// `None` while still open.
    pub closed: Option<Ts>,
    pub priority: Priority,
    /// Satisfaction 1-5 given at closure, NaN when absent.
    pub csat: f64,
}

/// An order, invoice or renewal payment; negative amounts are refunds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Order {
    pub at: Ts,
    pub amount: f64,
}

/// A product-usage event; `kind` indexes [`CustomerBase::event_types`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub at: Ts,
    pub kind: u32,
    /// Optional magnitude (1 when absent); single precision keeps 60M-row tables small.
    pub value: f32,
}

/// Rows with a time, so that they can be sorted and cut at a snapshot.
pub trait Timed {
    /// The instant the row happened (tickets: opened).
    fn time(&self) -> Ts;
}
impl Timed for Ts {
    fn time(&self) -> Ts {
        *self
    }
}
impl Timed for Ticket {
    fn time(&self) -> Ts {
        self.opened
    }
}
impl Timed for Order {
    fn time(&self) -> Ts {
        self.at
    }
}
impl Timed for Event {
    fn time(&self) -> Ts {
        self.at
    }
}

/// Rows of one table grouped by customer (compressed sparse rows), each group sorted by time.
#[derive(Debug, Clone, Default)]
pub struct Grouped<T> {
    offsets: Vec<usize>,
    items: Vec<T>,
}

impl<T: Timed + Copy + Send + Sync> Grouped<T> {
    /// Groups `(customer index, row)` pairs for `n` customers, sorting each group by time.
    pub fn build(n: usize, customer: &[u32], rows: Vec<T>) -> Self {
        let mut g = Grouper::with_capacity(n, customer.len());
        for (&c, r) in customer.iter().zip(rows) {
            g.push(c, r);
        }
        g.finish()
    }

    /// The rows of customer `c`, sorted by time.
    pub fn of(&self, c: usize) -> &[T] {
        &self.items[self.offsets[c]..self.offsets[c + 1]]
    }

    /// All rows, grouped by customer.
    pub fn all(&self) -> &[T] {
        &self.items
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Buckets of a [`Grouper`] at most: rows are kept in buckets of consecutive
/// customers, so that grouping sorts one bucket at a time into the final slice.
const BUCKETS: usize = 64;

/// Rows a bucket of a [`Grouper`] reserves at least, when the table's size is known:
/// 32 MiB of customer indexes. Allocations that large are memory-mapped by the system
/// allocator, so that each bucket's memory goes back to the system as soon as the
/// bucket is grouped, instead of staying in the heap beside the grouped table.
const BUCKET_ROWS: usize = 1 << 23;

/// Builds a [`Grouped`] from rows arriving in any order, one at a time (a table read in
/// batches): each row is appended to the bucket of its customer's index range, and
/// [`Grouper::finish`] counting-sorts the buckets one after the other into the final
/// slice, freeing each bucket as it goes. Peak memory is the rows and their customer
/// indexes (4 bytes a row), instead of two copies of the table and a permutation of
/// all of it.
#[derive(Debug)]
pub struct Grouper<T> {
    n: usize,
    /// log2 of the customers per bucket.
    shift: u32,
    /// Each bucket's customer indexes and rows, in arrival order.
    buckets: Vec<(Vec<u32>, Vec<T>)>,
    len: usize,
    /// Only counting rows ([`Grouper::counting`]): none is kept.
    counting: bool,
}

impl<T: Timed + Copy + Send + Sync> Grouper<T> {
    /// A grouper for customer indexes `0..n`.
    pub fn new(n: usize) -> Self {
        Self::with_capacity(n, 0)
    }

    /// A grouper that only counts the rows pushed ([`Grouper::len`]) and keeps none:
    /// [`Grouper::finish`] gives `n` empty groups. A load that only checks a base
    /// ([`crate::data::summarize`]) holds no table, whatever the base's size.
    pub fn counting(n: usize) -> Self {
        Grouper {
            counting: true,
            ..Self::with_capacity(n, 0)
        }
    }

    /// A grouper for customer indexes `0..n` expecting about `rows` rows (spread over
    /// the customers): buckets of at least [`BUCKET_ROWS`] rows each reserve their share
    /// up front, so that they grow without reallocating (copies, and freed blocks the
    /// allocator keeps), and are handed back to the system once grouped.
    pub fn with_capacity(n: usize, rows: usize) -> Self {
        let buckets = if rows == 0 {
            BUCKETS
        } else {
            rows.div_ceil(BUCKET_ROWS).clamp(1, BUCKETS)
        };
        let per = n.div_ceil(buckets).max(1).next_power_of_two();
        let shift = per.trailing_zeros();
        let buckets = n.div_ceil(per).max(1);
        let share = rows / buckets;
        let reserve = if share == 0 {
            0
        } else {
            share + share / 8 + 64
        };
        Grouper {
            n,
            shift,
            buckets: (0..buckets)
                .map(|_| (Vec::with_capacity(reserve), Vec::with_capacity(reserve)))
                .collect(),
            len: 0,
            counting: false,
        }
    }

    /// Adds a row of customer `c` (`c < n`); rows of one customer keep their order
    /// among equal times.
    pub fn push(&mut self, c: u32, row: T) {
        self.len += 1;
        if self.counting {
            return;
        }
        let (cs, rs) = &mut self.buckets[(c >> self.shift) as usize];
        cs.push(c);
        rs.push(row);
    }

    /// Rows added so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Groups the rows by customer, each group sorted by time (stably: rows of one
    /// customer at the same time keep their arrival order).
    pub fn finish(self) -> Grouped<T> {
        use rayon::prelude::*;
        let Grouper {
            n,
            shift,
            buckets,
            len,
            counting,
        } = self;
        let len = if counting { 0 } else { len };
        let per = 1usize << shift;
        let mut offsets = vec![0usize; n + 1];
        let mut items: Vec<T> = Vec::with_capacity(len);
        for (b, bucket) in buckets.into_iter().enumerate() {
            let first = b * per;
            let last = ((b + 1) * per).min(n);
            let base = items.len();
            // A counting sort of this bucket, scattering into its part of `items`.
            let mut next = vec![0usize; last - first + 1];
            for &c in &bucket.0 {
                next[c as usize - first + 1] += 1;
            }
            for i in 0..last - first {
                next[i + 1] += next[i];
            }
            let m = next[last - first];
            for (i, &start) in next[..last - first].iter().enumerate() {
                offsets[first + i] = base + start;
            }
            let (cs, rs) = bucket;
            let Some(&fill) = rs.first() else {
                continue;
            };
            items.resize(base + m, fill);
            let slots = &mut items[base..];
            for (&c, &r) in cs.iter().zip(&rs) {
                let at = &mut next[c as usize - first];
                slots[*at] = r;
                *at += 1;
            }
            drop(cs);
            drop(rs);
            // Sort each customer's slice in parallel; the slices are disjoint.
            let mut rest: &mut [T] = slots;
            let mut chunks = Vec::with_capacity(last - first);
            for c in first..last {
                let stop = if c + 1 < last {
                    offsets[c + 1]
                } else {
                    base + m
                };
                let (head, tail) = rest.split_at_mut(stop - offsets[c]);
                chunks.push(head);
                rest = tail;
            }
            chunks
                .into_par_iter()
                .with_min_len(256)
                .for_each(|c| c.sort_by_key(|r| r.time()));
        }
        offsets[n] = items.len();
        Grouped { offsets, items }
    }
}

/// A customer attribute column (an extra column of `customers`).
#[derive(Debug, Clone, PartialEq)]
pub enum Attribute {
    /// Numbers; NaN where empty.
    Numeric(Vec<f64>),
    /// Strings; `None` where empty.
    Categorical(Vec<Option<String>>),
}

/// Customer id -> index into the `customers` columns. FxHash (rustc-hash): ids are
/// looked up once per activity row, 130M times for a 1M-customer base, and SipHash's DoS
/// resistance buys nothing here.
pub type IdIndex = rustc_hash::FxHashMap<String, u32>;

/// The `customers` table.
#[derive(Debug, Clone, Default)]
pub struct Customers {
    pub ids: Vec<String>,
    pub signup: Vec<Ts>,
    /// Extra columns by name, in file order.
    pub attributes: Vec<(String, Attribute)>,
    pub index: IdIndex,
}

impl Customers {
    /// Number of customers.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The attribute column called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a)
    }
}

/// A validated customer base: every table indexed by customer.
#[derive(Debug, Clone, Default)]
pub struct CustomerBase {
    pub customers: Customers,
    pub logins: Option<Grouped<Ts>>,
    pub tickets: Option<Grouped<Ticket>>,
    pub orders: Option<Grouped<Order>>,
    pub events: Option<Grouped<Event>>,
    /// Names of event types; [`Event::kind`] indexes it.
    pub event_types: Vec<String>,
    pub churn: Option<Grouped<Ts>>,
    pub summary: Summary,
}

/// Which optional tables a customer base (or a model) has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Present {
    pub logins: bool,
    pub tickets: bool,
    pub orders: bool,
    pub events: bool,
    pub churn: bool,
}

impl CustomerBase {
    /// Which optional tables are present.
    pub fn present(&self) -> Present {
        Present {
            logins: self.logins.is_some(),
            tickets: self.tickets.is_some(),
            orders: self.orders.is_some(),
            events: self.events.is_some(),
            churn: self.churn.is_some(),
        }
    }

    /// Everything known about customer `c`, as the feature code reads it.
    pub fn view(&self, c: usize) -> CustomerView<'_> {
        CustomerView {
            signup: self.customers.signup[c],
            logins: self.logins.as_ref().map_or(&[], |g| g.of(c)),
            tickets: self.tickets.as_ref().map_or(&[], |g| g.of(c)),
            orders: self.orders.as_ref().map_or(&[], |g| g.of(c)),
            events: self.events.as_ref().map_or(&[], |g| g.of(c)),
            churn: self.churn.as_ref().map_or(&[], |g| g.of(c)),
        }
    }

    /// The latest instant seen in any activity table (the end of the observed data).
    pub fn data_end(&self) -> Option<Ts> {
        self.summary.time_range.map(|(_, end)| end)
    }
}

/// One customer's rows, each slice sorted by time. Built from a [`CustomerBase`]
/// for batch work and from a request payload for the online path.
#[derive(Debug, Clone, Copy)]
pub struct CustomerView<'a> {
    pub signup: Ts,
    pub logins: &'a [Ts],
    pub tickets: &'a [Ticket],
    pub orders: &'a [Order],
    pub events: &'a [Event],
    pub churn: &'a [Ts],
}

/// Rows of `xs` strictly before `t` (the slice is sorted by time).
pub fn before<T: Timed>(xs: &[T], t: Ts) -> &[T] {
    let n = xs.partition_point(|r| r.time() < t);
    &xs[..n]
}

/// Rows of `xs` in `[from, to)`.
pub fn between<T: Timed>(xs: &[T], from: Ts, to: Ts) -> &[T] {
    let a = xs.partition_point(|r| r.time() < from);
    let b = xs.partition_point(|r| r.time() < to);
    &xs[a..b.max(a)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouping_sorts_each_customer_by_time() {
        let g = Grouped::build(3, &[2, 0, 2, 2], vec![30i64, 5, 10, 20]);
        assert_eq!(g.of(0), &[5]);
        assert_eq!(g.of(1), &[] as &[i64]);
        assert_eq!(g.of(2), &[10, 20, 30]);
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Row(i64, u32);
    impl Timed for Row {
        fn time(&self) -> Ts {
            self.0
        }
    }

    #[test]
    fn the_grouper_groups_like_a_stable_sort_for_any_number_of_customers() {
        for n in [1usize, 3, 63, 64, 65, 200, 1000] {
            // Pseudo-random customers and times with many ties; the second field numbers
            // the rows, so that equal times must keep their order.
            let mut x = 12345u64 + n as u64;
            let mut step = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            let len = 5 * n + 7;
            let customer: Vec<u32> = (0..len).map(|_| (step() % n as u64) as u32).collect();
            let rows: Vec<Row> = (0..len)
                .map(|i| Row((step() % 4) as i64, i as u32))
                .collect();
            // The obvious way: append per customer, then a stable sort by time.
            let mut want = vec![Vec::new(); n];
            for (&c, &r) in customer.iter().zip(&rows) {
                want[c as usize].push(r);
            }
            for w in &mut want {
                w.sort_by_key(|r| r.0);
            }
            let mut g = Grouper::new(n);
            for (&c, &r) in customer.iter().zip(&rows) {
                g.push(c, r);
            }
            assert_eq!(g.len(), len);
            let g = g.finish();
            assert_eq!(g.len(), len);
            for (c, w) in want.iter().enumerate() {
                assert_eq!(g.of(c), w.as_slice(), "n {n}, customer {c}");
            }
            assert_eq!(Grouped::build(n, &customer, rows).all(), g.all());
        }
        let empty = Grouper::<Row>::new(4).finish();
        assert!(empty.is_empty());
        assert!((0..4).all(|c| empty.of(c).is_empty()));
    }

    #[test]
    fn ids_differing_only_in_their_last_bytes_spread_over_buckets() {
        use std::hash::BuildHasher;
        let b = rustc_hash::FxBuildHasher;
        let mut low: Vec<u64> = (0..100_000)
            .map(|i| b.hash_one(format!("c{i:07}")) & 0xffff)
            .collect();
        low.sort_unstable();
        low.dedup();
        // 100k ids into 65,536 low-bit buckets: a good hash fills most of them.
        assert!(
            low.len() > 50_000,
            "{} distinct low 16-bit values",
            low.len()
        );
    }

    #[test]
    fn windows_are_half_open() {
        let xs = [1i64, 2, 3, 4];
        assert_eq!(before(&xs, 3), &[1, 2]);
        assert_eq!(between(&xs, 2, 4), &[2, 3]);
        assert_eq!(between(&xs, 4, 2), &[] as &[i64]);
    }
}
