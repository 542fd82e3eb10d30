//! The harness as a program (`cargo run -p vm-tests -- --help`); `cargo test -p vm-tests` runs the
//! same code through `tests/vm.rs`. The self-tests run this binary on fixture directories. It runs on
//! the repository it is started in (see `harness::locate_repository`), not the one it was built in.

fn main() -> std::process::ExitCode {
    vm_tests::harness::main()
}
