//! The harness as a program (`cargo run -p vm-tests -- --help`); `cargo test -p vm-tests` runs the
//! same code through `tests/vm.rs`. The self-tests run this binary on fixture directories.

fn main() -> std::process::ExitCode {
    vm_tests::harness::main(vm_tests::harness::Defaults::from_crate(env!(
        "CARGO_MANIFEST_DIR"
    )))
}
