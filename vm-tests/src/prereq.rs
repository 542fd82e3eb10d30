//! Prerequisites, detected honestly: by running things, not by looking for device nodes.
//!
//! Each check runs at most once per harness run, and only when a selected trial needs it.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::spec::{Requirement, TrialSpec};

/// Why a trial cannot run here, worded for the person running it: what is missing
/// ([`Missing::needs`], short enough for libtest's per-trial line) and how to provide it
/// ([`Missing::how`], printed once per run however many trials it affects).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Missing {
    /// What is missing, as `needs …` (e.g. `needs nixpkgs`).
    pub needs: String,
    /// What was found instead, and how to provide it (e.g. `set FEDIGEN_NIXPKGS=/path/to/nixpkgs`).
    pub how: String,
}

impl Missing {
    fn new(needs: &str, how: impl Into<String>) -> Self {
        Missing {
            needs: format!("needs {needs}"),
            how: how.into(),
        }
    }
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.needs, self.how)
    }
}

/// How QEMU will run a guest on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation that was seen to boot a guest.
    Kvm,
    /// Software emulation; the reason says why KVM was not used.
    Tcg {
        /// Why KVM is not usable (probe output, missing device, or `FEDIGEN_KVM=0`).
        kvm_unusable: String,
    },
}

impl Accel {
    /// The value passed to expressions as `--argstr accel` and to QEMU's `-accel`.
    pub fn name(&self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg { .. } => "tcg",
        }
    }
}

/// Where the harness looks for things, from flags and environment (see README.md).
#[derive(Debug, Clone, Default)]
pub struct Locations {
    /// `--nixpkgs` / `FEDIGEN_NIXPKGS`.
    pub nixpkgs: Option<PathBuf>,
    /// `FEDIGEN_KERNEL_DIR`, else the caches `vm-tests/install-deps` fills.
    pub kernel_dirs: Vec<PathBuf>,
    /// `FEDIGEN_QEMU`, else `qemu-system-x86_64` on `PATH`.
    pub qemu: Option<PathBuf>,
    /// `FEDIGEN_KVM`: `0` skips the probe (KVM unusable), `1` trusts KVM without probing.
    pub kvm_override: Option<bool>,
}

/// The lazily probed facts about this machine that trials depend on.
#[derive(Debug)]
pub struct Prereqs {
    loc: Locations,
    nix: OnceLock<Result<String, Missing>>,
    qemu: OnceLock<Result<PathBuf, Missing>>,
    accel: OnceLock<Result<Accel, Missing>>,
    kernel: OnceLock<Result<PathBuf, Missing>>,
}

/// What a trial gets when all its prerequisites are present.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// nixpkgs path, passed as `--argstr nixpkgs` and `-I nixpkgs=`.
    pub nixpkgs: Option<PathBuf>,
    /// QEMU binary, passed as `--argstr qemu`.
    pub qemu: Option<PathBuf>,
    /// Accelerator QEMU will use, passed as `--argstr accel`.
    pub accel: Option<Accel>,
    /// Unpacked kernel package, passed as `--argstr kernelDir`.
    pub kernel_dir: Option<PathBuf>,
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

impl Prereqs {
    /// Prepares (but does not yet run) the checks.
    pub fn new(loc: Locations) -> Self {
        Prereqs {
            loc,
            nix: OnceLock::new(),
            qemu: OnceLock::new(),
            accel: OnceLock::new(),
            kernel: OnceLock::new(),
        }
    }

    /// `nix-build --version`, or why Nix cannot be used.
    pub fn nix(&self) -> Result<&str, &Missing> {
        self.nix
            .get_or_init(|| {
                match Command::new("nix-build")
                    .arg("--version")
                    .stdin(Stdio::null())
                    .output()
                {
                    Ok(out) if out.status.success() => {
                        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
                    }
                    Ok(out) => Err(Missing::new(
                        "a working Nix",
                        format!(
                            "`nix-build --version` failed ({}): {}; repair the Nix installation \
                             (scripts/install-test-deps installs Debian's nix-bin)",
                            out.status,
                            String::from_utf8_lossy(&out.stderr).trim()
                        ),
                    )),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Missing::new(
                        "Nix",
                        "nix-build is not on PATH; install it with scripts/install-test-deps \
                         (Debian's nix-bin)",
                    )),
                    Err(e) => Err(Missing::new(
                        "Nix",
                        format!(
                            "nix-build cannot be started ({e}); install it with \
                             scripts/install-test-deps (Debian's nix-bin)"
                        ),
                    )),
                }
            })
            .as_deref()
    }

    /// The nixpkgs checkout, or why there is none.
    pub fn nixpkgs(&self) -> Result<&Path, Missing> {
        let Some(p) = &self.loc.nixpkgs else {
            return Err(Missing::new(
                "nixpkgs",
                "set FEDIGEN_NIXPKGS=/path/to/nixpkgs (a nixpkgs checkout; or pass --nixpkgs)",
            ));
        };
        if p.join("default.nix").is_file() || p.join("flake.nix").is_file() {
            Ok(p)
        } else {
            Err(Missing::new(
                "nixpkgs",
                format!(
                    "the nixpkgs given (FEDIGEN_NIXPKGS or --nixpkgs), {}, has no default.nix or \
                     flake.nix; point it at a nixpkgs checkout",
                    p.display()
                ),
            ))
        }
    }

    /// The QEMU binary, or why there is none.
    pub fn qemu(&self) -> Result<&Path, &Missing> {
        self.qemu
            .get_or_init(|| {
                let q = self
                    .loc
                    .qemu
                    .clone()
                    .or_else(|| find_on_path("qemu-system-x86_64"));
                match q {
                    Some(q) if q.is_file() => Ok(q),
                    Some(q) => Err(Missing::new(
                        "QEMU",
                        format!(
                            "FEDIGEN_QEMU={} is not a file; point it at qemu-system-x86_64, or \
                             unset it and run vm-tests/install-deps",
                            q.display()
                        ),
                    )),
                    None => Err(Missing::new(
                        "QEMU",
                        "qemu-system-x86_64 is not on PATH; install it with vm-tests/install-deps \
                         (or set FEDIGEN_QEMU=/path/to/qemu-system-x86_64)",
                    )),
                }
            })
            .as_deref()
    }

    /// Which accelerator QEMU can use: KVM only if a probe guest really boots with it.
    pub fn accel(&self) -> Result<&Accel, &Missing> {
        self.accel
            .get_or_init(|| {
                let qemu = self.qemu().map_err(Clone::clone)?;
                Ok(match self.loc.kvm_override {
                    Some(true) => Accel::Kvm,
                    Some(false) => Accel::Tcg {
                        kvm_unusable: "FEDIGEN_KVM=0 says KVM is not to be used".to_owned(),
                    },
                    None => {
                        let timeout = Duration::from_secs(20);
                        let probed = probe_kvm(qemu, timeout).and_then(|()| {
                            // The kernel, when it is there, is the stricter test.
                            match self.kernel_dir().ok().and_then(vmlinuz) {
                                Some(k) => probe_accel_kernel(qemu, "kvm", &k, timeout)
                                    .map_err(|e| format!("/dev/kvm runs a boot sector but {e}")),
                                None => Ok(()),
                            }
                        });
                        match probed {
                            Ok(()) => Accel::Kvm,
                            Err(why) => Accel::Tcg { kvm_unusable: why },
                        }
                    }
                })
            })
            .as_ref()
    }

    /// The unpacked Debian cloud kernel (a directory with `boot/vmlinuz-*`), or why there is none.
    pub fn kernel_dir(&self) -> Result<&Path, &Missing> {
        self.kernel
            .get_or_init(|| {
                for dir in &self.loc.kernel_dirs {
                    let has_kernel = std::fs::read_dir(dir.join("boot"))
                        .map(|entries| {
                            entries
                                .flatten()
                                .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"))
                        })
                        .unwrap_or(false);
                    if has_kernel {
                        return Ok(dir.clone());
                    }
                }
                Err(Missing::new(
                    "Debian's cloud kernel",
                    format!(
                        "no boot/vmlinuz-* in {}; unpack it with vm-tests/install-deps (or set \
                         FEDIGEN_KERNEL_DIR=/path/to/unpacked/kernel)",
                        self.loc
                            .kernel_dirs
                            .iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ))
            })
            .as_deref()
    }

    /// Checks every prerequisite of `spec`: the values to pass on, or the first reason it cannot run.
    pub fn resolve(&self, spec: &TrialSpec) -> Result<Resolved, Missing> {
        let mut r = Resolved::default();
        self.nix().map_err(Clone::clone)?;
        if spec.needs(Requirement::Nixpkgs) {
            r.nixpkgs = Some(self.nixpkgs()?.to_owned());
        }
        if spec.needs(Requirement::Kernel) {
            r.kernel_dir = Some(self.kernel_dir().map_err(Clone::clone)?.to_owned());
        }
        if spec.needs(Requirement::Qemu) || spec.needs(Requirement::Kvm) {
            r.qemu = Some(self.qemu().map_err(Clone::clone)?.to_owned());
            let accel = self.accel().map_err(Clone::clone)?.clone();
            if let (true, Accel::Tcg { kvm_unusable }) = (spec.needs(Requirement::Kvm), &accel) {
                return Err(Missing::new(
                    "a working KVM",
                    format!(
                        "{kvm_unusable}; run it on a machine whose KVM boots guests (FEDIGEN_KVM=1 \
                         skips the probe)"
                    ),
                ));
            }
            r.accel = Some(accel);
        }
        Ok(r)
    }
}

/// The `boot/vmlinuz-*` of an unpacked kernel package (the first by name).
fn vmlinuz(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("boot"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// A 512-byte x86 boot sector that prints `FEDIGEN-KVM-PROBE-OK` on COM1 and halts.
///
/// Real-mode code: `xor ax,ax; mov ds,ax; cld; mov si,msg; l: lodsb; test al,al; jz d;
/// mov dx,0x3f8; out dx,al; jmp l; d: cli; hlt; jmp d`, then the message and the boot signature.
pub fn probe_boot_sector() -> [u8; 512] {
    const CODE: &[u8] = &[
        0x31, 0xC0, 0x8E, 0xD8, 0xFC, 0xBE, 0x17, 0x7C, 0xAC, 0x84, 0xC0, 0x74, 0x06, 0xBA, 0xF8,
        0x03, 0xEE, 0xEB, 0xF5, 0xFA, 0xF4, 0xEB, 0xFC,
    ];
    let mut sector = [0u8; 512];
    sector[..CODE.len()].copy_from_slice(CODE);
    let msg = b"FEDIGEN-KVM-PROBE-OK\r\n\0";
    sector[CODE.len()..CODE.len() + msg.len()].copy_from_slice(msg);
    sector[510] = 0x55;
    sector[511] = 0xAA;
    sector
}

/// Boots [`probe_boot_sector`] with QEMU and `accel` (`kvm` or `tcg`); `Ok` when the guest's
/// message arrives on the serial console within `timeout`, else what went wrong.
pub fn probe_accel(qemu: &Path, accel: &str, timeout: Duration) -> Result<(), String> {
    probe_guest(qemu, accel, None, timeout)
}

/// Boots `kernel` (a Linux `vmlinuz`, no initramfs) with QEMU and `accel`; `Ok` once the kernel has
/// printed its banner on the serial console within `timeout`. A nested KVM can run a boot sector
/// and still hang a real kernel before its first line, so this is the probe that decides.
pub fn probe_accel_kernel(
    qemu: &Path,
    accel: &str,
    kernel: &Path,
    timeout: Duration,
) -> Result<(), String> {
    probe_guest(qemu, accel, Some(kernel), timeout)
}

fn probe_guest(
    qemu: &Path,
    accel: &str,
    kernel: Option<&Path>,
    timeout: Duration,
) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let mut cmd = Command::new(qemu);
    cmd.args(["-accel", accel, "-display", "none", "-serial"])
        .arg(format!("file:{}", dir.path().join("serial.log").display()))
        .args(["-monitor", "none", "-no-reboot"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (expected, guest) = match kernel {
        Some(kernel) => {
            cmd.args(["-m", "256", "-kernel"])
                .arg(kernel)
                .args(["-append", "console=ttyS0 panic=-1"]);
            ("Linux version", "a Linux kernel")
        }
        None => {
            let image = dir.path().join("probe.img");
            std::fs::write(&image, probe_boot_sector())
                .map_err(|e| format!("writing probe: {e}"))?;
            cmd.args(["-m", "16", "-drive"])
                .arg(format!("file={},format=raw", image.display()));
            ("FEDIGEN-KVM-PROBE-OK", "a probe guest")
        }
    };
    if accel == "kvm" {
        cmd.args(["-cpu", "host"]);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting {}: {e}", qemu.display()))?;
    let start = Instant::now();
    let serial = dir.path().join("serial.log");
    let outcome = loop {
        let text =
            String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
        if text.contains(expected) {
            break Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            break Err(format!(
                "QEMU with -accel {accel} exited ({status}) before {guest} printed: {}",
                err.trim().replace('\n', " | ")
            ));
        }
        if start.elapsed() > timeout {
            break Err(format!(
                "QEMU with -accel {accel} did not boot {guest} within {}s",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// Whether KVM really works here: `/dev/kvm` must exist and a probe guest must boot with it.
pub fn probe_kvm(qemu: &Path, timeout: Duration) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".to_owned());
    }
    probe_accel(qemu, "kvm", timeout).map_err(|e| format!("/dev/kvm exists but {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_layout() {
        let s = probe_boot_sector();
        assert_eq!(&s[510..], &[0x55, 0xAA]);
        // `mov si, msg` must point at the message.
        let msg_addr = u16::from_le_bytes([s[6], s[7]]) as usize - 0x7C00;
        assert!(s[msg_addr..].starts_with(b"FEDIGEN-KVM-PROBE-OK"));
    }

    /// The probe guest must boot under software emulation, else a failed KVM probe would prove
    /// nothing. Needs QEMU (vm-tests/install-deps).
    #[test]
    fn probe_guest_boots_under_tcg() {
        let qemu = find_on_path("qemu-system-x86_64")
            .expect("qemu-system-x86_64 not installed: run vm-tests/install-deps");
        probe_accel(&qemu, "tcg", Duration::from_secs(30)).unwrap();
        // And a probe of an accelerator that cannot work reports why, promptly.
        let err = probe_accel(&qemu, "no-such-accel", Duration::from_secs(30)).unwrap_err();
        assert!(err.contains("no-such-accel"), "{err}");
    }

    /// The stricter probe: Debian's kernel prints its banner under software emulation, so when
    /// it does not under KVM, KVM is what fails. Needs the kernel (vm-tests/install-deps).
    #[test]
    fn kernel_probe_boots_under_tcg() {
        let qemu = find_on_path("qemu-system-x86_64")
            .expect("qemu-system-x86_64 not installed: run vm-tests/install-deps");
        let dirs = [
            PathBuf::from("/var/cache/fedigen/kernel"),
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.cache/kernel")),
        ];
        let kernel = dirs
            .iter()
            .find_map(|d| vmlinuz(d))
            .expect("Debian's cloud kernel is not unpacked: run vm-tests/install-deps");
        probe_accel_kernel(&qemu, "tcg", &kernel, Duration::from_secs(60)).unwrap();
    }
}
