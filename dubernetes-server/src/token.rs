//! Random secrets: API tokens and session secrets. A leaf: imports nothing
//! of the server, so `auth` and `session` both use it without importing each
//! other.

/// A new random token: 32 bytes from the OS-seeded CSPRNG, hex encoded.
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
