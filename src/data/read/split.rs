//! Customer buckets: a base too large for the memory budget is split into bucket
//! directories of the same tables, each holding every row of its customers, routed
//! exactly as the Spark job routes them (`pmod(xxhash64(customer_id), buckets)`, Spark's
//! XXH64 with seed 42 over the id's UTF-8 bytes), so a bucket is a small base the normal
//! loader reads.
//!
//! The split reads each table once, a Parquet file row group by row group (a CSV part
//! whole), and appends each batch's rows to the bucket files; memory holds one batch.

use super::cells::{read_parquet_columns, strings};
use super::{discover, BatchFile, Input, Part, BATCH_ROWS};
use crate::data::{is_csv, CustomerBase, Table};
use crate::{Error, Result};
use polars::prelude::*;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// The seed of Spark's `xxhash64` (`XxHash64(children, 42)`).
pub const SPARK_SEED: u64 = 42;

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn round(acc: u64, lane: u64) -> u64 {
    acc.wrapping_add(lane.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge_round(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// XXH64 of `data` (the reference algorithm, which Spark's `XXH64` implements): written
/// out here rather than taken from `xxhash-rust`, whose `xxh64` feature would rebuild
/// polars with a different feature set.
pub fn xxhash64(data: &[u8], seed: u64) -> u64 {
    let len = data.len();
    let mut i = 0;
    let mut h = if len >= 32 {
        let mut v = [
            seed.wrapping_add(P1).wrapping_add(P2),
            seed.wrapping_add(P2),
            seed,
            seed.wrapping_sub(P1),
        ];
        while i + 32 <= len {
            for (k, lane) in v.iter_mut().enumerate() {
                *lane = round(*lane, u64_at(data, i + 8 * k));
            }
            i += 32;
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for lane in v {
            h = merge_round(h, lane);
        }
        h
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len as u64);
    while i + 8 <= len {
        h ^= round(0, u64_at(data, i));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        i += 8;
    }
    if i + 4 <= len {
        let k = u32::from_le_bytes(data[i..i + 4].try_into().expect("4 bytes"));
        h ^= u64::from(k).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        i += 4;
    }
    for &byte in &data[i..] {
        h ^= u64::from(byte).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// The bucket of a customer among `buckets`: Spark's
/// `pmod(xxhash64(customer_id), buckets)`, the id as the loader keeps it (trimmed).
pub fn bucket_of(customer_id: &str, buckets: u32) -> u32 {
    let h = xxhash64(customer_id.as_bytes(), SPARK_SEED) as i64;
    h.rem_euclid(i64::from(buckets.max(1))) as u32
}

/// Bytes a loaded activity row takes, about (its customer index, time and values, the
/// grouping's copy): 2.1 GiB peak for the 85M rows of a 1M-customer base.
pub const BYTES_PER_ROW: u64 = 26;
/// Bytes a loaded customer takes besides its rows (id, index entry, attributes, its
/// features and score).
pub const BYTES_PER_CUSTOMER: u64 = 1024;
/// Bytes of a CSV line, about, where a CSV table's rows are counted from its size.
const CSV_BYTES_PER_ROW: u64 = 40;

/// Bytes the night's results take a customer, held for the whole base while the
/// buckets are scored in turn (id, score, reasons, the score file's and history's frames).
pub const BYTES_PER_RESULT: u64 = 1280;

/// The size of a base, counted from its files without reading their rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub customers: u64,
    pub activity_rows: u64,
}

impl Estimate {
    /// The memory a [`super::load`] of the base takes, about: [`BYTES_PER_CUSTOMER`] a
    /// customer and [`BYTES_PER_ROW`] an activity row.
    pub fn base_bytes(&self) -> u64 {
        self.customers * BYTES_PER_CUSTOMER + self.activity_rows * BYTES_PER_ROW
    }

    /// The buckets a base needs to stay within `budget` bytes: 1 when it fits whole,
    /// else enough for one bucket's base to fit beside the whole base's results
    /// ([`BYTES_PER_RESULT`] a customer; at least a quarter of the budget is left for
    /// the bucket).
    pub fn buckets(&self, budget: u64) -> u32 {
        let need = self.base_bytes();
        if need <= budget {
            return 1;
        }
        let room = budget
            .saturating_sub(self.customers * BYTES_PER_RESULT)
            .max(budget / 4)
            .max(1);
        need.div_ceil(room).clamp(2, 4096) as u32
    }
}

/// The [`Estimate`] of the base in `dir`: row counts from the Parquet footers, a CSV
/// file's rows from its size (40 bytes a line).
pub fn estimate(dir: &Path) -> Result<Estimate> {
    let (sources, _) = discover(dir)?;
    let mut est = Estimate {
        customers: 0,
        activity_rows: 0,
    };
    for src in &sources {
        let mut rows = 0u64;
        for part in &src.parts {
            if let Input::File(path) = part {
                rows += if is_csv(path) {
                    let size = std::fs::metadata(path)
                        .map_err(|e| Error::io(path, e))?
                        .len();
                    size / CSV_BYTES_PER_ROW
                } else {
                    BatchFile::open(path, BATCH_ROWS)?.parquet_rows() as u64
                };
            }
        }
        if src.table == Table::Customers {
            est.customers += rows;
        } else {
            est.activity_rows += rows;
        }
    }
    Ok(est)
}

/// A base split into buckets, in a temporary directory removed when this is dropped
/// (a run that fails removes it too).
pub struct Split {
    dir: tempfile::TempDir,
    buckets: u32,
    /// Per bucket, the row of each of its `customers` rows in the whole table (parts in
    /// name order): the order the whole base's customers come in.
    rows: Vec<Vec<u64>>,
}

impl Split {
    /// How many buckets.
    pub fn buckets(&self) -> u32 {
        self.buckets
    }

    /// The base directory of bucket `b`.
    pub fn dir(&self, b: u32) -> PathBuf {
        self.dir.path().join(format!("bucket={b:05}"))
    }

    /// The row in the whole `customers` table of each customer of `base`, loaded from
    /// bucket `b`: sorted by it, the buckets' customers come in the whole base's order.
    pub fn customer_rows(&self, b: u32, base: &CustomerBase) -> Result<Vec<u64>> {
        let rows = &self.rows[b as usize];
        let kept = &base.customers.ids;
        if kept.len() == rows.len() {
            return Ok(rows.clone());
        }
        // Rows were skipped as bad (--skip-bad-rows): match the kept ids in order.
        let path = self.dir(b).join("customers.parquet");
        let df = read_parquet_columns(&path, &["customer_id"])?;
        let part = Part {
            table: Table::Customers,
            file: path.display().to_string(),
            df,
        };
        let ids = strings(&part, "customer_id")?;
        let mut out = Vec::with_capacity(kept.len());
        for (r, id) in ids.iter().enumerate() {
            if out.len() < kept.len() && id.map(str::trim) == Some(kept[out.len()].as_str()) {
                out.push(rows[r]);
            }
        }
        Ok(out)
    }
}

/// Splits the base in `dir` into `buckets` bucket directories (every table present in
/// the base is present in each, maybe empty) under a temporary directory in `work`.
pub fn split(dir: &Path, buckets: u32, work: &Path) -> Result<Split> {
    let buckets = buckets.max(1);
    let (sources, _) = discover(dir)?;
    let tmp = tempfile::Builder::new()
        .prefix(".churnguard-buckets-")
        .tempdir_in(work)
        .map_err(|e| Error::io(work, e))?;
    let mut split = Split {
        dir: tmp,
        buckets,
        rows: vec![Vec::new(); buckets as usize],
    };
    for b in 0..buckets {
        let d = split.dir(b);
        std::fs::create_dir(&d).map_err(|e| Error::io(&d, e))?;
    }
    for src in &sources {
        split_table(&mut split, src.table, &src.parts)?;
    }
    Ok(split)
}

/// One table's parts, batch by batch, into each bucket's `<table>.parquet`.
fn split_table(split: &mut Split, table: Table, parts: &[Input]) -> Result<()> {
    let buckets = split.buckets;
    let file_of = |b: u32| split.dir(b).join(format!("{}.parquet", table.name()));
    let paths: Vec<PathBuf> = (0..buckets).map(file_of).collect();
    let mut writers: Option<Vec<polars::io::parquet::write::BatchedWriter<std::fs::File>>> = None;
    let mut first_row = 0u64;
    let rows = &mut split.rows;
    for part in parts {
        let Input::File(path) = part else {
            return Err(Error::Data("a base in memory is not split".into()));
        };
        let mut file = BatchFile::open(path, BATCH_ROWS)?;
        file.read_csv()?;
        let names = file.names.clone();
        let wanted: Vec<&str> = names.iter().map(String::as_str).collect();
        let polars = |e| Error::polars(format!("splitting {} into buckets", path.display()), e);
        file.for_each(path, &wanted, |_, df| {
            let route = route(&df, buckets).map_err(polars)?;
            if writers.is_none() {
                let schema = df.schema().clone();
                let mut ws = Vec::with_capacity(paths.len());
                for p in &paths {
                    let f = std::fs::File::create(p).map_err(|e| Error::io(p, e))?;
                    ws.push(ParquetWriter::new(f).batched(&schema).map_err(polars)?);
                }
                writers = Some(ws);
            }
            let ws = writers.as_mut().expect("opened above");
            let mut take: Vec<Vec<IdxSize>> = vec![Vec::new(); buckets as usize];
            for (i, &b) in route.iter().enumerate() {
                take[b as usize].push(i as IdxSize);
                if table == Table::Customers {
                    rows[b as usize].push(first_row + i as u64);
                }
            }
            first_row += df.height() as u64;
            for (b, idx) in take.into_iter().enumerate() {
                if idx.is_empty() {
                    continue;
                }
                let rows = df
                    .take(&IdxCa::from_vec(PlSmallStr::EMPTY, idx))
                    .map_err(polars)?;
                ws[b].write_batch(&rows).map_err(|e| {
                    Error::polars(
                        format!(
                            "{}: its columns differ from the first part's of table `{}`",
                            path.display(),
                            table.name()
                        ),
                        e,
                    )
                })?;
            }
            Ok(())
        })?;
    }
    for (w, p) in writers.into_iter().flatten().zip(&paths) {
        w.finish()
            .map_err(|e| Error::polars(format!("writing {}", p.display()), e))?;
    }
    Ok(())
}

/// The bucket of each row of `df` by its `customer_id` (cast to text, as Spark's
/// `cast("string")`); a row without one goes to bucket 0 (the loader refuses or skips it
/// wherever it is).
fn route(df: &DataFrame, buckets: u32) -> PolarsResult<Vec<u32>> {
    let Ok(col) = df.column("customer_id") else {
        return Ok(vec![0; df.height()]);
    };
    let ids = col.cast(&DataType::String)?;
    let ids = ids.str()?;
    let ids: Vec<Option<&str>> = ids.iter().collect();
    Ok(ids
        .par_iter()
        .map(|id| {
            id.map(str::trim)
                .filter(|s| !s.is_empty())
                .map_or(0, |s| bucket_of(s, buckets))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxhash64_matches_the_reference_vectors() {
        // The XXH64 reference implementation's outputs (seed 0).
        assert_eq!(xxhash64(b"", 0), 0xEF46_DB37_51D8_E999);
        assert_eq!(xxhash64(b"abc", 0), 0x44BC_2CF5_AD77_0999);
    }

    #[test]
    fn a_base_within_the_budget_is_one_bucket_and_a_larger_one_is_split_to_fit() {
        let est = Estimate {
            customers: 1_000_000,
            activity_rows: 85_000_000,
        };
        let need = est.base_bytes();
        assert_eq!(est.buckets(need), 1);
        assert_eq!(est.buckets(u64::MAX), 1);
        // 2 GiB less 1.28 GB of results leaves about 0.86 GB a bucket.
        let four = 4u64 << 30;
        let n = est.buckets(four / 2);
        assert!(n >= 2, "{n}");
        let room = four / 2 - est.customers * BYTES_PER_RESULT;
        assert_eq!(u64::from(n), need.div_ceil(room));
        // Results larger than the budget: a quarter of it for each bucket.
        assert_eq!(u64::from(est.buckets(1 << 20)), 4096);
    }

    /// Real `pyspark` 4.3.0 outputs (local[1]) of
    /// `df.select(F.xxhash64(F.col("customer_id").cast("string")),
    /// F.pmod(F.xxhash64(...), F.lit(64)), F.pmod(F.xxhash64(...), F.lit(7)))`.
    const SPARK: [(&str, i64, u32, u32); 8] = [
        ("c1", -5378146843324628670, 2, 4),
        ("c2", -5295398315942512871, 25, 5),
        ("", -7444071767201028348, 4, 3),
        ("abc", 1423657621850124518, 38, 4),
        ("customer_000001", -2117539302312627792, 48, 3),
        ("C000123", -3596959022439751516, 36, 5),
        (
            "a-much-longer-customer-identifier-0123456789",
            -4635616318640703562,
            54,
            2,
        ),
        ("ünïcode-kunde", -6232163822200892689, 47, 6),
    ];

    #[test]
    fn the_bucket_is_sparks_pmod_of_xxhash64() {
        for (id, hash, b64, b7) in SPARK {
            assert_eq!(xxhash64(id.as_bytes(), SPARK_SEED) as i64, hash, "{id:?}");
            assert_eq!(bucket_of(id, 64), b64, "{id:?}");
            assert_eq!(bucket_of(id, 7), b7, "{id:?}");
        }
    }
}
