//! Load generator for a running broker, with an in-process signing baseline measured in the
//! same run.
//!
//! `cargo run --release -p pqwrap-broker --example load -- SOCKET MANIFEST AUD [CLIENTS] [REQUESTS]`
//!
//! CLIENTS threads (default 50) share REQUESTS token requests (default 10,000), each on its
//! own connection, as agents do. It prints one JSON object: latency percentiles of the
//! requests, tokens per second, and the baseline — the same manifest signed in this process
//! by `Issuer::issue` on as many threads as the machine has cores, which is what a broker
//! could reach if attestation, policy, journal, audit and the socket were free.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pqwrap_broker::client;
use pqwrap_broker::proto::{IssueRequest, Request, Response};
use pqwrap_core::token::{Algorithm, Issuer, Manifest, SigningKey, unix_now};

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, manifest, aud, rest @ ..] = args.as_slice() else {
        return Err("usage: load SOCKET MANIFEST AUD [CLIENTS] [REQUESTS]".into());
    };
    let clients: usize = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(50);
    let requests: usize = rest
        .get(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let manifest_text = std::fs::read_to_string(manifest)?;
    let req = Request::Issue(IssueRequest {
        manifest: manifest_text.clone(),
        aud: aud.clone(),
        ttl: None,
        parent: None,
    });

    let next = Arc::new(AtomicUsize::new(0));
    let lat = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let failures = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (next, lat, failures) = (next.clone(), lat.clone(), failures.clone());
            let (socket, req) = (socket.clone(), req.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::SeqCst) < requests {
                    let t = Instant::now();
                    match client::call(socket.as_ref(), &req, Duration::from_secs(60)) {
                        Ok(Response::Issued(_)) => mine.push(t.elapsed()),
                        _ => {
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                if let Ok(mut l) = lat.lock() {
                    l.extend(mine);
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let wall = start.elapsed();
    let mut lat = lat.lock().map_err(|_| "poisoned")?.clone();
    lat.sort();

    // Baseline: sign the same manifest in-process on every core, for as many tokens.
    let m = Manifest::from_json(&manifest_text)?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let issuer = Arc::new(Issuer::new(SigningKey::generate(Algorithm::MlDsa65)?));
    let count = Arc::new(AtomicUsize::new(0));
    let bstart = Instant::now();
    let signers: Vec<_> = (0..cores)
        .map(|_| {
            let (issuer, count, m, aud) = (issuer.clone(), count.clone(), m.clone(), aud.clone());
            std::thread::spawn(move || {
                while count.fetch_add(1, Ordering::SeqCst) < requests {
                    let _ = issuer.issue(&m, &aud, Duration::from_secs(600), unix_now(), None);
                }
            })
        })
        .collect();
    for s in signers {
        let _ = s.join();
    }
    let bwall = bstart.elapsed();
    let ok = lat.len();
    let tps = ok as f64 / wall.as_secs_f64();
    let base_tps = requests as f64 / bwall.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "clients": clients, "requests": requests, "issued": ok,
            "failures": failures.load(Ordering::SeqCst),
            "wall_s": wall.as_secs_f64(), "tokens_per_s": tps,
            "latency_ms": {"p50": percentile(&lat, 0.50), "p90": percentile(&lat, 0.90),
                           "p99": percentile(&lat, 0.99), "max": percentile(&lat, 1.0)},
            "baseline_in_process_tokens_per_s": base_tps, "baseline_threads": cores,
            "broker_over_baseline": tps / base_tps,
        })
    );
    Ok(())
}
