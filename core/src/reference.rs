//! Image reference and digest rules that decide the image-cache file names.
//!
//! microsandbox 0.6.2 keys an image's cached metadata by `sha256(reference.to_string())`, where the
//! reference is the snapshot manifest's `image.ref` parsed as `oci_client::Reference` (oci-client
//! 0.17 re-exports `oci_spec::distribution::Reference`; its parser is identical in oci-spec 0.9 and
//! 0.10). [`normalize_reference`] reproduces that parser and its `to_string()` form exactly,
//! quirks included. [`parse_digest`] reproduces `microsandbox_image::Digest::from_str`, the digest
//! parser 0.6.2 applies to the pinned image digest and to every cached layer digest and diff_id;
//! [`parse_oci_digest`] reproduces `oci_spec::image::Digest::from_str`, which is stricter and is
//! not used on the 0.6.2 import path. [`path_safe`] and [`metadata_file_name`] give the cache file
//! names derived from them.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use core::cmp::Ordering;
use core::fmt;

use sha2::{Digest as _, Sha256};

/// Registry given to references without a domain component.
const DOCKER_HUB_DOMAIN: &str = "docker.io";
/// Legacy Docker Hub domain, rewritten to [`DOCKER_HUB_DOMAIN`].
const DOCKER_HUB_DOMAIN_LEGACY: &str = "index.docker.io";
/// Namespace prefixed to single-component Docker Hub repositories.
const DOCKER_HUB_OFFICIAL_NAMESPACE: &str = "library";
/// Tag used when a reference has neither a tag nor a digest.
const DEFAULT_TAG: &str = "latest";
/// Longest accepted repository (after normalization), in bytes.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest accepted tag, in characters (not bytes: the tag grammar is Unicode-aware).
const TAG_MAX_CHARS: usize = 128;
/// Fewest hex digits the reference grammar accepts after `@algorithm:`.
const REFERENCE_DIGEST_MIN_HEX: usize = 32;

/// Why an image reference was rejected; texts are oci-spec's `ParseError` texts (its
/// `NameContainsUppercase` and `DigestInvalidFormat` are never returned by its parser, so they are
/// left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The reference is the empty string.
    Empty,
    /// The reference does not match the reference grammar.
    InvalidFormat,
    /// The normalized repository (including any added `library/`) exceeds 255 bytes.
    NameTooLong,
    /// A `sha256`/`sha384`/`sha512` digest has the wrong number of hex digits.
    DigestInvalidLength,
    /// The digest algorithm is not `sha256`, `sha384` or `sha512`.
    DigestUnsupported,
}

impl ReferenceError {
    /// Stable snake_case identifier of the failure.
    pub fn code(&self) -> &'static str {
        match self {
            ReferenceError::Empty => "reference_empty",
            ReferenceError::InvalidFormat => "reference_invalid_format",
            ReferenceError::NameTooLong => "reference_name_too_long",
            ReferenceError::DigestInvalidLength => "reference_digest_invalid_length",
            ReferenceError::DigestUnsupported => "reference_digest_unsupported",
        }
    }
}

impl fmt::Display for ReferenceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReferenceError::Empty => f.write_str("repository name must have at least one component"),
            ReferenceError::InvalidFormat => f.write_str("invalid reference format"),
            ReferenceError::NameTooLong => {
                write!(f, "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")
            }
            ReferenceError::DigestInvalidLength => f.write_str("invalid checksum digest length"),
            ReferenceError::DigestUnsupported => f.write_str("unsupported digest algorithm"),
        }
    }
}

impl core::error::Error for ReferenceError {}

/// A parsed, normalized image reference; its `Display` is the normalized string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry domain, e.g. `docker.io` or `localhost:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/python`.
    pub repository: String,
    /// Tag; `latest` when the input had neither tag nor digest.
    pub tag: Option<String>,
    /// Digest as written, e.g. `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The parser never yields an empty registry or repository, so the separators are always
        // needed (oci-spec's Display also handles empty parts, which cannot occur here).
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Parses `s` exactly like oci-spec's `Reference::from_str` (as used by microsandbox 0.6.2).
///
/// Grammar: `[domain/]path[:tag][@digest]`. The regex domain (`host(.host)*(:port)?`) may
/// contain uppercase letters; path components are lowercase `[a-z0-9]` runs joined by `.`, `_`,
/// `__` or any run of `-`; the tag is `[\w][\w.-]{0,127}` with Unicode `\w`; the digest is
/// `alg(sep alg)*:hex{32,}` and must then be `sha256`/`sha384`/`sha512` with 64/96/128 hex
/// digits (either case).
pub fn parse_reference(s: &str) -> Result<Reference, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::Empty);
    }
    // Neither the name nor the tag may contain '@', so the first '@' starts the digest (which
    // itself may not contain another '@').
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (s, None),
    };
    if let Some(digest) = digest {
        if !is_reference_digest(digest) {
            return Err(ReferenceError::InvalidFormat);
        }
    }
    // A name contains ':' only in a registry port, which is always followed by '/'; the tag
    // contains neither ':' nor '/'. So the last ':' starts a tag exactly when no '/' follows it.
    let (name, tag) = match rest.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        if !is_tag(tag) {
            return Err(ReferenceError::InvalidFormat);
        }
    }
    if !is_name(name) {
        return Err(ReferenceError::InvalidFormat);
    }
    let tag = match (tag, digest) {
        (None, None) => Some(DEFAULT_TAG),
        (tag, _) => tag,
    };
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    if let Some(digest) = digest {
        // `is_reference_digest` guarantees the ':'.
        let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
        let expected = match algorithm {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err(ReferenceError::DigestUnsupported),
        };
        if hex.len() != expected {
            return Err(ReferenceError::DigestInvalidLength);
        }
    }
    Ok(Reference {
        registry,
        repository,
        tag: tag.map(ToOwned::to_owned),
        digest: digest.map(ToOwned::to_owned),
    })
}

/// Parses `s` like oci-spec's `Reference::from_str` and returns its `to_string()` form,
/// `registry/repository[:tag][@digest]` (e.g. `python:3.12` → `docker.io/library/python:3.12`).
pub fn normalize_reference(s: &str) -> Result<String, ReferenceError> {
    parse_reference(s).map(|reference| format!("{reference}"))
}

/// Name of the cached metadata file for a normalized reference: lowercase hex SHA-256 of its bytes
/// followed by `.json` (the file lives in the cache's `manifests/` directory).
pub fn metadata_file_name(normalized_ref: &str) -> String {
    let mut name = crate::hex::encode(&Sha256::digest(normalized_ref.as_bytes()));
    name.push_str(".json");
    name
}

/// Splits a validated name into registry and repository (Docker's `splitDomain`).
///
/// The first component is a domain only if it contains `.` or `:` or is `localhost`; this is
/// decided on the text, independently of the regex above, so a regex-valid domain such as
/// `Upper` that fails the test stays in the repository (`Upper/x` → `docker.io/Upper/x`).
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut remainder) = match name.split_once('/') {
        Some((left, right)) if left.contains('.') || left.contains(':') || left == "localhost" => {
            (String::from(left), String::from(right))
        }
        _ => (String::from(DOCKER_HUB_DOMAIN), String::from(name)),
    };
    if domain == DOCKER_HUB_DOMAIN_LEGACY {
        domain = String::from(DOCKER_HUB_DOMAIN);
    }
    if domain == DOCKER_HUB_DOMAIN && !remainder.contains('/') {
        remainder = format!("{DOCKER_HUB_OFFICIAL_NAMESPACE}/{remainder}");
    }
    (domain, remainder)
}

/// `name := [domain '/'] path-component ('/' path-component)*`.
fn is_name(name: &str) -> bool {
    if is_path(name) {
        return true;
    }
    match name.split_once('/') {
        Some((domain, path)) => is_domain(domain) && is_path(path),
        None => false,
    }
}

/// One or more `/`-separated path components.
fn is_path(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

/// `[a-z0-9]+ ((\.|_|__|-*) [a-z0-9]+)*`: lowercase alphanumeric runs joined by one separator
/// (a separator may also be empty, which just merges runs).
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !(bytes.first().is_some_and(alnum) && bytes.last().is_some_and(alnum)) {
        return false;
    }
    // Every maximal run of non-alphanumeric bytes must be a valid separator.
    bytes.split(alnum).all(|sep| matches!(sep, b"" | b"." | b"_" | b"__") || sep.iter().all(|&b| b == b'-'))
}

/// `host ('.' host)* (':' [0-9]+)?` with `host := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn is_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (domain, None),
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    host.split('.').all(|label| {
        let bytes = label.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// `[\w][\w.-]{0,127}`, where `\w` is the regex crate's Unicode word class and the bound counts
/// characters.
fn is_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    if !chars.next().is_some_and(is_word_char) {
        return false;
    }
    let mut count: usize = 1;
    for c in chars {
        count = match count.checked_add(1) {
            Some(count) if count <= TAG_MAX_CHARS => count,
            _ => return false,
        };
        if !(is_word_char(c) || c == '.' || c == '-') {
            return false;
        }
    }
    true
}

/// Reference-grammar digest: `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,}`.
fn is_reference_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|component| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic) && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= REFERENCE_DIGEST_MIN_HEX && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The regex crate's Unicode `\w` (Alphabetic, marks, decimal numbers, connector punctuation,
/// join controls), Unicode 16.0 as in regex-syntax 0.8.
fn is_word_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric() || c == '_';
    }
    let cp = u32::from(c);
    PERL_WORD_NON_ASCII
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                Ordering::Less
            } else if lo > cp {
                Ordering::Greater
            } else {
                Ordering::Equal
            }
        })
        .is_ok()
}

/// A digest split at its first `:`, borrowed from the parsed string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest<'a> {
    /// Algorithm, e.g. `sha256`.
    pub algorithm: &'a str,
    /// Encoded value after the `:`, e.g. 64 hex digits.
    pub encoded: &'a str,
}

impl Digest<'_> {
    /// Cache file stem for this digest, as [`path_safe`].
    pub fn path_safe(&self) -> String {
        let mut out = String::new();
        push_path_safe(&mut out, self.algorithm);
        out.push('_');
        push_path_safe(&mut out, self.encoded);
        out
    }
}

impl fmt::Display for Digest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.encoded)
    }
}

/// Why a digest was rejected. The first four variants carry microsandbox 0.6.2's texts (without
/// the `manifest parse error: ` prefix its `ImageError` adds); the others come only from
/// [`parse_oci_digest`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DigestError {
    /// No `:` in the digest.
    MissingColon {
        /// The rejected input.
        input: String,
    },
    /// The algorithm or the encoded part is empty.
    EmptyComponent {
        /// The rejected input.
        input: String,
    },
    /// The algorithm is outside the algorithm grammar.
    InvalidAlgorithm {
        /// The rejected input.
        input: String,
    },
    /// The encoded part has a byte outside `[A-Za-z0-9=_-]`.
    InvalidEncoded {
        /// The rejected input.
        input: String,
    },
    /// A SHA-2 digest has the wrong length (oci-spec rule).
    WrongLength {
        /// The rejected input.
        input: String,
        /// Required hex digits for the algorithm.
        expected: usize,
        /// Length found.
        found: usize,
    },
    /// A SHA-2 digest has a character that is not lowercase hex (oci-spec rule).
    NotLowercaseHex {
        /// The rejected input.
        input: String,
    },
}

impl DigestError {
    /// Stable snake_case identifier of the failure.
    pub fn code(&self) -> &'static str {
        match self {
            DigestError::MissingColon { .. } => "digest_missing_colon",
            DigestError::EmptyComponent { .. } => "digest_empty_component",
            DigestError::InvalidAlgorithm { .. } => "digest_invalid_algorithm",
            DigestError::InvalidEncoded { .. } => "digest_invalid_encoded",
            DigestError::WrongLength { .. } => "digest_wrong_length",
            DigestError::NotLowercaseHex { .. } => "digest_not_lowercase_hex",
        }
    }
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::MissingColon { input } => {
                write!(f, "invalid digest (missing ':'): {input}")
            }
            DigestError::EmptyComponent { input } => {
                write!(f, "invalid digest (empty component): {input}")
            }
            DigestError::InvalidAlgorithm { input } => {
                write!(f, "invalid digest algorithm: {input}")
            }
            DigestError::InvalidEncoded { input } => {
                write!(f, "invalid digest encoded value: {input}")
            }
            DigestError::WrongLength { input, expected, found } => {
                write!(f, "invalid digest length {found} expected {expected}: {input}")
            }
            DigestError::NotLowercaseHex { input } => {
                write!(f, "invalid non-hexadecimal character in digest: {input}")
            }
        }
    }
}

impl core::error::Error for DigestError {}

/// Parses a digest exactly like `microsandbox_image::Digest::from_str` (0.6.2).
///
/// Split at the first `:`; both sides non-empty; the algorithm is `[a-z0-9]` with single `+ . _ -`
/// separators that may lead but not trail or repeat; the encoded part is `[A-Za-z0-9=_-]+`. There
/// is no length or hex check, so `sha256:abc` is accepted.
pub fn parse_digest(s: &str) -> Result<Digest<'_>, DigestError> {
    let input = || String::from(s);
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return Err(DigestError::MissingColon { input: input() });
    };
    if algorithm.is_empty() || encoded.is_empty() {
        return Err(DigestError::EmptyComponent { input: input() });
    }
    let mut previous_was_separator = false;
    for b in algorithm.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() {
            previous_was_separator = false;
        } else if matches!(b, b'+' | b'.' | b'_' | b'-') && !previous_was_separator {
            previous_was_separator = true;
        } else {
            return Err(DigestError::InvalidAlgorithm { input: input() });
        }
    }
    if previous_was_separator {
        return Err(DigestError::InvalidAlgorithm { input: input() });
    }
    if !encoded.bytes().all(is_encoded_byte) {
        return Err(DigestError::InvalidEncoded { input: input() });
    }
    Ok(Digest { algorithm, encoded })
}

/// Parses a digest like oci-spec 0.10's `image::Digest::from_str` (stricter than [`parse_digest`]).
///
/// Split at the first `:`; the algorithm is non-empty `[a-z0-9]+` components joined by single
/// `+ . _ -` (no leading or trailing separator); the encoded part is `[A-Za-z0-9=_-]+`; `sha256`,
/// `sha384` and `sha512` need exactly 64, 96 and 128 lowercase hex digits.
pub fn parse_oci_digest(s: &str) -> Result<Digest<'_>, DigestError> {
    let input = || String::from(s);
    let Some((algorithm, encoded)) = s.split_once(':') else {
        return Err(DigestError::MissingColon { input: input() });
    };
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|component| {
        !component.is_empty() && component.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    if !algorithm_ok {
        return Err(DigestError::InvalidAlgorithm { input: input() });
    }
    if encoded.is_empty() {
        return Err(DigestError::EmptyComponent { input: input() });
    }
    if !encoded.bytes().all(is_encoded_byte) {
        return Err(DigestError::InvalidEncoded { input: input() });
    }
    let expected = match algorithm {
        "sha256" => Some(64),
        "sha384" => Some(96),
        "sha512" => Some(128),
        _ => None,
    };
    if let Some(expected) = expected {
        if encoded.len() != expected {
            return Err(DigestError::WrongLength { input: input(), expected, found: encoded.len() });
        }
        if !encoded.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::NotLowercaseHex { input: input() });
        }
    }
    Ok(Digest { algorithm, encoded })
}

/// `[A-Za-z0-9=_-]`, the encoded-part alphabet shared by both digest parsers.
fn is_encoded_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-')
}

/// Cache file stem of a digest string, like microsandbox's `Digest::to_path_safe()`: every byte
/// outside `[A-Za-z0-9+.=_-]` becomes `_`, so `sha256:<hex>` becomes `sha256_<hex>`.
pub fn path_safe(digest: &str) -> String {
    let mut out = String::with_capacity(digest.len());
    push_path_safe(&mut out, digest);
    out
}

/// Appends `part` to `out` with every byte outside `[A-Za-z0-9+.=_-]` replaced by `_`.
fn push_path_safe(out: &mut String, part: &str) {
    out.extend(part.bytes().map(|b| {
        if b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'=' | b'_' | b'-') {
            char::from(b)
        } else {
            '_'
        }
    }));
}

/// Non-ASCII ranges (inclusive code points) of the regex crate's Unicode `\w` class, Unicode
/// 16.0.0, generated from the UCD `perl-word` property (the table regex-syntax 0.8 uses). Sorted
/// and disjoint, for binary search. The test `word_table_matches_regex_syntax` compares it with
/// regex-syntax's own table for every code point.
#[rustfmt::skip]
const PERL_WORD_NON_ASCII: &[(u32, u32)] = &[
    (0x000AA, 0x000AA), (0x000B5, 0x000B5), (0x000BA, 0x000BA), (0x000C0, 0x000D6), (0x000D8, 0x000F6),
    (0x000F8, 0x002C1), (0x002C6, 0x002D1), (0x002E0, 0x002E4), (0x002EC, 0x002EC), (0x002EE, 0x002EE),
    (0x00300, 0x00374), (0x00376, 0x00377), (0x0037A, 0x0037D), (0x0037F, 0x0037F), (0x00386, 0x00386),
    (0x00388, 0x0038A), (0x0038C, 0x0038C), (0x0038E, 0x003A1), (0x003A3, 0x003F5), (0x003F7, 0x00481),
    (0x00483, 0x0052F), (0x00531, 0x00556), (0x00559, 0x00559), (0x00560, 0x00588), (0x00591, 0x005BD),
    (0x005BF, 0x005BF), (0x005C1, 0x005C2), (0x005C4, 0x005C5), (0x005C7, 0x005C7), (0x005D0, 0x005EA),
    (0x005EF, 0x005F2), (0x00610, 0x0061A), (0x00620, 0x00669), (0x0066E, 0x006D3), (0x006D5, 0x006DC),
    (0x006DF, 0x006E8), (0x006EA, 0x006FC), (0x006FF, 0x006FF), (0x00710, 0x0074A), (0x0074D, 0x007B1),
    (0x007C0, 0x007F5), (0x007FA, 0x007FA), (0x007FD, 0x007FD), (0x00800, 0x0082D), (0x00840, 0x0085B),
    (0x00860, 0x0086A), (0x00870, 0x00887), (0x00889, 0x0088E), (0x00897, 0x008E1), (0x008E3, 0x00963),
    (0x00966, 0x0096F), (0x00971, 0x00983), (0x00985, 0x0098C), (0x0098F, 0x00990), (0x00993, 0x009A8),
    (0x009AA, 0x009B0), (0x009B2, 0x009B2), (0x009B6, 0x009B9), (0x009BC, 0x009C4), (0x009C7, 0x009C8),
    (0x009CB, 0x009CE), (0x009D7, 0x009D7), (0x009DC, 0x009DD), (0x009DF, 0x009E3), (0x009E6, 0x009F1),
    (0x009FC, 0x009FC), (0x009FE, 0x009FE), (0x00A01, 0x00A03), (0x00A05, 0x00A0A), (0x00A0F, 0x00A10),
    (0x00A13, 0x00A28), (0x00A2A, 0x00A30), (0x00A32, 0x00A33), (0x00A35, 0x00A36), (0x00A38, 0x00A39),
    (0x00A3C, 0x00A3C), (0x00A3E, 0x00A42), (0x00A47, 0x00A48), (0x00A4B, 0x00A4D), (0x00A51, 0x00A51),
    (0x00A59, 0x00A5C), (0x00A5E, 0x00A5E), (0x00A66, 0x00A75), (0x00A81, 0x00A83), (0x00A85, 0x00A8D),
    (0x00A8F, 0x00A91), (0x00A93, 0x00AA8), (0x00AAA, 0x00AB0), (0x00AB2, 0x00AB3), (0x00AB5, 0x00AB9),
    (0x00ABC, 0x00AC5), (0x00AC7, 0x00AC9), (0x00ACB, 0x00ACD), (0x00AD0, 0x00AD0), (0x00AE0, 0x00AE3),
    (0x00AE6, 0x00AEF), (0x00AF9, 0x00AFF), (0x00B01, 0x00B03), (0x00B05, 0x00B0C), (0x00B0F, 0x00B10),
    (0x00B13, 0x00B28), (0x00B2A, 0x00B30), (0x00B32, 0x00B33), (0x00B35, 0x00B39), (0x00B3C, 0x00B44),
    (0x00B47, 0x00B48), (0x00B4B, 0x00B4D), (0x00B55, 0x00B57), (0x00B5C, 0x00B5D), (0x00B5F, 0x00B63),
    (0x00B66, 0x00B6F), (0x00B71, 0x00B71), (0x00B82, 0x00B83), (0x00B85, 0x00B8A), (0x00B8E, 0x00B90),
    (0x00B92, 0x00B95), (0x00B99, 0x00B9A), (0x00B9C, 0x00B9C), (0x00B9E, 0x00B9F), (0x00BA3, 0x00BA4),
    (0x00BA8, 0x00BAA), (0x00BAE, 0x00BB9), (0x00BBE, 0x00BC2), (0x00BC6, 0x00BC8), (0x00BCA, 0x00BCD),
    (0x00BD0, 0x00BD0), (0x00BD7, 0x00BD7), (0x00BE6, 0x00BEF), (0x00C00, 0x00C0C), (0x00C0E, 0x00C10),
    (0x00C12, 0x00C28), (0x00C2A, 0x00C39), (0x00C3C, 0x00C44), (0x00C46, 0x00C48), (0x00C4A, 0x00C4D),
    (0x00C55, 0x00C56), (0x00C58, 0x00C5A), (0x00C5D, 0x00C5D), (0x00C60, 0x00C63), (0x00C66, 0x00C6F),
    (0x00C80, 0x00C83), (0x00C85, 0x00C8C), (0x00C8E, 0x00C90), (0x00C92, 0x00CA8), (0x00CAA, 0x00CB3),
    (0x00CB5, 0x00CB9), (0x00CBC, 0x00CC4), (0x00CC6, 0x00CC8), (0x00CCA, 0x00CCD), (0x00CD5, 0x00CD6),
    (0x00CDD, 0x00CDE), (0x00CE0, 0x00CE3), (0x00CE6, 0x00CEF), (0x00CF1, 0x00CF3), (0x00D00, 0x00D0C),
    (0x00D0E, 0x00D10), (0x00D12, 0x00D44), (0x00D46, 0x00D48), (0x00D4A, 0x00D4E), (0x00D54, 0x00D57),
    (0x00D5F, 0x00D63), (0x00D66, 0x00D6F), (0x00D7A, 0x00D7F), (0x00D81, 0x00D83), (0x00D85, 0x00D96),
    (0x00D9A, 0x00DB1), (0x00DB3, 0x00DBB), (0x00DBD, 0x00DBD), (0x00DC0, 0x00DC6), (0x00DCA, 0x00DCA),
    (0x00DCF, 0x00DD4), (0x00DD6, 0x00DD6), (0x00DD8, 0x00DDF), (0x00DE6, 0x00DEF), (0x00DF2, 0x00DF3),
    (0x00E01, 0x00E3A), (0x00E40, 0x00E4E), (0x00E50, 0x00E59), (0x00E81, 0x00E82), (0x00E84, 0x00E84),
    (0x00E86, 0x00E8A), (0x00E8C, 0x00EA3), (0x00EA5, 0x00EA5), (0x00EA7, 0x00EBD), (0x00EC0, 0x00EC4),
    (0x00EC6, 0x00EC6), (0x00EC8, 0x00ECE), (0x00ED0, 0x00ED9), (0x00EDC, 0x00EDF), (0x00F00, 0x00F00),
    (0x00F18, 0x00F19), (0x00F20, 0x00F29), (0x00F35, 0x00F35), (0x00F37, 0x00F37), (0x00F39, 0x00F39),
    (0x00F3E, 0x00F47), (0x00F49, 0x00F6C), (0x00F71, 0x00F84), (0x00F86, 0x00F97), (0x00F99, 0x00FBC),
    (0x00FC6, 0x00FC6), (0x01000, 0x01049), (0x01050, 0x0109D), (0x010A0, 0x010C5), (0x010C7, 0x010C7),
    (0x010CD, 0x010CD), (0x010D0, 0x010FA), (0x010FC, 0x01248), (0x0124A, 0x0124D), (0x01250, 0x01256),
    (0x01258, 0x01258), (0x0125A, 0x0125D), (0x01260, 0x01288), (0x0128A, 0x0128D), (0x01290, 0x012B0),
    (0x012B2, 0x012B5), (0x012B8, 0x012BE), (0x012C0, 0x012C0), (0x012C2, 0x012C5), (0x012C8, 0x012D6),
    (0x012D8, 0x01310), (0x01312, 0x01315), (0x01318, 0x0135A), (0x0135D, 0x0135F), (0x01380, 0x0138F),
    (0x013A0, 0x013F5), (0x013F8, 0x013FD), (0x01401, 0x0166C), (0x0166F, 0x0167F), (0x01681, 0x0169A),
    (0x016A0, 0x016EA), (0x016EE, 0x016F8), (0x01700, 0x01715), (0x0171F, 0x01734), (0x01740, 0x01753),
    (0x01760, 0x0176C), (0x0176E, 0x01770), (0x01772, 0x01773), (0x01780, 0x017D3), (0x017D7, 0x017D7),
    (0x017DC, 0x017DD), (0x017E0, 0x017E9), (0x0180B, 0x0180D), (0x0180F, 0x01819), (0x01820, 0x01878),
    (0x01880, 0x018AA), (0x018B0, 0x018F5), (0x01900, 0x0191E), (0x01920, 0x0192B), (0x01930, 0x0193B),
    (0x01946, 0x0196D), (0x01970, 0x01974), (0x01980, 0x019AB), (0x019B0, 0x019C9), (0x019D0, 0x019D9),
    (0x01A00, 0x01A1B), (0x01A20, 0x01A5E), (0x01A60, 0x01A7C), (0x01A7F, 0x01A89), (0x01A90, 0x01A99),
    (0x01AA7, 0x01AA7), (0x01AB0, 0x01ACE), (0x01B00, 0x01B4C), (0x01B50, 0x01B59), (0x01B6B, 0x01B73),
    (0x01B80, 0x01BF3), (0x01C00, 0x01C37), (0x01C40, 0x01C49), (0x01C4D, 0x01C7D), (0x01C80, 0x01C8A),
    (0x01C90, 0x01CBA), (0x01CBD, 0x01CBF), (0x01CD0, 0x01CD2), (0x01CD4, 0x01CFA), (0x01D00, 0x01F15),
    (0x01F18, 0x01F1D), (0x01F20, 0x01F45), (0x01F48, 0x01F4D), (0x01F50, 0x01F57), (0x01F59, 0x01F59),
    (0x01F5B, 0x01F5B), (0x01F5D, 0x01F5D), (0x01F5F, 0x01F7D), (0x01F80, 0x01FB4), (0x01FB6, 0x01FBC),
    (0x01FBE, 0x01FBE), (0x01FC2, 0x01FC4), (0x01FC6, 0x01FCC), (0x01FD0, 0x01FD3), (0x01FD6, 0x01FDB),
    (0x01FE0, 0x01FEC), (0x01FF2, 0x01FF4), (0x01FF6, 0x01FFC), (0x0200C, 0x0200D), (0x0203F, 0x02040),
    (0x02054, 0x02054), (0x02071, 0x02071), (0x0207F, 0x0207F), (0x02090, 0x0209C), (0x020D0, 0x020F0),
    (0x02102, 0x02102), (0x02107, 0x02107), (0x0210A, 0x02113), (0x02115, 0x02115), (0x02119, 0x0211D),
    (0x02124, 0x02124), (0x02126, 0x02126), (0x02128, 0x02128), (0x0212A, 0x0212D), (0x0212F, 0x02139),
    (0x0213C, 0x0213F), (0x02145, 0x02149), (0x0214E, 0x0214E), (0x02160, 0x02188), (0x024B6, 0x024E9),
    (0x02C00, 0x02CE4), (0x02CEB, 0x02CF3), (0x02D00, 0x02D25), (0x02D27, 0x02D27), (0x02D2D, 0x02D2D),
    (0x02D30, 0x02D67), (0x02D6F, 0x02D6F), (0x02D7F, 0x02D96), (0x02DA0, 0x02DA6), (0x02DA8, 0x02DAE),
    (0x02DB0, 0x02DB6), (0x02DB8, 0x02DBE), (0x02DC0, 0x02DC6), (0x02DC8, 0x02DCE), (0x02DD0, 0x02DD6),
    (0x02DD8, 0x02DDE), (0x02DE0, 0x02DFF), (0x02E2F, 0x02E2F), (0x03005, 0x03007), (0x03021, 0x0302F),
    (0x03031, 0x03035), (0x03038, 0x0303C), (0x03041, 0x03096), (0x03099, 0x0309A), (0x0309D, 0x0309F),
    (0x030A1, 0x030FA), (0x030FC, 0x030FF), (0x03105, 0x0312F), (0x03131, 0x0318E), (0x031A0, 0x031BF),
    (0x031F0, 0x031FF), (0x03400, 0x04DBF), (0x04E00, 0x0A48C), (0x0A4D0, 0x0A4FD), (0x0A500, 0x0A60C),
    (0x0A610, 0x0A62B), (0x0A640, 0x0A672), (0x0A674, 0x0A67D), (0x0A67F, 0x0A6F1), (0x0A717, 0x0A71F),
    (0x0A722, 0x0A788), (0x0A78B, 0x0A7CD), (0x0A7D0, 0x0A7D1), (0x0A7D3, 0x0A7D3), (0x0A7D5, 0x0A7DC),
    (0x0A7F2, 0x0A827), (0x0A82C, 0x0A82C), (0x0A840, 0x0A873), (0x0A880, 0x0A8C5), (0x0A8D0, 0x0A8D9),
    (0x0A8E0, 0x0A8F7), (0x0A8FB, 0x0A8FB), (0x0A8FD, 0x0A92D), (0x0A930, 0x0A953), (0x0A960, 0x0A97C),
    (0x0A980, 0x0A9C0), (0x0A9CF, 0x0A9D9), (0x0A9E0, 0x0A9FE), (0x0AA00, 0x0AA36), (0x0AA40, 0x0AA4D),
    (0x0AA50, 0x0AA59), (0x0AA60, 0x0AA76), (0x0AA7A, 0x0AAC2), (0x0AADB, 0x0AADD), (0x0AAE0, 0x0AAEF),
    (0x0AAF2, 0x0AAF6), (0x0AB01, 0x0AB06), (0x0AB09, 0x0AB0E), (0x0AB11, 0x0AB16), (0x0AB20, 0x0AB26),
    (0x0AB28, 0x0AB2E), (0x0AB30, 0x0AB5A), (0x0AB5C, 0x0AB69), (0x0AB70, 0x0ABEA), (0x0ABEC, 0x0ABED),
    (0x0ABF0, 0x0ABF9), (0x0AC00, 0x0D7A3), (0x0D7B0, 0x0D7C6), (0x0D7CB, 0x0D7FB), (0x0F900, 0x0FA6D),
    (0x0FA70, 0x0FAD9), (0x0FB00, 0x0FB06), (0x0FB13, 0x0FB17), (0x0FB1D, 0x0FB28), (0x0FB2A, 0x0FB36),
    (0x0FB38, 0x0FB3C), (0x0FB3E, 0x0FB3E), (0x0FB40, 0x0FB41), (0x0FB43, 0x0FB44), (0x0FB46, 0x0FBB1),
    (0x0FBD3, 0x0FD3D), (0x0FD50, 0x0FD8F), (0x0FD92, 0x0FDC7), (0x0FDF0, 0x0FDFB), (0x0FE00, 0x0FE0F),
    (0x0FE20, 0x0FE2F), (0x0FE33, 0x0FE34), (0x0FE4D, 0x0FE4F), (0x0FE70, 0x0FE74), (0x0FE76, 0x0FEFC),
    (0x0FF10, 0x0FF19), (0x0FF21, 0x0FF3A), (0x0FF3F, 0x0FF3F), (0x0FF41, 0x0FF5A), (0x0FF66, 0x0FFBE),
    (0x0FFC2, 0x0FFC7), (0x0FFCA, 0x0FFCF), (0x0FFD2, 0x0FFD7), (0x0FFDA, 0x0FFDC), (0x10000, 0x1000B),
    (0x1000D, 0x10026), (0x10028, 0x1003A), (0x1003C, 0x1003D), (0x1003F, 0x1004D), (0x10050, 0x1005D),
    (0x10080, 0x100FA), (0x10140, 0x10174), (0x101FD, 0x101FD), (0x10280, 0x1029C), (0x102A0, 0x102D0),
    (0x102E0, 0x102E0), (0x10300, 0x1031F), (0x1032D, 0x1034A), (0x10350, 0x1037A), (0x10380, 0x1039D),
    (0x103A0, 0x103C3), (0x103C8, 0x103CF), (0x103D1, 0x103D5), (0x10400, 0x1049D), (0x104A0, 0x104A9),
    (0x104B0, 0x104D3), (0x104D8, 0x104FB), (0x10500, 0x10527), (0x10530, 0x10563), (0x10570, 0x1057A),
    (0x1057C, 0x1058A), (0x1058C, 0x10592), (0x10594, 0x10595), (0x10597, 0x105A1), (0x105A3, 0x105B1),
    (0x105B3, 0x105B9), (0x105BB, 0x105BC), (0x105C0, 0x105F3), (0x10600, 0x10736), (0x10740, 0x10755),
    (0x10760, 0x10767), (0x10780, 0x10785), (0x10787, 0x107B0), (0x107B2, 0x107BA), (0x10800, 0x10805),
    (0x10808, 0x10808), (0x1080A, 0x10835), (0x10837, 0x10838), (0x1083C, 0x1083C), (0x1083F, 0x10855),
    (0x10860, 0x10876), (0x10880, 0x1089E), (0x108E0, 0x108F2), (0x108F4, 0x108F5), (0x10900, 0x10915),
    (0x10920, 0x10939), (0x10980, 0x109B7), (0x109BE, 0x109BF), (0x10A00, 0x10A03), (0x10A05, 0x10A06),
    (0x10A0C, 0x10A13), (0x10A15, 0x10A17), (0x10A19, 0x10A35), (0x10A38, 0x10A3A), (0x10A3F, 0x10A3F),
    (0x10A60, 0x10A7C), (0x10A80, 0x10A9C), (0x10AC0, 0x10AC7), (0x10AC9, 0x10AE6), (0x10B00, 0x10B35),
    (0x10B40, 0x10B55), (0x10B60, 0x10B72), (0x10B80, 0x10B91), (0x10C00, 0x10C48), (0x10C80, 0x10CB2),
    (0x10CC0, 0x10CF2), (0x10D00, 0x10D27), (0x10D30, 0x10D39), (0x10D40, 0x10D65), (0x10D69, 0x10D6D),
    (0x10D6F, 0x10D85), (0x10E80, 0x10EA9), (0x10EAB, 0x10EAC), (0x10EB0, 0x10EB1), (0x10EC2, 0x10EC4),
    (0x10EFC, 0x10F1C), (0x10F27, 0x10F27), (0x10F30, 0x10F50), (0x10F70, 0x10F85), (0x10FB0, 0x10FC4),
    (0x10FE0, 0x10FF6), (0x11000, 0x11046), (0x11066, 0x11075), (0x1107F, 0x110BA), (0x110C2, 0x110C2),
    (0x110D0, 0x110E8), (0x110F0, 0x110F9), (0x11100, 0x11134), (0x11136, 0x1113F), (0x11144, 0x11147),
    (0x11150, 0x11173), (0x11176, 0x11176), (0x11180, 0x111C4), (0x111C9, 0x111CC), (0x111CE, 0x111DA),
    (0x111DC, 0x111DC), (0x11200, 0x11211), (0x11213, 0x11237), (0x1123E, 0x11241), (0x11280, 0x11286),
    (0x11288, 0x11288), (0x1128A, 0x1128D), (0x1128F, 0x1129D), (0x1129F, 0x112A8), (0x112B0, 0x112EA),
    (0x112F0, 0x112F9), (0x11300, 0x11303), (0x11305, 0x1130C), (0x1130F, 0x11310), (0x11313, 0x11328),
    (0x1132A, 0x11330), (0x11332, 0x11333), (0x11335, 0x11339), (0x1133B, 0x11344), (0x11347, 0x11348),
    (0x1134B, 0x1134D), (0x11350, 0x11350), (0x11357, 0x11357), (0x1135D, 0x11363), (0x11366, 0x1136C),
    (0x11370, 0x11374), (0x11380, 0x11389), (0x1138B, 0x1138B), (0x1138E, 0x1138E), (0x11390, 0x113B5),
    (0x113B7, 0x113C0), (0x113C2, 0x113C2), (0x113C5, 0x113C5), (0x113C7, 0x113CA), (0x113CC, 0x113D3),
    (0x113E1, 0x113E2), (0x11400, 0x1144A), (0x11450, 0x11459), (0x1145E, 0x11461), (0x11480, 0x114C5),
    (0x114C7, 0x114C7), (0x114D0, 0x114D9), (0x11580, 0x115B5), (0x115B8, 0x115C0), (0x115D8, 0x115DD),
    (0x11600, 0x11640), (0x11644, 0x11644), (0x11650, 0x11659), (0x11680, 0x116B8), (0x116C0, 0x116C9),
    (0x116D0, 0x116E3), (0x11700, 0x1171A), (0x1171D, 0x1172B), (0x11730, 0x11739), (0x11740, 0x11746),
    (0x11800, 0x1183A), (0x118A0, 0x118E9), (0x118FF, 0x11906), (0x11909, 0x11909), (0x1190C, 0x11913),
    (0x11915, 0x11916), (0x11918, 0x11935), (0x11937, 0x11938), (0x1193B, 0x11943), (0x11950, 0x11959),
    (0x119A0, 0x119A7), (0x119AA, 0x119D7), (0x119DA, 0x119E1), (0x119E3, 0x119E4), (0x11A00, 0x11A3E),
    (0x11A47, 0x11A47), (0x11A50, 0x11A99), (0x11A9D, 0x11A9D), (0x11AB0, 0x11AF8), (0x11BC0, 0x11BE0),
    (0x11BF0, 0x11BF9), (0x11C00, 0x11C08), (0x11C0A, 0x11C36), (0x11C38, 0x11C40), (0x11C50, 0x11C59),
    (0x11C72, 0x11C8F), (0x11C92, 0x11CA7), (0x11CA9, 0x11CB6), (0x11D00, 0x11D06), (0x11D08, 0x11D09),
    (0x11D0B, 0x11D36), (0x11D3A, 0x11D3A), (0x11D3C, 0x11D3D), (0x11D3F, 0x11D47), (0x11D50, 0x11D59),
    (0x11D60, 0x11D65), (0x11D67, 0x11D68), (0x11D6A, 0x11D8E), (0x11D90, 0x11D91), (0x11D93, 0x11D98),
    (0x11DA0, 0x11DA9), (0x11EE0, 0x11EF6), (0x11F00, 0x11F10), (0x11F12, 0x11F3A), (0x11F3E, 0x11F42),
    (0x11F50, 0x11F5A), (0x11FB0, 0x11FB0), (0x12000, 0x12399), (0x12400, 0x1246E), (0x12480, 0x12543),
    (0x12F90, 0x12FF0), (0x13000, 0x1342F), (0x13440, 0x13455), (0x13460, 0x143FA), (0x14400, 0x14646),
    (0x16100, 0x16139), (0x16800, 0x16A38), (0x16A40, 0x16A5E), (0x16A60, 0x16A69), (0x16A70, 0x16ABE),
    (0x16AC0, 0x16AC9), (0x16AD0, 0x16AED), (0x16AF0, 0x16AF4), (0x16B00, 0x16B36), (0x16B40, 0x16B43),
    (0x16B50, 0x16B59), (0x16B63, 0x16B77), (0x16B7D, 0x16B8F), (0x16D40, 0x16D6C), (0x16D70, 0x16D79),
    (0x16E40, 0x16E7F), (0x16F00, 0x16F4A), (0x16F4F, 0x16F87), (0x16F8F, 0x16F9F), (0x16FE0, 0x16FE1),
    (0x16FE3, 0x16FE4), (0x16FF0, 0x16FF1), (0x17000, 0x187F7), (0x18800, 0x18CD5), (0x18CFF, 0x18D08),
    (0x1AFF0, 0x1AFF3), (0x1AFF5, 0x1AFFB), (0x1AFFD, 0x1AFFE), (0x1B000, 0x1B122), (0x1B132, 0x1B132),
    (0x1B150, 0x1B152), (0x1B155, 0x1B155), (0x1B164, 0x1B167), (0x1B170, 0x1B2FB), (0x1BC00, 0x1BC6A),
    (0x1BC70, 0x1BC7C), (0x1BC80, 0x1BC88), (0x1BC90, 0x1BC99), (0x1BC9D, 0x1BC9E), (0x1CCF0, 0x1CCF9),
    (0x1CF00, 0x1CF2D), (0x1CF30, 0x1CF46), (0x1D165, 0x1D169), (0x1D16D, 0x1D172), (0x1D17B, 0x1D182),
    (0x1D185, 0x1D18B), (0x1D1AA, 0x1D1AD), (0x1D242, 0x1D244), (0x1D400, 0x1D454), (0x1D456, 0x1D49C),
    (0x1D49E, 0x1D49F), (0x1D4A2, 0x1D4A2), (0x1D4A5, 0x1D4A6), (0x1D4A9, 0x1D4AC), (0x1D4AE, 0x1D4B9),
    (0x1D4BB, 0x1D4BB), (0x1D4BD, 0x1D4C3), (0x1D4C5, 0x1D505), (0x1D507, 0x1D50A), (0x1D50D, 0x1D514),
    (0x1D516, 0x1D51C), (0x1D51E, 0x1D539), (0x1D53B, 0x1D53E), (0x1D540, 0x1D544), (0x1D546, 0x1D546),
    (0x1D54A, 0x1D550), (0x1D552, 0x1D6A5), (0x1D6A8, 0x1D6C0), (0x1D6C2, 0x1D6DA), (0x1D6DC, 0x1D6FA),
    (0x1D6FC, 0x1D714), (0x1D716, 0x1D734), (0x1D736, 0x1D74E), (0x1D750, 0x1D76E), (0x1D770, 0x1D788),
    (0x1D78A, 0x1D7A8), (0x1D7AA, 0x1D7C2), (0x1D7C4, 0x1D7CB), (0x1D7CE, 0x1D7FF), (0x1DA00, 0x1DA36),
    (0x1DA3B, 0x1DA6C), (0x1DA75, 0x1DA75), (0x1DA84, 0x1DA84), (0x1DA9B, 0x1DA9F), (0x1DAA1, 0x1DAAF),
    (0x1DF00, 0x1DF1E), (0x1DF25, 0x1DF2A), (0x1E000, 0x1E006), (0x1E008, 0x1E018), (0x1E01B, 0x1E021),
    (0x1E023, 0x1E024), (0x1E026, 0x1E02A), (0x1E030, 0x1E06D), (0x1E08F, 0x1E08F), (0x1E100, 0x1E12C),
    (0x1E130, 0x1E13D), (0x1E140, 0x1E149), (0x1E14E, 0x1E14E), (0x1E290, 0x1E2AE), (0x1E2C0, 0x1E2F9),
    (0x1E4D0, 0x1E4F9), (0x1E5D0, 0x1E5FA), (0x1E7E0, 0x1E7E6), (0x1E7E8, 0x1E7EB), (0x1E7ED, 0x1E7EE),
    (0x1E7F0, 0x1E7FE), (0x1E800, 0x1E8C4), (0x1E8D0, 0x1E8D6), (0x1E900, 0x1E94B), (0x1E950, 0x1E959),
    (0x1EE00, 0x1EE03), (0x1EE05, 0x1EE1F), (0x1EE21, 0x1EE22), (0x1EE24, 0x1EE24), (0x1EE27, 0x1EE27),
    (0x1EE29, 0x1EE32), (0x1EE34, 0x1EE37), (0x1EE39, 0x1EE39), (0x1EE3B, 0x1EE3B), (0x1EE42, 0x1EE42),
    (0x1EE47, 0x1EE47), (0x1EE49, 0x1EE49), (0x1EE4B, 0x1EE4B), (0x1EE4D, 0x1EE4F), (0x1EE51, 0x1EE52),
    (0x1EE54, 0x1EE54), (0x1EE57, 0x1EE57), (0x1EE59, 0x1EE59), (0x1EE5B, 0x1EE5B), (0x1EE5D, 0x1EE5D),
    (0x1EE5F, 0x1EE5F), (0x1EE61, 0x1EE62), (0x1EE64, 0x1EE64), (0x1EE67, 0x1EE6A), (0x1EE6C, 0x1EE72),
    (0x1EE74, 0x1EE77), (0x1EE79, 0x1EE7C), (0x1EE7E, 0x1EE7E), (0x1EE80, 0x1EE89), (0x1EE8B, 0x1EE9B),
    (0x1EEA1, 0x1EEA3), (0x1EEA5, 0x1EEA9), (0x1EEAB, 0x1EEBB), (0x1F130, 0x1F149), (0x1F150, 0x1F169),
    (0x1F170, 0x1F189), (0x1FBF0, 0x1FBF9), (0x20000, 0x2A6DF), (0x2A700, 0x2B739), (0x2B740, 0x2B81D),
    (0x2B820, 0x2CEA1), (0x2CEB0, 0x2EBE0), (0x2EBF0, 0x2EE5D), (0x2F800, 0x2FA1D), (0x30000, 0x3134A),
    (0x31350, 0x323AF), (0xE0100, 0xE01EF),
];

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const FF64: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

    /// `(input, registry, repository, tag, digest, to_string)`.
    type Case =
        (&'static str, &'static str, &'static str, Option<&'static str>, Option<&'static str>, &'static str);

    /// oci-spec 0.10 `parse_good_reference` vectors.
    #[rustfmt::skip]
    const GOOD: &[Case] = &[
        ("busybox", "docker.io", "library/busybox", Some("latest"), None, "docker.io/library/busybox:latest"),
        ("test.com:tag", "docker.io", "library/test.com", Some("tag"), None, "docker.io/library/test.com:tag"),
        ("test.com:5000", "docker.io", "library/test.com", Some("5000"), None, "docker.io/library/test.com:5000"),
        ("test.com/repo:tag", "test.com", "repo", Some("tag"), None, "test.com/repo:tag"),
        ("test:5000/repo", "test:5000", "repo", Some("latest"), None, "test:5000/repo:latest"),
        ("test:5000/repo:tag", "test:5000", "repo", Some("tag"), None, "test:5000/repo:tag"),
        ("test:5000/repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "test:5000", "repo", None, Some("sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"), "test:5000/repo@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
        ("test:5000/repo:tag@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "test:5000", "repo", Some("tag"), Some("sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"), "test:5000/repo:tag@sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
        ("lowercase:Uppercase", "docker.io", "library/lowercase", Some("Uppercase"), None, "docker.io/library/lowercase:Uppercase"),
        ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", Some("latest"), None, "sub-dom1.foo.com/bar/baz/quux:latest"),
        ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux", Some("some-long-tag"), None, "sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
        ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app", Some("test.example.com"), None, "b.gcr.io/test.example.com/my-app:test.example.com"),
        ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", Some("xn--n3h.com"), None, "xn--n3h.com/myimage:xn--n3h.com"),
        ("xn--7o8h.com/myimage:xn--7o8h.com@sha512:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "xn--7o8h.com", "myimage", Some("xn--7o8h.com"), Some("sha512:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"), "xn--7o8h.com/myimage:xn--7o8h.com@sha512:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"),
        ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", Some("8080"), None, "docker.io/library/foo_bar.com:8080"),
        ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", Some("8080"), None, "docker.io/foo/foo_bar.com:8080"),
        ("opensuse/leap:15.3", "docker.io", "opensuse/leap", Some("15.3"), None, "docker.io/opensuse/leap:15.3"),
    ];

    #[test]
    fn oci_spec_good_references() {
        for &(input, registry, repository, tag, digest, whole) in GOOD {
            let r = parse_reference(input).unwrap_or_else(|e| panic!("{input:?} rejected: {e}"));
            assert_eq!(r.registry, registry, "{input}");
            assert_eq!(r.repository, repository, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest.as_deref(), digest, "{input}");
            assert_eq!(r.to_string(), whole, "{input}");
            assert_eq!(normalize_reference(input).as_deref(), Ok(whole));
        }
    }

    #[test]
    fn oci_spec_bad_references() {
        let cases = [
            (String::new(), ReferenceError::Empty),
            (":justtag".into(), ReferenceError::InvalidFormat),
            (format!("@sha256:{FF64}"), ReferenceError::InvalidFormat),
            ("repo@sha256:ffffffffffffffffffffffffffffffffff".into(), ReferenceError::DigestInvalidLength),
            (format!("validname@invaliddigest:{FF64}"), ReferenceError::DigestUnsupported),
            ("Uppercase:tag".into(), ReferenceError::InvalidFormat),
            ("test:5000/Uppercase/lowercase:tag".into(), ReferenceError::InvalidFormat),
            ("a".repeat(256), ReferenceError::NameTooLong),
            ("aa/asdf$$^/aa".into(), ReferenceError::InvalidFormat),
        ];
        for (input, err) in cases {
            assert_eq!(parse_reference(&input), Err(err), "{input:?}");
        }
    }

    #[test]
    fn docker_hub_normalization() {
        let cases = [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine:3.20", "docker.io/library/alpine:3.20"),
            ("python:3.12", "docker.io/library/python:3.12"),
            ("docker.io/library/python:3.12", "docker.io/library/python:3.12"),
            ("docker.io/python:3.12", "docker.io/library/python:3.12"),
            ("index.docker.io/python:3.12", "docker.io/library/python:3.12"),
            ("index.docker.io/foo/bar", "docker.io/foo/bar:latest"),
            ("library/python", "docker.io/library/python:latest"),
            ("docker.io", "docker.io/library/docker.io:latest"),
            ("localhost/foo", "localhost/foo:latest"),
            ("localhost:5000/foo/bar:v1", "localhost:5000/foo/bar:v1"),
            ("ghcr.io/owner/img:1.0", "ghcr.io/owner/img:1.0"),
            ("a__b/c-----d/e.f_g", "docker.io/a__b/c-----d/e.f_g:latest"),
        ];
        for (input, whole) in cases {
            assert_eq!(normalize_reference(input).as_deref(), Ok(whole), "{input}");
        }
    }

    #[test]
    fn quirks_of_the_oci_spec_parser() {
        // A regex-valid domain that splitDomain does not treat as a domain stays in the repository,
        // uppercase and all (oci-spec's own test marks this as a FIXME).
        assert_eq!(
            normalize_reference("Uppercase/lowercase:tag").as_deref(),
            Ok("docker.io/Uppercase/lowercase:tag")
        );
        assert_eq!(normalize_reference("LOCALHOST/x").as_deref(), Ok("docker.io/LOCALHOST/x:latest"));
        // The domain keeps its case.
        assert_eq!(
            normalize_reference("Registry.Example.com/x").as_deref(),
            Ok("Registry.Example.com/x:latest")
        );
        // A digest alone suppresses the default tag; uppercase hex passes the length check.
        let upper = ["sha256:", &"F".repeat(64)].concat();
        assert_eq!(
            normalize_reference(&["busybox@", &upper].concat()),
            Ok(["docker.io/library/busybox@", &upper].concat())
        );
        // The length limit applies to the normalized repository, `library/` included.
        assert_eq!(parse_reference(&"a".repeat(247)).map(|r| r.repository.len()), Ok(255));
        assert_eq!(parse_reference(&"a".repeat(248)), Err(ReferenceError::NameTooLong));
        // Tags use Unicode \w and count characters: 128 'é' (256 bytes) pass, 129 do not.
        assert!(parse_reference(&["x:", &"é".repeat(128)].concat()).is_ok());
        assert_eq!(parse_reference(&["x:", &"é".repeat(129)].concat()), Err(ReferenceError::InvalidFormat));
        assert!(parse_reference("x:_v\u{0301}\u{203F}").is_ok()); // combining mark, connector punctuation
        assert_eq!(parse_reference("x:v\u{00B2}"), Err(ReferenceError::InvalidFormat)); // superscript two: No, not \w
        assert_eq!(parse_reference("x:.v"), Err(ReferenceError::InvalidFormat));
    }

    #[test]
    fn grammar_edges() {
        for input in ["a", "a/b", "a-b", "a--b/c", "a.b/c", "a_b", "a__b", "0", "a-b.c:1/d", "1.2.3.4:5/x"] {
            assert!(parse_reference(input).is_ok(), "{input}");
        }
        let tag128 = ["x:", &"t".repeat(128)].concat();
        let tag129 = ["x:", &"t".repeat(129)].concat();
        assert!(parse_reference(&tag128).is_ok());
        let short = ["x@sha256:", &"f".repeat(31)].concat();
        let bad = [
            "x:",
            "x@",
            "a/",
            "/a",
            "a//b",
            "-a",
            "a-",
            "a.",
            ".a",
            "a..b",
            "a___b",
            "a._b",
            "a.-b",
            "A",
            "a/B",
            "a:b:c",
            "a@b@c",
            "busybox\n",
            " busybox",
            "a b",
            "foo-/bar",
            "-foo.com/bar",
            "foo.com:/bar",
            "foo.com:5x/bar",
            "a/b:t/c",
            tag129.as_str(),
            short.as_str(),
            "x@1sha256:ffffffffffffffffffffffffffffffffffff",
            "x@sha256:gggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggggg",
        ];
        for input in bad {
            assert_eq!(parse_reference(input), Err(ReferenceError::InvalidFormat), "{input:?}");
        }
        // Grammar-valid digests with other algorithms or lengths fail the post-check.
        let md5ish = ["x@md5:", &"f".repeat(32)].concat();
        assert_eq!(parse_reference(&md5ish), Err(ReferenceError::DigestUnsupported));
        let sha384 = ["x@sha384:", &"f".repeat(64)].concat();
        assert_eq!(parse_reference(&sha384), Err(ReferenceError::DigestInvalidLength));
        // NameTooLong is checked before the digest.
        let long = ["a".repeat(300), "@md5:".into(), "f".repeat(32)].concat();
        assert_eq!(parse_reference(&long), Err(ReferenceError::NameTooLong));
    }

    #[test]
    fn fixture_metadata_name() {
        let normalized = normalize_reference("docker.io/library/python:3.12");
        assert_eq!(normalized.as_deref(), Ok("docker.io/library/python:3.12"));
        assert_eq!(
            metadata_file_name("docker.io/library/python:3.12"),
            "9f39de2cc07aeb65b0c8d87b811d86acce5f86cd7b201b9e906d875b03aa70ff.json"
        );
        assert_eq!(normalize_reference("python:3.12"), normalized);
    }

    #[test]
    fn microsandbox_digest_rules() {
        let good = [
            ("sha256:abc123", "sha256", "abc123"),
            (
                "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
                "sha256+b64u",
                "LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
            ),
            ("foo:bar", "foo", "bar"),
            ("+sha:x", "+sha", "x"),
            ("_digest:somevalue", "_digest", "somevalue"),
            ("sha256:ABC=", "sha256", "ABC="),
        ];
        for (input, algorithm, encoded) in good {
            assert_eq!(parse_digest(input), Ok(Digest { algorithm, encoded }), "{input}");
        }
        let bad: [(&str, &str); 13] = [
            ("sha256abc123", "digest_missing_colon"),
            ("", "digest_missing_colon"),
            (":abc123", "digest_empty_component"),
            ("sha256:", "digest_empty_component"),
            (":", "digest_empty_component"),
            ("SHA256:abc123", "digest_invalid_algorithm"),
            ("sha256.:abc123", "digest_invalid_algorithm"),
            ("sha256..v2:abc123", "digest_invalid_algorithm"),
            ("+:abc", "digest_invalid_algorithm"),
            ("sha256:has.dot", "digest_invalid_encoded"),
            ("sha256:../../escape", "digest_invalid_encoded"),
            ("sha256:a:b", "digest_invalid_encoded"),
            ("sha256:é", "digest_invalid_encoded"),
        ];
        for (input, code) in bad {
            assert_eq!(parse_digest(input).map_err(|e| e.code()), Err(code), "{input:?}");
        }
        assert_eq!(
            parse_digest("SHA256:x").map_err(|e| e.to_string()),
            Err("invalid digest algorithm: SHA256:x".to_string())
        );
    }

    #[test]
    fn oci_digest_rules() {
        let sha256 = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
        let sha384 = "sha384:6c3c624b58dbbcd4d1247c6eebdaab7c610cf7d66709b3b3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
        let sha512 = "sha512:6c3c624b58dbbcd3c0dd826c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3bb4c53f04194d1247c6eebdaab7c610cf7d66709b3b";
        for input in [
            sha256,
            sha384,
            sha512,
            "foo:bar",
            "xxhash:42",
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        ] {
            assert!(parse_oci_digest(input).is_ok(), "{input}");
        }
        let invalid = [
            "",
            "foo",
            ":",
            "blah+",
            "_digest:somevalue",
            ":blah",
            "blah:",
            "FooBar:123abc",
            "^:foo",
            "bar^baz:blah",
            "sha256:123456*78",
            "sha256:6c3c624b58dbbcd3c0dd82b4z53f04194d1247c6eebdaab7c610cf7d66709b3b",
            "sha384:x",
            "sha384:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
            "sha512:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
            "sha256:6C3C624B58DBBCD3C0DD82B4C53F04194D1247C6EEBDAAB7C610CF7D66709B3B",
        ];
        for input in invalid {
            assert!(parse_oci_digest(input).is_err(), "{input:?}");
        }
        assert_eq!(parse_oci_digest("sha384:x").map_err(|e| e.code()), Err("digest_wrong_length"));
        assert_eq!(
            parse_oci_digest(&sha256.to_uppercase().replacen("SHA", "sha", 1)).map_err(|e| e.code()),
            Err("digest_not_lowercase_hex")
        );
        // The 0.6.2 parser is laxer: no length check.
        assert!(parse_digest("sha384:x").is_ok());
    }

    #[test]
    fn path_safe_names() {
        assert_eq!(path_safe("sha256:abc123"), "sha256_abc123");
        assert_eq!(path_safe("sha/256:../../escape"), "sha_256_.._.._escape");
        assert_eq!(path_safe("sha256+b64u:LCa0=_-"), "sha256+b64u_LCa0=_-");
        assert_eq!(path_safe("a:é"), "a___"); // one '_' per byte, as in microsandbox
        let d = parse_digest("sha256:ab").unwrap_or(Digest { algorithm: "", encoded: "" });
        assert_eq!(d.path_safe(), "sha256_ab");
        assert_eq!(d.to_string(), "sha256:ab");
    }

    /// The table against an independent source, for every Unicode scalar value: regex-syntax's
    /// own `\w` (`regex_syntax::try_is_word_character`, from its `unicode-perl` tables, which
    /// ucd-generate made from the Unicode 16.0.0 UCD). Our table was generated separately, so a
    /// range typed or cut wrongly shows here; a regex-syntax release on another Unicode version
    /// would too, and then both the table and its doc must move together.
    #[test]
    fn word_table_matches_regex_syntax() {
        let mut differ = alloc::vec::Vec::new();
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let theirs = regex_syntax::try_is_word_character(c)
                .expect("regex-syntax is a dev-dependency with its unicode-perl feature");
            if is_word_char(c) != theirs {
                differ.push(u32::from(c));
            }
        }
        assert!(
            differ.is_empty(),
            "{} code points differ from regex-syntax's \\w, the first: {:X?}",
            differ.len(),
            differ.get(..differ.len().min(16))
        );
    }

    #[test]
    fn word_table_is_sorted_and_disjoint() {
        assert!(PERL_WORD_NON_ASCII.windows(2).all(|w| matches!(w, [a, b] if a.0 <= a.1 && a.1 < b.0)));
        assert!(PERL_WORD_NON_ASCII.first().is_some_and(|r| r.0 >= 0x80));
        assert!(is_word_char('é') && is_word_char('日') && is_word_char('\u{200D}') && !is_word_char('€'));
    }

    #[test]
    fn error_codes_and_texts() {
        assert_eq!(ReferenceError::InvalidFormat.to_string(), "invalid reference format");
        assert_eq!(
            ReferenceError::NameTooLong.to_string(),
            "repository name must not be more than 255 characters"
        );
        assert_eq!(ReferenceError::Empty.code(), "reference_empty");
        assert_eq!(ReferenceError::DigestUnsupported.code(), "reference_digest_unsupported");
    }
}
