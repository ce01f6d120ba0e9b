use std::time::Instant;
#[test]
fn probe() {
    let dir = "/work/shared/fixtures/microsandbox-0.6.2";
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| !p.to_string_lossy().ends_with(".json")).collect();
    names.sort();
    for p in names {
        let b = std::fs::read(&p).unwrap();
        let t = Instant::now();
        let r = snapbundle_core::validate(&b, Default::default());
        println!("{:?} {:?} {:?}", p.file_name().unwrap(), t.elapsed(), r.as_ref().map(|_| "ok").map_err(|e| (e.code(), e.to_string())));
    }
}
