//! Random ids: a store's id, and the engines' unguessable names and
//! passwords. A leaf: it imports nothing of the crate.

/// A new random id: 128 bits, hex (a new store's id, among others).
pub(crate) fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
