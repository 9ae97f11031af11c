//! Which implementation computes each cryptographic primitive in this build, so that a
//! binary can tell a reviewer what it runs (`pqwrap --version` prints this list).
//!
//! The list is kept by hand, in this one place: whoever changes a cryptographic dependency
//! of the core changes its line here. `tests/backends.rs` fails when a version here differs
//! from the workspace's `Cargo.lock`, or when the core gains a dependency that is neither
//! listed here nor known to be non-cryptographic.

/// One cryptographic primitive and the implementation that computes it in this build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backend {
    /// The primitive, named as its specification names it (`"ML-KEM-768"`).
    pub primitive: &'static str,
    /// The crate that implements it, by its crates.io package name; `"pqwrap-core"` for the
    /// constructions the core composes itself from the primitives below it.
    pub implementation: &'static str,
    /// That crate's version, as pinned by the workspace's `Cargo.lock`.
    pub version: &'static str,
}

const CORE: &str = env!("CARGO_PKG_VERSION");

const BACKENDS: &[Backend] = &[
    backend("X-Wing combiner", "pqwrap-core", CORE),
    backend("HPKE base mode (RFC 9180)", "pqwrap-core", CORE),
    backend("ML-KEM-768 (FIPS 203)", "libcrux-ml-kem", "0.0.11"),
    backend("X25519 (RFC 7748)", "aws-lc-rs", "1.19.0"),
    backend("ML-DSA-44/65/87 (FIPS 204)", "libcrux-ml-dsa", "0.0.11"),
    backend("AES-256-GCM", "aes-gcm", "0.11.1"),
    backend("ChaCha20-Poly1305 (RFC 8439)", "chacha20poly1305", "0.11.0"),
    backend("SHA3-256", "sha3", "0.12.0"),
    backend("SHAKE256", "shake", "0.1.0"),
    backend("SHA-256", "sha2", "0.11.1"),
    backend("HMAC-SHA-256", "hmac", "0.13.0"),
    backend("HKDF-SHA-256", "hkdf", "0.13.0"),
    backend("scrypt", "scrypt", "0.12.0"),
    backend("operating-system randomness", "getrandom", "0.3.4"),
    // SOPS key groups: Shamir secret sharing over GF(2^8), its coefficients drawn from a
    // ChaCha20 generator seeded by the operating system.
    #[cfg(feature = "sops")]
    backend("Shamir secret sharing (GF(2^8))", "vsss-rs", "6.0.1"),
    #[cfg(feature = "sops")]
    backend(
        "ChaCha20 CSPRNG (Shamir coefficients)",
        "chacha20",
        "0.10.2",
    ),
];

const fn backend(
    primitive: &'static str,
    implementation: &'static str,
    version: &'static str,
) -> Backend {
    Backend {
        primitive,
        implementation,
        version,
    }
}

/// The cryptographic implementations this build of pqwrap-core links, one entry per
/// primitive, the core's own constructions first.
///
/// Versions are those of the workspace's `Cargo.lock`: a binary built from the repository or
/// installed with `cargo install --locked` links exactly these. A build that resolves
/// dependencies afresh (`cargo install` without `--locked`) may link later semver-compatible
/// releases of the same crates.
pub fn backends() -> &'static [Backend] {
    BACKENDS
}
