//! The server's own floor for re-wrapping a large object: one object replaced by itself
//! through a multipart upload made only of server-side ranged copies (`UploadPartCopy`), in
//! parts of `PART_MIB`, `AT_ONCE` copies in flight, committed with `If-Match` on the ETag
//! read. These are the requests the s3 store makes for a large object, without the header,
//! the first part through the client, the checks and the read-back: what is left is the
//! server's copying, which no client can go below.
//!
//! ```sh
//! # Endpoint and credentials as for `pqwrap rewrap s3://...` (AWS_ENDPOINT_URL etc.):
//! cargo run --release -p pqwrap-rewrap --features s3 --example s3_copy_floor -- \
//!     s3://BUCKET/KEY [PART_MIB [AT_ONCE]]
//! ```
//!
//! Defaults: the store's `COPY_PART` and `COPIES_AT_ONCE`. Prints the time of each phase;
//! time the whole process with hyperfine. The object keeps its bytes (it is replaced by a
//! copy of itself) but gets a new ETag.

use std::time::Instant;

use pqwrap_rewrap::store::s3::{
    COPIES_AT_ONCE, COPY_PART, Location, Meta, OldVersions, PART_MIN, S3Config, S3Error, S3Store,
    Selection,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: s3_copy_floor s3://BUCKET/KEY [PART_MIB [AT_ONCE]]";
    let url = args.first().ok_or(usage)?;
    let part: u64 = match args.get(1) {
        Some(m) => m.parse::<u64>()? << 20,
        None => COPY_PART,
    };
    let at_once: usize = match args.get(2) {
        Some(n) => n.parse()?,
        None => COPIES_AT_ONCE,
    };
    if part < PART_MIN || at_once == 0 {
        return Err(format!("{usage}: parts of at least 5 MiB, at least one at once").into());
    }
    let location = Location::parse(url)?;
    let key = location.prefix.clone();
    let env = std::env::vars().collect();
    let store = S3Store::connect(
        S3Config {
            location,
            selection: Selection::Prefix,
            shard: None,
            old_versions: OldVersions::Keep,
            exclude: Vec::new(),
            connections: at_once,
            retry: Default::default(),
        },
        &env,
    )?;
    let client = store.client();

    let t0 = Instant::now();
    let (pin, len) = client.head(&key)?.ok_or("no such object")?;
    // S3 numbers parts 1 to 10,000.
    let n_parts = u32::try_from(len.div_ceil(part))
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or("the object needs 1 to 10,000 parts of this size")?;
    let (id, _) = client.create_multipart(&key, &Meta::default())?;
    let ranges: Vec<(u32, (u64, u64))> = (0..n_parts)
        .map(|i| {
            let start = u64::from(i) * part;
            (i + 1, (start, (start + part).min(len)))
        })
        .collect();
    let t1 = Instant::now();
    // In batches of `at_once`, each waited for whole before the next, as the store does.
    let copied: Result<Vec<(u32, String)>, S3Error> = ranges
        .chunks(at_once)
        .map(|batch| {
            std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|&(n, range)| {
                        let (key, id, pin) = (&key, &id, &pin);
                        scope.spawn(move || {
                            client
                                .upload_part_copy(key, id, n, key, pin, range)
                                .map(|etag| (n, etag))
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or(Err(S3Error::BadResponse {
                            op: "UploadPartCopy",
                            what: "the copying thread panicked",
                        }))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .collect::<Result<Vec<Vec<_>>, _>>()
        .map(|v| v.into_iter().flatten().collect());
    let parts = match copied {
        Ok(p) => p,
        Err(e) => {
            let _ = client.abort(&key, &id);
            return Err(e.into());
        }
    };
    let t2 = Instant::now();
    if let Err(e) = client.complete(&key, &id, &parts, &pin.etag) {
        let _ = client.abort(&key, &id);
        return Err(e.into());
    }
    let t3 = Instant::now();
    let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
    println!(
        "{len} bytes in {} parts of {} MiB, {at_once} at once: setup {:.3} s, copies {:.3} s \
         ({:.0} MiB/s), complete {:.3} s, total {:.3} s",
        parts.len(),
        part >> 20,
        secs(t0, t1),
        secs(t1, t2),
        len as f64 / (1 << 20) as f64 / secs(t1, t2),
        secs(t2, t3),
        secs(t0, t3),
    );
    Ok(())
}
