//! Compile-fail and pass cases for `#[derive(SessionSchema)]` and the typed `Session` API.
//!
//! Each `tests/ui/fail/*.rs` makes one mistake (the file is named after it) and its `.stderr`
//! is the compiler's answer; each `tests/ui/pass/*.rs` must build (and run) cleanly.
//! Regenerate the snapshots with `TRYBUILD=overwrite cargo test -p typed-sessions-ui-tests`,
//! then read them: they are never edited by hand.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
