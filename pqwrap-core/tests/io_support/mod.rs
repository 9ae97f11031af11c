//! A writer that fails once, for the tests of what the encryptors do after a failed write.

use std::cell::RefCell;
use std::io::{self, Write};
use std::rc::Rc;

/// A writer whose first write longer than `threshold` bytes fails with `WouldBlock` (as a
/// non-blocking pipe or a full disk would), then accepts everything. What it accepted stays
/// readable through the buffer [`FailsOnce::new`] returns.
pub struct FailsOnce {
    out: Rc<RefCell<Vec<u8>>>,
    threshold: usize,
    failed: bool,
}

impl FailsOnce {
    /// The writer, and the buffer of what it accepted.
    pub fn new(threshold: usize) -> (FailsOnce, Rc<RefCell<Vec<u8>>>) {
        let out = Rc::new(RefCell::new(Vec::new()));
        let w = FailsOnce {
            out: Rc::clone(&out),
            threshold,
            failed: false,
        };
        (w, out)
    }
}

impl Write for FailsOnce {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if !self.failed && b.len() > self.threshold {
            self.failed = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.out.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
