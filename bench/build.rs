//! Writes `wide.rs`: a session schema of 100 `String` keys (`k0` … `k99`) and a list of them,
//! for the benchmark of sessions with many keys (`--keys`). Generated rather than written out:
//! a hundred fields by hand would hide what the schema is.

use std::fmt::Write;

const KEYS: usize = 100;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let mut fields = String::new();
    let mut keys = String::new();
    for i in 0..KEYS {
        writeln!(fields, "    k{i}: String,").unwrap();
        write!(keys, "Wide::K{i}, ").unwrap();
    }
    let source = format!(
        "/// A session schema of {KEYS} string keys.\n\
         #[derive(typed_sessions::SessionSchema)]\n\
         pub(crate) struct Wide {{\n{fields}}}\n\n\
         /// Every key of [`Wide`], in order.\n\
         pub(crate) const WIDE_KEYS: [typed_sessions::Key<Wide, String>; {KEYS}] = [{keys}];\n"
    );
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("wide.rs");
    std::fs::write(out, source).unwrap();
}
