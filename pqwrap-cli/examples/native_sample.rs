//! Writes a pqwrap native file of a given plaintext size for the recipients in a file, for
//! benchmarks (`pqwrap encrypt` writes age files only):
//!
//! ```sh
//! cargo run --release -p pqwrap-cli --example native_sample -- OUT BYTES RECIPIENTS_FILE
//! ```

use std::io::Write;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, out, size, recipients] = &args[..] else {
        anyhow::bail!("usage: native_sample OUT BYTES RECIPIENTS_FILE");
    };
    let size: u64 = size.parse()?;
    let rs = pqwrap_core::keys::parse_recipients(&std::fs::read_to_string(recipients)?)?;
    let file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut enc = pqwrap_core::envelope::Encryptor::new(file, &rs)?;
    // The plaintext does not matter to the timings (the ciphertext is random either way).
    let chunk = vec![0x5au8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        enc.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    enc.finish()?.flush()?;
    Ok(())
}
