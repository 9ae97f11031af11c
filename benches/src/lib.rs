//! Criterion benchmarks for pqwrap live in `benches/benches/`; run them with
//! `cargo bench -p pqwrap-benches` (or `--bench NAME` for one).
//!
//! This library holds what the benchmarks share: [`ThreadCpuTime`], a criterion measurement
//! of the CPU time the benchmark thread used.

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

/// Criterion's wall-clock formatter, reused for CPU time (both are durations).
static WALL: WallTime = WallTime;

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`) instead of wall-clock time.
///
/// The machines these benchmarks run on are shared: when other jobs hold the cores, a
/// wall-clock measurement counts the time the benchmark waited to be scheduled, which has
/// nothing to do with the code measured. The thread's CPU time leaves that out (it still
/// includes what sharing does to caches). The primitive, header, KEM and token benchmarks
/// use it, so that their figures compare across a run on a loaded machine.
pub struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}
