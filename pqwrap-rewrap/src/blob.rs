//! Random-access bytes: what a format reads from a store (an original file, a staged
//! replacement, an object), without knowing where they are.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

/// Bytes readable at any offset, of a length fixed when they were opened (a file's size at
/// its snapshot, the bytes written to a temporary, an object's `Content-Length`).
///
/// Readers stop at [`Blob::len`]: bytes appended after the snapshot are never read, and the
/// commit's change check sees the size move.
pub trait Blob: Sync {
    /// The length of the bytes, as of when they were opened.
    fn len(&self) -> u64;

    /// Whether [`Blob::len`] is zero.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads up to `buf.len()` bytes at `offset` (fewer at the end, or if the underlying bytes
    /// shrank); 0 at or past the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

/// A file with the length it had when it was opened.
#[derive(Debug)]
pub struct FileBlob<'a> {
    /// The open file.
    pub file: &'a File,
    /// Its length when snapshotted (or the bytes written to it).
    pub len: u64,
}

impl Blob for FileBlob<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_file_at(self.file, self.len, buf, offset)
    }
}

/// `pread` of at most what is left before `len`.
pub(crate) fn read_file_at(
    file: &File,
    len: u64,
    buf: &mut [u8],
    offset: u64,
) -> io::Result<usize> {
    let left = usize::try_from(len.saturating_sub(offset)).unwrap_or(usize::MAX);
    let want = buf.len().min(left);
    if want == 0 {
        return Ok(0);
    }
    file.read_at(buf.get_mut(..want).unwrap_or_default(), offset)
}

fn read_slice_at(bytes: &[u8], buf: &mut [u8], offset: u64) -> usize {
    let Ok(start) = usize::try_from(offset) else {
        return 0;
    };
    let src = bytes.get(start..).unwrap_or_default();
    let n = src.len().min(buf.len());
    buf.get_mut(..n)
        .unwrap_or_default()
        .copy_from_slice(src.get(..n).unwrap_or_default());
    n
}

/// Bytes in memory.
impl Blob for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        Ok(read_slice_at(self, buf, offset))
    }
}

/// Bytes in memory.
impl Blob for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        Ok(read_slice_at(self, buf, offset))
    }
}

/// A sequential reader over a [`Blob`] from an offset to its end, by positioned reads:
/// independent of any cursor and of other readers.
pub struct BlobReader<'a> {
    blob: &'a dyn Blob,
    pos: u64,
}

impl<'a> BlobReader<'a> {
    /// Reads `blob` from its start.
    pub fn new(blob: &'a dyn Blob) -> Self {
        BlobReader { blob, pos: 0 }
    }

    /// Reads `blob` from `offset`.
    pub fn at(blob: &'a dyn Blob, offset: u64) -> Self {
        BlobReader { blob, pos: offset }
    }
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.blob.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// The first bytes already read (see [`read_head`]), then the rest of `blob`: one reader for
/// a header and what follows, with no byte read twice.
pub fn reader_after<'a>(head: &'a [u8], blob: &'a dyn Blob) -> io::Chain<&'a [u8], BlobReader<'a>> {
    head.chain(BlobReader::at(blob, head.len() as u64))
}

/// Reads the first `min(blob.len(), buf.len())` bytes (fewer only if the bytes shrank):
/// trusting the length saves the read that would find the end of a small file.
pub fn read_head(blob: &dyn Blob, buf: &mut [u8]) -> io::Result<usize> {
    let want = usize::try_from(blob.len()).map_or(buf.len(), |s| s.min(buf.len()));
    let mut got = 0;
    while got < want {
        let n = blob.read_at(buf.get_mut(got..want).unwrap_or_default(), got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub fn read_exact_at(blob: &dyn Blob, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let n = blob.read_at(buf.get_mut(got..).unwrap_or_default(), offset + got as u64)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "fewer bytes than expected",
            ));
        }
        got += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_stop_at_the_length_and_chain_after_the_head() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let first = &bytes[..100];
        let blob: &dyn Blob = &first;
        let mut head = [0u8; 10];
        assert_eq!(read_head(blob, &mut head).unwrap(), 10);
        let mut all = Vec::new();
        reader_after(&head, blob).read_to_end(&mut all).unwrap();
        assert_eq!(all, &bytes[..100]);
        let mut big = [0u8; 300];
        assert_eq!(read_head(blob, &mut big).unwrap(), 100);
        let mut three = [0u8; 3];
        read_exact_at(blob, &mut three, 97).unwrap();
        assert_eq!(three, [97, 98, 99]);
        assert!(read_exact_at(blob, &mut three, 98).is_err());
    }
}
