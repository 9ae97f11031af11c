//! The names of temporaries: `.<name>.pqwrap-tmp-<16 hex>`, beside the file they replace.
//! Nothing that is not exactly such a name is ever removed as a leftover.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// The marker between the original name and the random suffix of a temporary.
pub const TEMP_MARKER: &str = ".pqwrap-tmp-";
/// Length of the suffix: 16 lowercase hex digits (64 bits, see [`temp_name_for`]).
const TEMP_RANDOM_HEX: usize = 16;
/// Linux NAME_MAX: a temporary's name must fit, so long original names are shortened in it.
const NAME_MAX: usize = 255;

/// Whether `name` is exactly a temporary's name: `.` + anything + `.pqwrap-tmp-` + 16
/// lowercase hex digits. Nothing else is ever removed by the store's leftover cleanup.
pub fn is_temp_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    let suffix_len = TEMP_MARKER.len() + TEMP_RANDOM_HEX;
    if b.len() < 1 + suffix_len || b.first() != Some(&b'.') {
        return false;
    }
    let (head, tail) = b.split_at(b.len() - suffix_len);
    let (marker, hex) = tail.split_at(TEMP_MARKER.len());
    !head.is_empty()
        && marker == TEMP_MARKER.as_bytes()
        && hex
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// A fresh temporary name for `name`: `.<name>.pqwrap-tmp-<16 hex digits>`, the name
/// shortened (by bytes) if the result would exceed NAME_MAX.
///
/// The 16 digits are a random 64-bit start, drawn once per process, plus a counter: unique
/// within the run and unguessable before it starts, without a `getrandom` call per file. They
/// need not be secret: the temporary is created with `O_EXCL | O_NOFOLLOW`, so a name someone
/// planted fails the create (which retries with [`random_temp_name_for`]) and is never
/// followed or written through.
pub fn temp_name_for(name: &OsStr) -> io::Result<OsString> {
    let start = match TEMP_START.get() {
        Some(s) => *s,
        None => {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
            *TEMP_START.get_or_init(|| u64::from_le_bytes(b))
        }
    };
    let n = TEMP_NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(temp_name_with(name, start.wrapping_add(n)))
}

/// This process's temporary-name sequence: a random start and how many names were taken.
static TEMP_START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
static TEMP_NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether `name` (a temporary's name) came from this process's [`temp_name_for`]: the walk
/// meets the job's own temporaries in directories it is still listing, and must neither
/// report them nor try to clean them up.
pub fn is_own_temp_name(name: &OsStr) -> bool {
    let Some(start) = TEMP_START.get() else {
        return false;
    };
    // The suffix is exactly 16 lowercase hex digits once the name is a temporary's.
    if !is_temp_name(name) {
        return false;
    }
    let b = name.as_bytes();
    let hex = b
        .get(b.len().saturating_sub(TEMP_RANDOM_HEX)..)
        .unwrap_or_default();
    let suffix = hex.iter().fold(0u64, |n, c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        };
        (n << 4) | u64::from(d)
    });
    suffix.wrapping_sub(*start) < TEMP_NEXT.load(std::sync::atomic::Ordering::Relaxed)
}

/// Like [`temp_name_for`], with all 64 bits of the suffix fresh from the OS.
pub fn random_temp_name_for(name: &OsStr) -> io::Result<OsString> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(temp_name_with(name, u64::from_le_bytes(b)))
}

fn temp_name_with(name: &OsStr, suffix: u64) -> OsString {
    let room = NAME_MAX - 1 - TEMP_MARKER.len() - TEMP_RANDOM_HEX;
    let base = name.as_bytes();
    let base = base.get(..room.min(base.len())).unwrap_or(base);
    let mut out = Vec::with_capacity(NAME_MAX);
    out.push(b'.');
    out.extend_from_slice(base);
    out.extend_from_slice(TEMP_MARKER.as_bytes());
    out.extend_from_slice(format!("{suffix:016x}").as_bytes());
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_round_trip_and_nothing_else_matches() {
        let t = temp_name_for(OsStr::new("secret.age")).unwrap();
        assert!(is_temp_name(&t), "{t:?}");
        assert!(t.as_bytes().starts_with(b".secret.age.pqwrap-tmp-"));
        assert_eq!(t.len(), 1 + 10 + TEMP_MARKER.len() + 16);
        for not in [
            "secret.age",
            ".secret.age.pqwrap-tmp-",
            ".secret.age.pqwrap-tmp-0123456789abcdeg",
            ".secret.age.pqwrap-tmp-0123456789ABCDEF",
            ".secret.age.pqwrap-tmp-0123456789abcdef0",
            "x.pqwrap-tmp-0123456789abcdef",
            "..pqwrap-tmp-0123456789abcdef",
        ] {
            let expect = not == "..pqwrap-tmp-0123456789abcdef";
            assert_eq!(is_temp_name(OsStr::new(not)), expect, "{not}");
        }
        // A name at NAME_MAX still gives a legal temporary name.
        let long = "a".repeat(255);
        let t = temp_name_for(OsStr::new(&long)).unwrap();
        assert_eq!(t.len(), 255);
        assert!(is_temp_name(&t));
        // Two calls differ.
        assert_ne!(
            temp_name_for(OsStr::new("x")).unwrap(),
            temp_name_for(OsStr::new("x")).unwrap()
        );
    }

    #[test]
    fn this_processs_own_temporaries_are_recognised() {
        let mine = temp_name_for(OsStr::new("f.age")).unwrap();
        assert!(is_own_temp_name(&mine));
        // Another process's sequence (or a planted name) is not ours.
        let suffix = u64::from_str_radix(
            std::str::from_utf8(&mine.as_bytes()[mine.len() - 16..]).unwrap(),
            16,
        )
        .unwrap();
        let far = temp_name_with(OsStr::new("f.age"), suffix.wrapping_add(1 << 40));
        assert!(!is_own_temp_name(&far));
        assert!(!is_own_temp_name(OsStr::new("f.age")));
    }
}
