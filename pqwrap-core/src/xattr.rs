//! Extended attributes carried from a file to the new file that replaces it (the atomic
//! rewrite of [`crate::envelope::rewrap_path`], and `pqwrap rewrap`'s commit).
//!
//! They are carried all or nothing: a POSIX ACL lives in an extended attribute
//! (`system.posix_acl_access`), and a replacement without it would be governed by its mode
//! bits alone, whose group bits are the ACL's mask — possibly wider access than before.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

/// Copies every extended attribute of `src` to `dst`. A filesystem without extended
/// attributes has none to copy (`Ok`); failing to set one is an error naming it.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let (a, b) = (tempfile::tempfile()?, tempfile::tempfile()?);
/// pqwrap_core::xattr::copy_all(&a, &b)?;
/// # Ok(())
/// # }
/// ```
pub fn copy_all(src: &File, dst: &File) -> io::Result<()> {
    let names = match list(src) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(Errno::OPNOTSUPP.raw_os_error()) => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = OsStr::from_bytes(name);
        let value = get(src, name)?;
        rustix::fs::fsetxattr(dst, name, &value, XattrFlags::empty()).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!(
                    "cannot carry extended attribute {}: {e}",
                    name.to_string_lossy()
                ),
            )
        })?;
    }
    Ok(())
}

/// The NUL-separated names of `file`'s extended attributes.
fn list(file: &File) -> io::Result<Vec<u8>> {
    loop {
        let n = rustix::fs::flistxattr_query(file)?;
        if n == 0 {
            return Ok(Vec::new()); // the usual case: no second call
        }
        let mut buf = vec![0u8; n];
        match rustix::fs::flistxattr(file, &mut buf[..]) {
            Ok(got) => {
                buf.truncate(got);
                return Ok(buf);
            }
            // Grew between the two calls.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn get(file: &File, name: &OsStr) -> io::Result<Vec<u8>> {
    loop {
        let n = rustix::fs::fgetxattr_query(file, name)?;
        let mut buf = vec![0u8; n];
        match rustix::fs::fgetxattr(file, name, &mut buf[..]) {
            Ok(got) => {
                buf.truncate(got);
                return Ok(buf);
            }
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
