//! Shamir shares of a data key, as sops lays them out: over GF(2^8) with the AES polynomial,
//! each share the y-bytes followed by its x-coordinate (sops's fork of Vault's `shamir`). The
//! arithmetic is vsss-rs's (audited); this module only converts the layout, since vsss-rs puts
//! the x-coordinate first.

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use vsss_rs::{Gf256, IdentifierGf256};
use zeroize::Zeroizing;

use super::SopsError;

/// Combines at least two shares (y-bytes, then x) into the secret.
pub fn combine(shares: &[Zeroizing<Vec<u8>>]) -> Result<Zeroizing<Vec<u8>>, SopsError> {
    if shares.len() < 2 {
        return Err(SopsError::Shamir("fewer than two shares"));
    }
    let len = shares.first().map_or(0, |s| s.len());
    if len < 2 || shares.iter().any(|s| s.len() != len) {
        return Err(SopsError::Shamir("the shares differ in length"));
    }
    let mut xs = std::collections::HashSet::new();
    let mut reordered: Vec<Vec<u8>> = Vec::with_capacity(shares.len());
    for s in shares {
        let (y, x) = s.split_at(len - 1);
        let x = x.first().copied().unwrap_or(0);
        if x == 0 || !xs.insert(x) {
            return Err(SopsError::Shamir("two shares have the same index"));
        }
        let mut v = Vec::with_capacity(len);
        v.push(x);
        v.extend_from_slice(y);
        reordered.push(v);
    }
    let secret = Gf256::combine_bytes(&reordered).map_err(|_| SopsError::Shamir("combine"));
    for v in &mut reordered {
        zeroize::Zeroize::zeroize(v);
    }
    Ok(Zeroizing::new(secret?))
}

/// Splits `secret` into `parts` shares, any `threshold` of which recover it; share `i` has
/// x-coordinate `i + 1`, as sops numbers its key groups.
pub fn split(
    secret: &[u8],
    parts: usize,
    threshold: usize,
) -> Result<Vec<Zeroizing<Vec<u8>>>, SopsError> {
    if threshold < 2 || parts < threshold || parts > 255 {
        return Err(SopsError::Shamir(
            "the threshold must be between 2 and the groups",
        ));
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..]).map_err(|_| SopsError::Random)?;
    let rng = ChaCha20Rng::from_seed(*seed);
    let ids = (1..=parts).map(|i| IdentifierGf256(Gf256(u8::try_from(i).unwrap_or(0))));
    let shares = Gf256::split_bytes_with_participant_ids_iter(threshold, parts, secret, rng, ids)
        .map_err(|_| SopsError::Shamir("split"))?;
    Ok(shares
        .into_iter()
        .map(|mut s| {
            let mut out = Zeroizing::new(Vec::with_capacity(s.len()));
            if let Some((x, y)) = s.split_first() {
                out.extend_from_slice(y);
                out.push(*x);
            }
            zeroize::Zeroize::zeroize(&mut s);
            out
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Compatibility with sops's own shares is shown by the fixtures sops wrote (key groups).
    #[test]
    fn splits_and_combines_in_sops_layout() {
        let secret: Vec<u8> = (0..32).collect();
        let shares = split(&secret, 3, 2).unwrap();
        assert_eq!(shares.len(), 3);
        assert!(shares.iter().all(|s| s.len() == 33));
        assert_eq!(shares.iter().map(|s| s[32]).collect::<Vec<_>>(), [1, 2, 3]);
        for pair in [[0, 1], [1, 2], [0, 2]] {
            let two = [shares[pair[0]].clone(), shares[pair[1]].clone()];
            assert_eq!(&*combine(&two).unwrap(), &secret[..]);
        }
        assert!(combine(&shares[..1]).is_err());
        let dup = [shares[0].clone(), shares[0].clone()];
        assert!(combine(&dup).is_err());
    }
}
