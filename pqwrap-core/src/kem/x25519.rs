//! X25519 (RFC 7748) through `aws-lc-rs`: AWS-LC's implementation, whose x86-64 code is
//! s2n-bignum's formally verified (HOL Light) scalar multiplication, and the fastest of the
//! vetted candidates measured on our hardware (BENCHMARKS.md).
//!
//! A scalar lives in an AWS-LC key object for as long as its owner ([`StaticSecret`]: an
//! identity, or one encapsulation's ephemeral key); AWS-LC wipes it when the object is freed
//! (`OPENSSL_free` cleanses), and `aws-lc-rs` returns the shared secret in a zeroizing buffer.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use zeroize::Zeroizing;

use super::KemError;

/// An X25519 secret scalar held as an AWS-LC key object, for the life of its owner (an
/// identity, or one encapsulation's ephemeral key). AWS-LC computes the public key when the
/// scalar is imported, so holding the object costs one fixed-base multiplication per key
/// instead of one per use.
pub struct StaticSecret(PrivateKey);

impl StaticSecret {
    /// Imports a 32-byte scalar (any 32 bytes; clamped as RFC 7748 says).
    pub fn from_bytes(secret: &[u8; 32]) -> Self {
        // Every 32-byte string is an X25519 private key; AWS-LC can only fail to allocate.
        Self(PrivateKey::from_private_key(&X25519, secret).unwrap_or_else(|_| out_of_memory()))
    }

    /// `X25519(k, 9)`: the public key.
    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        match self.0.compute_public_key() {
            Ok(p) if p.as_ref().len() == 32 => out.copy_from_slice(p.as_ref()),
            _ => out_of_memory(),
        }
        out
    }

    /// `X25519(k, u)`, refusing the all-zero result (a low-order or zero `u` that
    /// contributes nothing) with [`KemError::NonContributory`], as RFC 7748 §6.1 allows and
    /// X-Wing and age require. The top bit of `u` is ignored and non-canonical `u` values
    /// are reduced, as RFC 7748 §5 specifies.
    pub fn diffie_hellman(&self, peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KemError> {
        let mut out = Zeroizing::new([0u8; 32]);
        // AWS-LC's X25519 fails only on the all-zero output (and on allocation failure).
        agreement::agree(
            &self.0,
            UnparsedPublicKey::new(&X25519, peer),
            KemError::NonContributory,
            |ss| {
                if ss.len() != 32 {
                    return Err(KemError::NonContributory);
                }
                out.copy_from_slice(ss);
                Ok(())
            },
        )?;
        Ok(out)
    }
}

impl core::fmt::Debug for StaticSecret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("StaticSecret(<redacted>)")
    }
}

/// `X25519(k, 9)` for a scalar used once.
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    StaticSecret::from_bytes(secret).public_key()
}

/// `X25519(k, u)` for a scalar used once; see [`StaticSecret::diffie_hellman`].
pub fn shared_secret(secret: &[u8; 32], peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KemError> {
    StaticSecret::from_bytes(secret).diffie_hellman(peer)
}

/// AWS-LC could not allocate a key object: handled as Rust handles any allocation failure.
#[cold]
fn out_of_memory() -> ! {
    std::alloc::handle_alloc_error(std::alloc::Layout::new::<[u8; 32]>())
}
