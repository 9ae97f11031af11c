//! The agent's process tree, and ending it.
//!
//! The supervisor is a child subreaper (`PR_SET_CHILD_SUBREAPER`): a process of the tree
//! that forks and detaches (double fork, `setsid`) is reparented to the supervisor, not to
//! init, so every process the agent ever started stays a descendant of the supervisor. The
//! tree is found through the parent links in `/proc`, signalled, and its exits reaped here.
//! No privilege, cgroup delegation or user namespace is needed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};

/// Time between SIGTERM and SIGKILL when the tree is ended.
pub const GRACE: Duration = Duration::from_millis(500);

/// The live (non-zombie) descendants of `root`, from `/proc/*/stat`.
pub fn descendants(root: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<i32, Vec<(i32, bool)>> = HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').and_then(|i| stat.get(i + 1..)) else {
            continue;
        };
        let mut f = after.split_whitespace();
        let (Some(state), Some(ppid)) = (f.next(), f.next().and_then(|p| p.parse::<i32>().ok()))
        else {
            continue;
        };
        children.entry(ppid).or_default().push((pid, state == "Z"));
    }
    let mut out = Vec::new();
    let mut stack = vec![root.as_raw_nonzero().get()];
    while let Some(p) = stack.pop() {
        for &(c, zombie) in children.get(&p).into_iter().flatten() {
            stack.push(c);
            if !zombie && let Some(pid) = Pid::from_raw(c) {
                out.push(pid);
            }
        }
    }
    out
}

/// Sends `sig` to each of `pids` (ones already gone are skipped).
pub fn signal_all(pids: &[Pid], sig: Signal) {
    for &p in pids {
        let _ = rustix::process::kill_process(p, sig);
    }
}

/// Reaps every exited child without blocking; `main`'s status is returned if it was among them.
pub fn reap(main: Pid) -> Option<WaitStatus> {
    let mut status = None;
    while let Ok(Some((pid, st))) = rustix::process::wait(WaitOptions::NOHANG) {
        if pid == main {
            status = Some(st);
        }
    }
    status
}

/// How long SIGKILL is repeated before the survivors are reported (a process blocked in the
/// kernel, e.g. on a dead network file system, dies only when the kernel lets it).
pub const KILL_PATIENCE: Duration = Duration::from_secs(10);

/// What [`end_all`] did.
#[derive(Debug, Default)]
pub struct Ended {
    /// Processes that were alive when it began.
    pub signalled: usize,
    /// Processes still alive after [`KILL_PATIENCE`] of SIGKILL (normally 0).
    pub survivors: usize,
    /// The main child's status, if it was reaped meanwhile.
    pub main_status: Option<WaitStatus>,
}

/// Ends every descendant of `root`: SIGTERM, up to [`GRACE`] for them to exit, then SIGKILL
/// until none is left (repeated, so that a process forked meanwhile is caught too).
pub fn end_all(root: Pid, main: Pid) -> Ended {
    let mut ended = Ended {
        main_status: reap(main),
        ..Ended::default()
    };
    let first = descendants(root);
    ended.signalled = first.len();
    if first.is_empty() {
        return ended;
    }
    signal_all(&first, Signal::TERM);
    let until = Instant::now() + GRACE;
    while Instant::now() < until {
        ended.main_status = reap(main).or(ended.main_status);
        if descendants(root).is_empty() {
            return ended;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let until = Instant::now() + KILL_PATIENCE;
    loop {
        let left = descendants(root);
        if left.is_empty() || Instant::now() >= until {
            ended.survivors = left.len();
            break;
        }
        signal_all(&left, Signal::KILL);
        std::thread::sleep(Duration::from_millis(5));
        ended.main_status = reap(main).or(ended.main_status);
    }
    ended.main_status = reap(main).or(ended.main_status);
    ended
}
