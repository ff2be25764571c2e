//! Profiling helper: loop the regmesh-sip parse (and accessors) for `perf`.
use std::hint::black_box;
fn main() {
    let msg = include_bytes!("../../../../crates/sip/tests/fixtures/rfc3261/register-f1.dat");
    let mode = std::env::args().nth(1).unwrap_or_default();
    for _ in 0..3_000_000 {
        let m = regmesh_sip::parse(black_box(msg)).expect("valid");
        if mode == "full" {
            if let regmesh_sip::Message::Request(r) = &m {
                black_box(r.validate().is_ok());
                black_box(r.to().map(|t| t.uri.aor()).is_ok());
                black_box(r.contacts().is_ok());
                black_box(r.expires().is_ok());
            }
        }
        black_box(m);
    }
}
