use snapbundle_tests::fixtures::*;
#[test]
fn probe() {
    for f in all_fixtures() {
        let t = std::time::Instant::now();
        let r = snapbundle_core::validate(&f.bytes, snapbundle_core::Limits::default());
        match r {
            Ok(rep) => println!("{} ok={} -> OK head={} files={:?} ({:?})", f.file_name, f.expect.ok, rep.head_prefix, rep.files.iter().map(|x| (&x.path, x.size)).collect::<Vec<_>>(), t.elapsed()),
            Err(e) => println!("{} ok={} -> ERR {} / {} : {} ({:?})", f.file_name, f.expect.ok, e.kind(), e.code(), e, t.elapsed()),
        }
    }
}
