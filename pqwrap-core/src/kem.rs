//! X-Wing hybrid KEM (placeholder until the foundation lands).
