//! Lowercase hexadecimal encoding, the only form digests take in a bundle.

use alloc::string::String;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Encodes `bytes` as lowercase hexadecimal.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Formats a SHA-256 output as `sha256:<64 lowercase hex>`.
pub fn sha256_digest(hash: &[u8; 32]) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    s.push_str(&encode(hash));
    s
}

/// Formats a BLAKE3 output as `blake3:<64 lowercase hex>`.
pub fn blake3_digest(hash: &[u8; 32]) -> String {
    let mut s = String::with_capacity(71);
    s.push_str("blake3:");
    s.push_str(&encode(hash));
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_lowercase() {
        assert_eq!(super::encode(&[0x00, 0xab, 0xff, 0x10]), "00abff10");
    }
}
