//! The manifest parser: parse; an accepted manifest re-serialises to canonical bytes that parse
//! to the same manifest and the same digest; then the bytes as `manifest.json` of a one-snapshot
//! bundle through the whole validator (both chunkings agree).
#![no_main]
use libfuzzer_sys::fuzz_target;
use snapbundle_core::Manifest;
use snapbundle_fuzz::{begin, check_validator};
use snapbundle_tests::builder::Tar;

fuzz_target!(|data: &[u8]| {
    begin(data);
    let parsed = Manifest::from_bytes(data);
    let mut upper = ("upper.ext4".to_string(), 4096usize);
    if let Ok(m) = &parsed {
        let canonical = m.canonical_bytes();
        let again = Manifest::from_bytes(&canonical).expect("canonical bytes of a parsed manifest parse");
        assert_eq!(&again, m, "canonical round trip changed the manifest");
        assert_eq!(again.digest(), m.digest());
        assert_eq!(Manifest::archive_prefix(&m.digest()).len(), "sha256-".len() + 16);
        if m.upper.size_bytes <= 64 << 10 && !m.upper.file.is_empty() && m.upper.file.len() <= 80 {
            upper = (m.upper.file.clone(), m.upper.size_bytes as usize);
        }
    }
    let tar = Tar::new()
        .file("snap/manifest.json", data)
        .file(&format!("snap/{}", upper.0), &vec![0u8; upper.1])
        .end()
        .build();
    let r = check_validator(&tar);
    if parsed.is_err() {
        assert!(r.is_err(), "the validator accepted a manifest the parser rejects");
    }
});
