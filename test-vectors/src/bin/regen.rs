//! Regenerates the native envelope vectors: `cargo run -p pqwrap-test-vectors --bin regen`.

use std::fs;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = pqwrap_test_vectors::native::dir();
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(dir.join("negative"))?;
    let vectors = pqwrap_test_vectors::native::generate()?;
    for (name, v) in &vectors {
        fs::write(dir.join(name), pqwrap_test_vectors::native::to_text(v))?;
    }
    println!("wrote {} vectors to {}", vectors.len(), dir.display());
    Ok(())
}
