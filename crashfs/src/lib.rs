//! A crash-simulating filesystem for tests: a FUSE daemon that serves a tree from memory and
//! records every change it receives, and a model that turns that record into the disk images
//! a power cut after any operation can leave (only what was synced, as POSIX promises, plus
//! any selection of the rest that the model allows; see [`model`]).
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use crashfs::{Disk, Image, model::{Attrs, Time}};
//! let mut tree = Image::default();
//! tree.add_file("a.txt".as_ref(), b"hello", Attrs::new(0o644, 0, 0, Time::now()));
//! let dir = std::path::Path::new("/tmp/mnt");
//! let fs = crashfs::mount(tree, dir, Disk::Honest)?;
//! // ... run the program under test on `dir` ...
//! let trace = fs.finish()?;
//! for state in trace.states(4, 1) {
//!     let image = trace.image(state);
//!     // ... check the invariants on `image` ...
//! #   let _ = image;
//! }
//! # Ok(()) }
//! ```

pub mod fs;
pub mod model;

pub use fs::{Disk, Mounted, mount};
pub use model::{Choice, CrashState, Image, Trace};

/// Prints the loud banner of a test that could not run here (no `/dev/fuse`, no right to
/// mount), in one write so that banners of parallel tests do not interleave.
pub fn skipped(test: &str, because: &str) {
    let because = because.lines().next().unwrap_or_default();
    let lines = [
        format!("SKIPPED {test}"),
        format!("because {because}"),
        "nothing was checked by this test (run it as root with /dev/fuse to check it)".to_string(),
    ];
    let w = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let bar = "*".repeat(w + 8);
    let mut banner = format!("\n{bar}\n");
    for l in &lines {
        banner.push_str(&format!("*** {l:<w$} ***\n"));
    }
    banner.push_str(&format!("{bar}\n"));
    eprint!("{banner}");
}
