//! A folder that moves from another machine (`ssh://host/path`): the real rsync over a stand-in for ssh that
//! runs each command "on A" — in a mount namespace where A's own `/etc/passwd` and `/etc/group` replace this
//! machine's — so A and B give the same user name different numbers, as two NixOS machines do whose system users
//! were created in another order (NixOS gives a system user without a fixed uid the next free one).

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Command;

/// A line of a passwd or group file with its id fields (third, and fourth for passwd) replaced.
fn renumber(text: &str, name: &str, id: u32) -> String {
    let mut found = false;
    let out: Vec<String> = text
        .lines()
        .map(|line| {
            let mut fields: Vec<String> = line.split(':').map(str::to_owned).collect();
            if fields.first().map(String::as_str) == Some(name) && fields.len() > 3 {
                found = true;
                fields[2] = id.to_string();
                if fields.len() == 7 {
                    fields[3] = (id + 1).to_string();
                }
            }
            fields.join(":")
        })
        .collect();
    assert!(found, "no `{name}` line to renumber");
    out.join("\n") + "\n"
}

fn id_of(flag: &str, name: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().unwrap();
    assert!(out.status.success(), "id {flag} {name}");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// At A the user `daemon` is 4242 (group `daemon` 4243), at B (this machine) what Debian gives it (1). A file of
/// A's `daemon` arrives at B owned by B's `daemon`, a file of A's root by root, and the run's verification (A's
/// manifest read over the same ssh with `fedigen migrate manifest`) finds the folders equal. With owners copied
/// by number (`rsync --numeric-ids`, what the job did before) B's file belongs to uid 4242, a user B lacks.
#[test]
fn a_folder_from_another_machine_keeps_its_owners_by_name_not_by_number() {
    assert!(
        Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n")),
        "this test gives files to other users and mounts A's user database in a namespace: run it as root (CI does)"
    );
    let root = tempfile::tempdir().unwrap();
    let p = root.path();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let a_etc = p.join("a-etc");
    std::fs::create_dir(&a_etc).unwrap();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let group = std::fs::read_to_string("/etc/group").unwrap();
    write(
        &a_etc.join("passwd"),
        &renumber(&passwd, "daemon", 4242),
        0o644,
    );
    write(
        &a_etc.join("group"),
        &renumber(&group, "daemon", 4243),
        0o644,
    );

    // What `ssh a -- COMMAND…` does on A: COMMAND with A's users (rsync passes no `--`).
    let bin = p.join("bin");
    std::fs::create_dir(&bin).unwrap();
    write(
        &bin.join("ssh"),
        "#!/bin/sh\nshift\n[ \"$1\" = -- ] && shift\n\
         exec unshare --mount sh -c 'mount --bind \"$0/passwd\" /etc/passwd && mount --bind \"$0/group\" /etc/group && exec \"$@\"' \"$FEDIGEN_TEST_A_ETC\" \"$@\"\n",
        0o755,
    );

    let a = p.join("a/state");
    std::fs::create_dir_all(a.join("media")).unwrap();
    write(&a.join("media/photo"), "the photo", 0o640);
    write(&a.join("config"), "root's", 0o600);
    std::os::unix::fs::chown(a.join("media/photo"), Some(4242), Some(4243)).unwrap();
    std::os::unix::fs::chown(a.join("media"), Some(4242), Some(4243)).unwrap();

    let job = serde_json::json!({
        "operator": "op",
        "databases": [],
        "buckets": [],
        "directories": [{ "name": "data", "source": format!("ssh://a{}", a.display()), "target": p.join("b/state") }],
        "identity": [],
        "commands": {},
    });
    let job_file = p.join("job.json");
    std::fs::write(&job_file, job.to_string()).unwrap();
    let fedigen = Path::new(env!("CARGO_BIN_EXE_fedigen"));
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        fedigen.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(fedigen)
        .args(["--quiet", "migrate", "run", "--job"])
        .arg(&job_file)
        .arg("--journal")
        .arg(p.join("journal"))
        .env("PATH", path)
        .env("FEDIGEN_TEST_A_ETC", &a_etc)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let b = p.join("b/state");
    let owner = |path: &Path| {
        let m = std::fs::metadata(path).unwrap();
        (m.uid(), m.gid())
    };
    let daemon = (id_of("-u", "daemon"), id_of("-g", "daemon"));
    assert_ne!(daemon.0, 4242);
    assert_eq!(owner(&b.join("media/photo")), daemon, "A's daemon's file");
    assert_eq!(owner(&b.join("media")), daemon, "A's daemon's folder");
    assert_eq!(owner(&b.join("config")), (0, 0), "A's root's file");
    assert_eq!(
        std::fs::read_to_string(b.join("media/photo")).unwrap(),
        "the photo"
    );
    assert_eq!(
        std::fs::metadata(b.join("media/photo"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o640
    );
}
