//! `cargo test -p vm-tests`: every generated VM test and reproducibility check in
//! `vm-tests/generated/` is one trial (see README.md). Flags after `--` are libtest's and the
//! harness's own (`cargo test -p vm-tests --test vm -- --help`).

fn main() -> std::process::ExitCode {
    vm_tests::harness::main()
}
