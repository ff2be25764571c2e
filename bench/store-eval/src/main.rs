//! store-eval: redb vs fjall for the regmesh location store.
//!
//! Measures, for each engine, what the location store needs from it:
//!
//! 1. group-commit throughput: batches of ~200-byte binding records
//!    upserted over a pre-filled table, one fsync per batch, at batch sizes
//!    1, 32 and 256 (records/s, commits/s, mean and p99 commit latency);
//! 2. full-table load time for 1,000,000 records (open + iterate every
//!    row, copying key and value out, as the store's startup does);
//! 3. the on-disk size of those 1,000,000 records.
//!
//! Usage: `store-eval [--records N] [--seconds S] [--dir PATH]`
//! (defaults 1,000,000 records, 3 s per throughput point, a fresh folder in
//! the system temp dir). Not part of the regmesh workspace; see README.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VALUE_LEN: usize = 200;
const PREFILL: u64 = 100_000;
const BATCH_SIZES: [usize; 3] = [1, 32, 256];
const MAX_COMMITS: usize = 5_000;

const REDB_TABLE: redb::TableDefinition<'_, &[u8], &[u8]> = redb::TableDefinition::new("bindings");

struct Args {
    records: u64,
    seconds: f64,
    dir: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        records: 1_000_000,
        seconds: 3.0,
        dir: std::env::temp_dir().join(format!("store-eval-{}", std::process::id())),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--records" => args.records = v.parse().expect("--records N"),
            "--seconds" => args.seconds = v.parse().expect("--seconds S"),
            "--dir" => args.dir = PathBuf::from(v),
            other => panic!("unknown argument {other}"),
        }
    }
    args
}

/// Key like the store's: `aor \0 contact`.
fn key(i: u64) -> Vec<u8> {
    format!(
        "user{i:07}@example.com\0sip:user{i:07}@10.{}.{}.{}:5060;transport=udp",
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
    .into_bytes()
}

/// A ~200-byte value with some structure (strings and numbers), not all zeros,
/// so compression does not flatter either engine.
fn value(i: u64, gen_: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(VALUE_LEN);
    v.push(1u8);
    v.extend_from_slice(&(gen_ << 16 | 7).to_le_bytes());
    v.extend_from_slice(
        format!("call-{i:x}-{gen_:x}@host.example.net;UA=Linphone/5.2 (belle-sip/5.2)").as_bytes(),
    );
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ gen_;
    while v.len() < VALUE_LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    v
}

/// Tiny deterministic PRNG for picking keys.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Throughput {
    batch: usize,
    commits: usize,
    elapsed: Duration,
    mean: Duration,
    p99: Duration,
}

impl Throughput {
    fn print(&self, engine: &str) {
        let secs = self.elapsed.as_secs_f64();
        println!(
            "{engine:5} batch={:3}  commits={:5}  {:9.0} records/s  {:7.0} commits/s  mean {:7.3} ms  p99 {:7.3} ms",
            self.batch,
            self.commits,
            (self.commits * self.batch) as f64 / secs,
            self.commits as f64 / secs,
            self.mean.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
        );
    }
}

fn run_throughput(
    batch: usize,
    seconds: f64,
    mut commit: impl FnMut(&[(Vec<u8>, Vec<u8>)]),
) -> Throughput {
    let mut rng = Rng(0x1234_5678 ^ batch as u64);
    let mut lat = Vec::new();
    let start = Instant::now();
    let mut gen_ = 1u64;
    while start.elapsed().as_secs_f64() < seconds && lat.len() < MAX_COMMITS {
        let rows: Vec<_> = (0..batch)
            .map(|_| {
                let i = rng.next() % PREFILL;
                (key(i), value(i, gen_))
            })
            .collect();
        gen_ += 1;
        let t = Instant::now();
        commit(&rows);
        lat.push(t.elapsed());
    }
    let elapsed = start.elapsed();
    let commits = lat.len();
    let mean = lat.iter().sum::<Duration>() / commits as u32;
    lat.sort();
    let p99 = lat[(commits * 99 / 100).min(commits - 1)];
    Throughput {
        batch,
        commits,
        elapsed,
        mean,
        p99,
    }
}

fn dir_size(p: &Path) -> u64 {
    let meta = std::fs::metadata(p).expect("stat");
    if meta.is_file() {
        return meta.len();
    }
    std::fs::read_dir(p)
        .expect("read_dir")
        .map(|e| dir_size(&e.expect("dir entry").path()))
        .sum()
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------- redb

fn redb_fill(db: &redb::Database, n: u64) {
    const CHUNK: u64 = 100_000;
    let mut i = 0;
    while i < n {
        let tx = db.begin_write().expect("begin");
        {
            let mut t = tx.open_table(REDB_TABLE).expect("table");
            for j in i..(i + CHUNK).min(n) {
                t.insert(key(j).as_slice(), value(j, 0).as_slice())
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
        i += CHUNK;
    }
}

fn redb_eval(args: &Args) {
    let path = args.dir.join("tp.redb");
    let db = redb::Database::create(&path).expect("create");
    redb_fill(&db, PREFILL);
    for &b in &BATCH_SIZES {
        run_throughput(b, args.seconds, |rows| {
            let mut tx = db.begin_write().expect("begin");
            tx.set_durability(redb::Durability::Immediate)
                .expect("durability");
            {
                let mut t = tx.open_table(REDB_TABLE).expect("table");
                for (k, v) in rows {
                    t.insert(k.as_slice(), v.as_slice()).expect("insert");
                }
            }
            tx.commit().expect("commit");
        })
        .print("redb");
    }
    drop(db);
    println!(
        "redb  throughput file after run: {:.1} MiB",
        mib(dir_size(&path))
    );

    let path = args.dir.join("load.redb");
    let t = Instant::now();
    {
        let db = redb::Database::create(&path).expect("create");
        redb_fill(&db, args.records);
    }
    println!(
        "redb  fill {} records (chunks of 100k): {:.2} s",
        args.records,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let (rows, bytes) = {
        use redb::{ReadableDatabase, ReadableTable};
        let db = redb::Database::create(&path).expect("open");
        let rx = db.begin_read().expect("read");
        let table = rx.open_table(REDB_TABLE).expect("table");
        let mut rows = 0u64;
        let mut bytes = 0usize;
        let mut out = Vec::with_capacity(args.records as usize);
        for r in table.iter().expect("iter") {
            let (k, v) = r.expect("row");
            let (k, v) = (k.value().to_vec(), v.value().to_vec());
            rows += 1;
            bytes += k.len() + v.len();
            out.push((k, v));
        }
        (rows, bytes)
    };
    println!(
        "redb  load {rows} records ({:.0} MiB payload): {:.2} s (open + full scan, warm page cache)",
        mib(bytes as u64),
        t.elapsed().as_secs_f64()
    );
    println!(
        "redb  file size for {} records: {:.1} MiB",
        args.records,
        mib(dir_size(&path))
    );
}

// ---------------------------------------------------------------- fjall

fn fjall_open(path: &Path) -> (fjall::Database, fjall::Keyspace) {
    let db = fjall::Database::builder(path).open().expect("open");
    let ks = db
        .keyspace("bindings", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    (db, ks)
}

fn fjall_fill(db: &fjall::Database, ks: &fjall::Keyspace, n: u64) {
    const CHUNK: u64 = 100_000;
    let mut i = 0;
    while i < n {
        let mut b = db.batch();
        for j in i..(i + CHUNK).min(n) {
            b.insert(ks, key(j), value(j, 0));
        }
        b.commit().expect("commit");
        i += CHUNK;
    }
    db.persist(fjall::PersistMode::SyncAll).expect("persist");
}

fn fjall_eval(args: &Args) {
    let path = args.dir.join("tp.fjall");
    let (db, ks) = fjall_open(&path);
    fjall_fill(&db, &ks, PREFILL);
    for &b in &BATCH_SIZES {
        run_throughput(b, args.seconds, |rows| {
            let mut batch = db.batch().durability(Some(fjall::PersistMode::SyncData));
            for (k, v) in rows {
                batch.insert(&ks, k.as_slice(), v.as_slice());
            }
            batch.commit().expect("commit");
        })
        .print("fjall");
    }
    drop(ks);
    drop(db);
    println!(
        "fjall throughput dir after run: {:.1} MiB",
        mib(dir_size(&path))
    );

    let path = args.dir.join("load.fjall");
    let t = Instant::now();
    {
        let (db, ks) = fjall_open(&path);
        fjall_fill(&db, &ks, args.records);
    }
    println!(
        "fjall fill {} records (batches of 100k): {:.2} s",
        args.records,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let (rows, bytes) = {
        let (_db, ks) = fjall_open(&path);
        let mut rows = 0u64;
        let mut bytes = 0usize;
        let mut out = Vec::with_capacity(args.records as usize);
        for g in ks.iter() {
            let (k, v) = g.into_inner().expect("row");
            let (k, v) = (k.to_vec(), v.to_vec());
            rows += 1;
            bytes += k.len() + v.len();
            out.push((k, v));
        }
        (rows, bytes)
    };
    println!(
        "fjall load {rows} records ({:.0} MiB payload): {:.2} s (open + full scan, warm page cache)",
        mib(bytes as u64),
        t.elapsed().as_secs_f64()
    );
    println!(
        "fjall dir size for {} records: {:.1} MiB",
        args.records,
        mib(dir_size(&path))
    );
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.dir).expect("mkdir");
    println!(
        "store-eval: {} records, value {} bytes, key ~{} bytes, {} s per throughput point, dir {}",
        args.records,
        VALUE_LEN,
        key(0).len(),
        args.seconds,
        args.dir.display()
    );
    redb_eval(&args);
    fjall_eval(&args);
    std::fs::remove_dir_all(&args.dir).expect("cleanup");
}
