//! The store formats of `fedigen::store`, proven byte-for-byte against the real Nix on PATH (Debian's Nix 2.8):
//! `nix-hash`, `nix-store --dump`, `nix-store --add`, `nix-store --add-fixed`, `nix-instantiate`.
//! Each test that lets Nix write uses its own throwaway store (`--store <tempdir>`).

use fedigen::store::drv::{Derivation, DrvHasher};
use fedigen::store::hash::{Hash, HashAlgo};
use fedigen::store::nar::{self, NarNode};
use fedigen::store::path::{IngestionMethod, StoreDir};
use fedigen::store::{StorePath, base32};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

mod support;

fn nix(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = support::nix_command(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} must be on PATH: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn nix_text(cmd: &str, args: &[&str]) -> String {
    String::from_utf8(nix(cmd, args))
        .unwrap()
        .trim_end()
        .to_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tree with every NAR node kind, the execute-bit rules, and the sorting traps (upper before lower case, UTF-8 after ASCII, a name
/// that is a prefix of another, empty file, empty directory, executable, symlinks inside and out).
fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("dir/sub/empty")).unwrap();
    fs::write(root.join("a"), "hello\n").unwrap();
    fs::write(root.join("B"), "").unwrap();
    fs::write(root.join("é"), vec![0u8; 13]).unwrap();
    fs::write(
        root.join("ab"),
        (0..=255u8).cycle().take(10_000).collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(root.join("dir/x.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(root.join("dir/x.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("dir/sub/seven"), "1234567").unwrap();
    // Only the owner's execute bit counts in a NAR.
    fs::write(root.join("dir/owner-x"), "a").unwrap();
    fs::set_permissions(root.join("dir/owner-x"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(root.join("dir/other-x"), "b").unwrap();
    fs::set_permissions(root.join("dir/other-x"), fs::Permissions::from_mode(0o645)).unwrap();
    std::os::unix::fs::symlink("../a", root.join("dir/link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", root.join("dangling")).unwrap();
}

#[test]
fn base32_matches_nix_hash() {
    let hashes: Vec<Vec<u8>> = (0u8..8)
        .map(|i| sha2::Sha256::digest([i]).to_vec())
        .chain([vec![0u8; 32], vec![0xff; 32]])
        .collect();
    let hex: Vec<String> = hashes
        .iter()
        .map(|h| Hash::new(HashAlgo::Sha256, h.clone()).unwrap().to_base16())
        .collect();
    let mut args = vec!["--type", "sha256", "--to-base32"];
    args.extend(hex.iter().map(String::as_str));
    let nix32 = nix_text("nix-hash", &args);
    let ours: Vec<String> = hashes.iter().map(|h| base32::encode(h)).collect();
    assert_eq!(nix32.lines().collect::<Vec<_>>(), ours);
    for (h, s) in hashes.iter().zip(nix32.lines()) {
        assert_eq!(&base32::decode(s).unwrap(), h);
    }
}

#[test]
fn nar_dump_and_hash_match_nix() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("tree");
    sample_tree(&root);
    let theirs = nix("nix-store", &["--dump", s(&root)]);
    let mut ours = Vec::new();
    let n = nar::dump_path(&root, &mut ours).unwrap();
    assert_eq!(n as usize, ours.len());
    assert_eq!(ours, theirs, "NAR differs from nix-store --dump");

    let (h, size) = nar::nar_hash_path(&root).unwrap();
    assert_eq!(size as usize, theirs.len());
    assert_eq!(
        h.to_base16(),
        nix_text("nix-hash", &["--type", "sha256", s(&root)])
    );
    assert_eq!(
        h.to_base32(),
        nix_text("nix-hash", &["--type", "sha256", "--base32", s(&root)])
    );

    // The reader accepts Nix's NAR and re-serialises it to the same bytes.
    let parsed = nar::parse_nar(&theirs[..]).unwrap();
    assert_eq!(parsed, NarNode::from_path(&root).unwrap());
    assert_eq!(parsed.to_nar(), theirs);
    // A single file and a lone symlink are NARs too.
    for p in [
        root.join("ab"),
        root.join("dangling"),
        root.join("dir/x.sh"),
    ] {
        let mut ours = Vec::new();
        nar::dump_path(&p, &mut ours).unwrap();
        assert_eq!(
            ours,
            nix("nix-store", &["--dump", s(&p)]),
            "{}",
            p.display()
        );
    }
}

#[test]
fn nar_parser_rejects_what_nix_rejects() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("tree");
    sample_tree(&root);
    let good = nix("nix-store", &["--dump", s(&root)]);
    assert!(
        nar::parse_nar(&good[..good.len() - 8]).is_err(),
        "truncated"
    );
    let mut trailing = good.clone();
    trailing.extend([0u8; 8]);
    assert!(nar::parse_nar(&trailing[..]).is_err(), "trailing bytes");
    // Swap the names "B" and "a" (same length): entries are then unsorted.
    let mut unsorted = good.clone();
    let pos_b = find(&unsorted, b"\x01\0\0\0\0\0\0\0B\0\0\0\0\0\0\0").unwrap();
    let pos_a = find(&unsorted, b"\x01\0\0\0\0\0\0\0a\0\0\0\0\0\0\0").unwrap();
    unsorted[pos_b + 8] = b'a';
    unsorted[pos_a + 8] = b'B';
    assert!(nar::parse_nar(&unsorted[..]).is_err(), "unsorted entries");
    let mut padding = good.clone();
    padding[pos_b + 9] = 1;
    assert!(nar::parse_nar(&padding[..]).is_err(), "non-zero padding");
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn parallel_nar_hashes_match_nix_hash() {
    let t = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for i in 0..6 {
        let p = t.path().join(format!("p{i}"));
        if i % 2 == 0 {
            sample_tree(&p);
            fs::write(p.join("i"), format!("{i}")).unwrap();
        } else {
            fs::write(&p, vec![i as u8; 1000 * i]).unwrap();
        }
        paths.push(p);
    }
    let mut args = vec!["--type", "sha256", "--base32"];
    args.extend(paths.iter().map(|p| s(p)));
    let theirs = nix_text("nix-hash", &args);
    let ours: Vec<String> = nar::nar_hash_paths(&paths)
        .into_iter()
        .map(|r| r.unwrap().0.to_base32())
        .collect();
    assert_eq!(theirs.lines().collect::<Vec<_>>(), ours);
}

#[test]
fn store_paths_of_added_files_match_nix_store() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let src = t.path().join("src");
    fs::create_dir(&src).unwrap();
    let file = src.join("notes.txt");
    fs::write(&file, "some text\n").unwrap();
    let tree = src.join("tree");
    sample_tree(&tree);
    let sd = StoreDir::default();
    let none = BTreeSet::new();
    let nar_sha256 = |p: &Path| nar::nar_hash_path(p).unwrap().0;
    let mut nar_bytes = Vec::new();
    nar::dump_path(&tree, &mut nar_bytes).unwrap();
    let tree_sha512 =
        Hash::new(HashAlgo::Sha512, sha2::Sha512::digest(&nar_bytes).to_vec()).unwrap();
    let file_sha256 = Hash::sha256(&fs::read(&file).unwrap());
    let file_sha512 = Hash::new(
        HashAlgo::Sha512,
        sha2::Sha512::digest(fs::read(&file).unwrap()).to_vec(),
    )
    .unwrap();

    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--add", s(&file)],
            sd.make_fixed_output_path(
                IngestionMethod::Recursive,
                &nar_sha256(&file),
                "notes.txt",
                &none,
                false,
            )
            .unwrap()
            .to_string(),
        ),
        (
            vec!["--add", s(&tree)],
            sd.make_fixed_output_path(
                IngestionMethod::Recursive,
                &nar_sha256(&tree),
                "tree",
                &none,
                false,
            )
            .unwrap()
            .to_string(),
        ),
        (
            vec!["--add-fixed", "sha256", s(&file)],
            sd.make_fixed_output_path(
                IngestionMethod::Flat,
                &file_sha256,
                "notes.txt",
                &none,
                false,
            )
            .unwrap()
            .to_string(),
        ),
        (
            vec!["--add-fixed", "sha512", s(&file)],
            sd.make_fixed_output_path(
                IngestionMethod::Flat,
                &file_sha512,
                "notes.txt",
                &none,
                false,
            )
            .unwrap()
            .to_string(),
        ),
        (
            vec!["--add-fixed", "--recursive", "sha256", s(&tree)],
            sd.make_fixed_output_path(
                IngestionMethod::Recursive,
                &nar_sha256(&tree),
                "tree",
                &none,
                false,
            )
            .unwrap()
            .to_string(),
        ),
        (
            vec!["--add-fixed", "--recursive", "sha512", s(&tree)],
            sd.make_fixed_output_path(
                IngestionMethod::Recursive,
                &tree_sha512,
                "tree",
                &none,
                false,
            )
            .unwrap()
            .to_string(),
        ),
    ];
    for (args, ours) in cases {
        let mut a = vec!["--store", s(&store)];
        a.extend(&args);
        let theirs = nix_text("nix-store", &a);
        assert_eq!(theirs, format!("/nix/store/{ours}"), "nix-store {args:?}");
        // And the chroot store holds exactly the NAR we computed.
        let real = store.join(theirs.trim_start_matches('/'));
        assert_eq!(
            nar::nar_hash_path(&real).unwrap().0.to_base32(),
            nar::nar_hash_path(Path::new(args.last().unwrap()))
                .unwrap()
                .0
                .to_base32()
        );
    }
}

#[test]
fn text_paths_with_references_match_builtins_to_file() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let expr = r#"let a = builtins.toFile "a.txt" "first\n"; b = builtins.toFile "b" "x"; in [ a b (builtins.toFile "c" "uses ${a} and ${b}\ttab") ]"#;
    let out = nix_text(
        "nix-instantiate",
        &[
            "--store",
            s(&store),
            "--eval",
            "--json",
            "--strict",
            "-E",
            expr,
        ],
    );
    let paths: Vec<String> = serde_json::from_str(&out).unwrap();
    let sd = StoreDir::default();
    let none = BTreeSet::new();
    let a = sd.make_text_path("a.txt", b"first\n", &none).unwrap();
    let b = sd.make_text_path("b", b"x", &none).unwrap();
    let contents = format!("uses /nix/store/{a} and /nix/store/{b}\ttab");
    let c = sd
        .make_text_path(
            "c",
            contents.as_bytes(),
            &BTreeSet::from([a.clone(), b.clone()]),
        )
        .unwrap();
    assert_eq!(paths, vec![sd.print(&a), sd.print(&b), sd.print(&c)]);
}

/// Derivations without nixpkgs: busybox from Debian, a fixed-output flat and recursive, two outputs, a
/// dependency on a non-default output, and environment values with every ATerm escape.
pub const DRVS_NIX: &str = r#"
let
  bbDir = builtins.path { name = "busybox-static"; path = /usr/bin; filter = p: t: baseNameOf p == "busybox"; };
  busybox = derivation { name = "busybox"; system = builtins.currentSystem;
    builder = "${bbDir}/busybox";
    args = [ "sh" "-c" "${bbDir}/busybox mkdir -p $out/bin && ${bbDir}/busybox cp ${bbDir}/busybox $out/bin/ && $out/bin/busybox --install -s $out/bin" ]; };
  mk = attrs: derivation ({ system = builtins.currentSystem; builder = "${busybox}/bin/sh"; PATH = "${busybox}/bin"; } // attrs);
  flat = mk { name = "flat-1.0"; args = [ "-c" "echo -n hi > $out" ];
    outputHashMode = "flat"; outputHashAlgo = "sha256";
    outputHash = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4"; };
  rec1 = mk { name = "rec-2"; args = [ "-c" "mkdir $out; echo -n hi > $out/f" ];
    outputHashMode = "recursive"; outputHashAlgo = "sha256";
    outputHash = "0000000000000000000000000000000000000000000000000000"; };
  multi = mk { name = "multi-0.1"; outputs = [ "out" "dev" "doc" ]; args = [ "-c" "mkdir $out $dev $doc" ]; };
  weird = mk { name = "weird-3"; args = [ "-c" "touch $out" "a\"b" "back\\slash" ];
    text = "line1\nline2\r\n\ttab \"quoted\" \\ $dollar \${x} é ü 🦀";
    deps = "${multi.dev} ${flat} ${rec1} ${builtins.toFile "cfg" "k=v"}"; };
in { inherit busybox flat rec1 multi weird; }
"#;

fn instantiate(store: &Path, dir: &Path) -> Vec<String> {
    let file = dir.join("drvs.nix");
    fs::write(&file, DRVS_NIX).unwrap();
    nix_text("nix-instantiate", &["--store", s(store), s(&file)])
        .lines()
        .map(|l| l.split('!').next().unwrap().to_owned())
        .collect()
}

#[test]
fn drv_files_round_trip_and_paths_match_nix_instantiate() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let roots = instantiate(&store, t.path());
    assert_eq!(roots.len(), 5);
    let closure = fedigen::store::closure::read_closure(&store, &roots).unwrap();
    assert_eq!(closure.len(), 5, "busybox, flat, rec, multi, weird");
    let sd = StoreDir::default();
    let mut hasher = DrvHasher::new(&store, sd.clone());
    for (path, drv) in &closure {
        let file = store.join(path.trim_start_matches('/'));
        let bytes = fs::read(&file).unwrap();
        assert_eq!(
            drv.to_aterm().as_bytes(),
            &bytes[..],
            "ATerm round trip of {path}"
        );
        assert_eq!(
            sd.print(&drv.drv_path(&sd).unwrap()),
            *path,
            "drv path of {path}"
        );
        let computed = hasher.output_paths(drv).unwrap();
        let recorded: BTreeMap<String, StorePath> = drv
            .outputs
            .iter()
            .map(|(k, o)| (k.clone(), sd.parse(&o.path).unwrap()))
            .collect();
        assert_eq!(computed, recorded, "output paths of {path}");
        // The environment agrees with the outputs, as Nix guarantees.
        for (k, o) in &drv.outputs {
            assert_eq!(drv.env[k], o.path);
        }
    }
    let weird = closure.values().find(|d| d.name() == "weird-3").unwrap();
    assert_eq!(
        weird.env["text"],
        "line1\nline2\r\n\ttab \"quoted\" \\ $dollar ${x} é ü 🦀"
    );
    assert_eq!(weird.input_srcs.len(), 1, "toFile cfg is a source");
    let multi_ref = weird
        .input_drvs
        .iter()
        .find(|(p, _)| p.ends_with("multi-0.1.drv"))
        .unwrap();
    assert_eq!(multi_ref.1, &BTreeSet::from(["dev".to_owned()]));

    // The filtered source imported by builtins.path is the recursive SHA-256 of a directory holding busybox.
    let bb = closure.values().find(|d| d.name() == "busybox").unwrap();
    let node = NarNode::Directory(BTreeMap::from([(
        b"busybox".to_vec(),
        NarNode::Regular {
            executable: true,
            contents: fs::read("/usr/bin/busybox").unwrap(),
        },
    )]));
    let h = Hash::sha256(&node.to_nar());
    let src = sd
        .make_fixed_output_path(
            IngestionMethod::Recursive,
            &h,
            "busybox-static",
            &BTreeSet::new(),
            false,
        )
        .unwrap();
    assert_eq!(bb.input_srcs, BTreeSet::from([sd.print(&src)]));
}

#[test]
fn show_derivation_agrees_with_parser() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let roots = instantiate(&store, t.path());
    let json = nix(
        "nix",
        &[
            "--store",
            s(&store),
            "show-derivation",
            "--recursive",
            &roots[4],
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let obj = v.as_object().unwrap();
    let closure = fedigen::store::closure::read_closure(&store, &roots[4..]).unwrap();
    assert_eq!(
        obj.keys().cloned().collect::<BTreeSet<_>>(),
        closure.keys().cloned().collect::<BTreeSet<_>>()
    );
    for (p, d) in &closure {
        let j = &obj[p];
        assert_eq!(j["builder"], d.builder.as_str());
        assert_eq!(j["system"], d.platform.as_str());
        assert_eq!(j["args"], serde_json::json!(d.args));
        assert_eq!(j["env"], serde_json::json!(d.env));
        assert_eq!(j["inputSrcs"], serde_json::json!(d.input_srcs));
        for (k, o) in &d.outputs {
            assert_eq!(j["outputs"][k]["path"], o.path.as_str());
        }
    }
    let _: PathBuf = store;
}

#[test]
fn rejects_corrupt_drv() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let roots = instantiate(&store, t.path());
    let file = store.join(roots[0].trim_start_matches('/'));
    let text = fs::read(&file).unwrap();
    assert!(Derivation::parse(&text[..text.len() - 1]).is_err());
    assert!(Derivation::parse(&[&text[..], b" "].concat()).is_err());
    let mut bad = text.clone();
    bad[0] = b'd';
    let err = Derivation::parse(&bad).unwrap_err().to_string();
    assert!(err.contains("at byte 0"), "{err}");
}

#[test]
fn hash_modulo_reproduces_a_deep_closure() {
    // 300 derivations, each depending on up to three earlier ones and on non-default outputs, with fixed-output
    // derivations mixed in: every .drv path and output path must come out as nix-instantiate wrote it.
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    let file = t.path().join("deep.nix");
    fs::write(
        &file,
        r#"let
  mk = i: deps: derivation ({ name = "p${toString i}-0.${toString (i - (i / 5) * 5)}"; system = "x86_64-linux";
    builder = "/bin/sh"; args = [ "-c" "echo ${toString i}" ]; outputs = [ "out" "lib" ];
    deps = map (d: if i - (i / 2) * 2 == 0 && d ? lib then d.lib else d.out) deps; }
    // (if i - (i / 10) * 10 == 3 then { outputs = [ "out" ]; outputHashMode = "recursive"; outputHashAlgo = "sha256";
          outputHash = builtins.hashString "sha256" (toString i); } else { }));
  step = acc: i: acc ++ [ (mk i (if i == 0 then [ ] else [ (builtins.elemAt acc (i - 1)) (builtins.elemAt acc (i / 2)) (builtins.elemAt acc (i / 3)) ])) ];
in mk 300 (builtins.foldl' step [ ] (builtins.genList (i: i) 300))
"#,
    )
    .unwrap();
    let root = nix_text("nix-instantiate", &["--store", s(&store), s(&file)]);
    let root = root.split('!').next().unwrap().to_owned();
    let closure = fedigen::store::closure::read_closure(&store, &[root]).unwrap();
    assert_eq!(closure.len(), 301);
    assert!(closure.values().filter(|d| d.is_fixed_output()).count() >= 29);
    let sd = StoreDir::default();
    let mut hasher = DrvHasher::new(&store, sd.clone());
    for (path, drv) in &closure {
        assert_eq!(
            drv.to_aterm().as_bytes(),
            &fs::read(store.join(path.trim_start_matches('/'))).unwrap()[..]
        );
        assert_eq!(sd.print(&drv.drv_path(&sd).unwrap()), *path);
        for (name, p) in hasher.output_paths(drv).unwrap() {
            assert_eq!(
                sd.print(&p),
                drv.outputs[&name].path,
                "{path} output {name}"
            );
        }
    }
}
