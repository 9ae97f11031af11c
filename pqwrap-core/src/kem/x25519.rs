//! X25519 (RFC 7748) through `aws-lc-rs`: AWS-LC's implementation, whose x86-64 code is
//! s2n-bignum's formally verified (HOL Light) scalar multiplication, and the fastest of the
//! vetted candidates measured on our hardware (BENCHMARKS.md).
//!
//! Secrets stay in our own zeroized buffers; AWS-LC gets a copy for the length of one call
//! and wipes it when the key object is freed (`OPENSSL_free` cleanses), and `aws-lc-rs`
//! returns the shared secret in a zeroizing buffer.

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use zeroize::Zeroizing;

use super::KemError;

/// `X25519(k, 9)`: the public key of the secret scalar `k` (clamped as RFC 7748 says).
pub fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let public = private_key(secret).compute_public_key();
    match public {
        Ok(p) if p.as_ref().len() == 32 => out.copy_from_slice(p.as_ref()),
        _ => out_of_memory(),
    }
    out
}

/// `X25519(k, u)`, refusing the all-zero result (a low-order or zero `u` that contributes
/// nothing) with [`KemError::NonContributory`], as RFC 7748 §6.1 allows and X-Wing and age
/// require. The top bit of `u` is ignored and non-canonical `u` values are reduced, as
/// RFC 7748 §5 specifies.
pub fn shared_secret(secret: &[u8; 32], peer: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, KemError> {
    let key = private_key(secret);
    let mut out = Zeroizing::new([0u8; 32]);
    // AWS-LC's X25519 fails only on the all-zero output (and on allocation failure).
    agreement::agree(
        &key,
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

fn private_key(secret: &[u8; 32]) -> PrivateKey {
    // Every 32-byte string is an X25519 private key; AWS-LC can only fail to allocate.
    PrivateKey::from_private_key(&X25519, secret).unwrap_or_else(|_| out_of_memory())
}

/// AWS-LC could not allocate a key object: handled as Rust handles any allocation failure.
#[cold]
fn out_of_memory() -> ! {
    std::alloc::handle_alloc_error(std::alloc::Layout::new::<[u8; 32]>())
}
