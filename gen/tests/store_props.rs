//! Property tests of the store formats: round trips (base32, NAR, ATerm) and, against the real Nix, NAR hashes
//! of random trees (many trees per `nix-hash` call to keep Nix invocations few).

use fedigen::store::base32;
use fedigen::store::drv::{Derivation, DerivationOutput};
use fedigen::store::nar::{self, NarNode};
use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::collections::BTreeMap;

mod support;

fn name() -> impl Strategy<Value = Vec<u8>> {
    // Any bytes but '/' and NUL; never "." or "..". Includes non-UTF-8 and high bytes to test byte ordering.
    vec(
        prop_oneof![3 => proptest::char::range('a', 'e').prop_map(|c| c as u8), 1 => any::<u8>()],
        1..6,
    )
    .prop_filter("valid NAR name", |n| {
        n != b"." && n != b".." && !n.contains(&b'/') && !n.contains(&0)
    })
}

fn node() -> impl Strategy<Value = NarNode> {
    let leaf = prop_oneof![
        (any::<bool>(), vec(any::<u8>(), 0..40)).prop_map(|(executable, contents)| {
            NarNode::Regular {
                executable,
                contents,
            }
        }),
        vec(1u8..=255, 1..20).prop_map(|target| NarNode::Symlink { target }),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        btree_map(name(), inner, 0..6).prop_map(NarNode::Directory)
    })
}

fn aterm_string() -> impl Strategy<Value = String> {
    // Everything Nix can put in a string, escapes included.
    proptest::string::string_regex("([a-z0-9/$.{}=-]|\"|\\\\|\n|\r|\t| |é|🦀){0,12}").unwrap()
}

fn store_path() -> impl Strategy<Value = String> {
    (vec(0u8..32, 32), "[a-z][a-z0-9.-]{0,8}").prop_map(|(h, n)| {
        let hash: String = h
            .iter()
            .map(|&d| base32::ALPHABET[d as usize] as char)
            .collect();
        format!("/nix/store/{hash}-{n}")
    })
}

fn derivation() -> impl Strategy<Value = Derivation> {
    let output = (
        store_path(),
        prop_oneof![
            Just(String::new()),
            Just("sha256".to_owned()),
            Just("r:sha256".to_owned())
        ],
        "[0-9a-f]{0,4}",
    )
        .prop_map(|(path, hash_algo, hash)| DerivationOutput {
            path,
            hash_algo,
            hash,
        });
    (
        btree_map("[a-z]{1,5}", output, 0..4),
        btree_map(store_path(), btree_set("[a-z]{1,4}", 1..3), 0..4),
        btree_set(store_path(), 0..4),
        "[a-z0-9_-]{1,12}",
        aterm_string(),
        vec(aterm_string(), 0..4),
        btree_map(aterm_string(), aterm_string(), 0..6),
    )
        .prop_map(
            |(outputs, input_drvs, input_srcs, platform, builder, args, env)| Derivation {
                outputs,
                input_drvs,
                input_srcs,
                platform,
                builder,
                args,
                env,
            },
        )
}

proptest! {
    #[test]
    fn base32_round_trip(bytes in vec(any::<u8>(), 0..80)) {
        let s = base32::encode(&bytes);
        prop_assert_eq!(s.len(), base32::encoded_len(bytes.len()));
        prop_assert_eq!(base32::decode(&s).unwrap(), bytes);
    }

    #[test]
    fn base32_decode_is_canonical(s in "[0-9a-df-np-sv-z]{0,60}") {
        // Whatever decodes must encode back to the same text (no two spellings of one hash).
        if let Ok(b) = base32::decode(&s) {
            prop_assert_eq!(base32::encode(&b), s);
        }
    }

    #[test]
    fn nar_round_trip(n in node()) {
        let bytes = n.to_nar();
        prop_assert_eq!(bytes.len() % 8, 0);
        let parsed = nar::parse_nar(&bytes[..]).unwrap();
        prop_assert_eq!(&parsed, &n);
        // Through the filesystem: restore, then stream back out.
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("root");
        n.restore(&p).unwrap();
        let mut dumped = Vec::new();
        nar::dump_path(&p, &mut dumped).unwrap();
        prop_assert_eq!(dumped, bytes);
    }

    #[test]
    fn aterm_round_trip(d in derivation()) {
        let text = d.to_aterm();
        let parsed = Derivation::parse(text.as_bytes()).unwrap();
        prop_assert_eq!(&parsed, &d);
        prop_assert_eq!(parsed.to_aterm(), text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// 6 cases × up to 24 trees, one `nix-hash` call per case.
    #[test]
    fn nar_hash_matches_nix_hash(trees in vec(node(), 1..24)) {
        let t = tempfile::tempdir().unwrap();
        let paths: Vec<_> = trees.iter().enumerate().map(|(i, n)| {
            let p = t.path().join(format!("t{i}"));
            n.restore(&p).unwrap();
            p
        }).collect();
        let out = support::nix_command("nix-hash").args(["--type", "sha256", "--base32"]).args(&paths).output().expect("nix-hash on PATH");
        prop_assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let theirs: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
        let ours: Vec<String> = nar::nar_hash_paths(&paths).into_iter().map(|r| r.unwrap().0.to_base32()).collect();
        prop_assert_eq!(&ours, &theirs);
        // The two-thread pipeline (one path at a time) hashes the same as Nix too.
        let pipelined: Vec<String> = paths.iter().map(|p| nar::nar_hash_path(p).unwrap().0.to_base32()).collect();
        prop_assert_eq!(pipelined, theirs);
        // And the in-memory serialisation hashes the same.
        let mem: Vec<String> = trees.iter().map(|n| fedigen::store::Hash::sha256(&n.to_nar()).to_base32()).collect();
        let again: Vec<String> = nar::nar_hash_paths(&paths).into_iter().map(|r| r.unwrap().0.to_base32()).collect();
        prop_assert_eq!(mem, again);
    }
}

#[test]
fn node_strategy_covers_all_kinds() {
    // Guard against a generator that silently stopped producing some node kind.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut kinds = BTreeMap::new();
    for _ in 0..200 {
        let n = node().new_tree(&mut runner).unwrap().current();
        let k = match n {
            NarNode::Regular {
                executable: true, ..
            } => "exec",
            NarNode::Regular { .. } => "file",
            NarNode::Symlink { .. } => "link",
            NarNode::Directory(_) => "dir",
        };
        *kinds.entry(k).or_insert(0) += 1;
    }
    assert_eq!(kinds.len(), 4, "{kinds:?}");
}

/// A Nix string literal for `s` (escapes `\`, `"`, `$`, and the control characters Nix would alter).
fn nix_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn env_value() -> impl Strategy<Value = String> {
    proptest::string::string_regex("([ -~]|\n|\r|\t|é|ß|🦀|\u{7f}|\u{1}){0,24}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5, ..ProptestConfig::default() })]

    /// Random derivations written by the real `nix-instantiate` (one call per case): our printer reproduces each
    /// `.drv` byte for byte, and our path computation gives Nix's `.drv` and output paths.
    #[test]
    fn nix_instantiate_drvs_round_trip(
        drvs in vec((btree_map("k_[a-z0-9_]{0,6}", env_value(), 0..5), vec(env_value(), 0..3), any::<bool>(), 0usize..4), 1..8)
    ) {
        let t = tempfile::tempdir().unwrap();
        let mut body = String::from("let\n  d0 = derivation { name = \"base\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; outputs = [ \"out\" \"dev\" ]; };\n");
        for (i, (env, args, dev, dep)) in drvs.iter().enumerate() {
            let i = i + 1;
            let dep = (*dep).min(i - 1);
            let input = if *dev { format!("d{dep}.dev") } else { format!("d{dep}") };
            body.push_str(&format!(
                "  d{i} = derivation {{ name = \"p{i}\"; system = \"x86_64-linux\"; builder = \"/bin/sh\"; outputs = [ \"out\" \"dev\" ]; args = [ {} ]; dep = \"${{{input}}}\"; {} }};\n",
                args.iter().map(|a| nix_string(a)).collect::<Vec<_>>().join(" "),
                env.iter().map(|(k, v)| format!("{k} = {};", nix_string(v))).collect::<String>(),
            ));
        }
        body.push_str(&format!("in [ {} ]\n", (1..=drvs.len()).map(|i| format!("d{i}")).collect::<Vec<_>>().join(" ")));
        let file = t.path().join("random.nix");
        std::fs::write(&file, &body).unwrap();
        let store = t.path().join("store");
        let out = support::nix_command("nix-instantiate").arg("--store").arg(&store).arg(&file)
            .output().expect("nix-instantiate on PATH");
        prop_assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), body);
        let roots: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(|l| l.split('!').next().unwrap().to_owned()).collect();
        let closure = fedigen::store::closure::read_closure(&store, &roots).unwrap();
        let sd = fedigen::store::StoreDir::default();
        let mut hasher = fedigen::store::drv::DrvHasher::new(&store, sd.clone());
        for (path, d) in &closure {
            let bytes = std::fs::read(store.join(path.trim_start_matches('/'))).unwrap();
            let printed = d.to_aterm();
            prop_assert_eq!(printed.as_bytes(), &bytes[..]);
            prop_assert_eq!(sd.print(&d.drv_path(&sd).unwrap()), path.clone());
            for (name, p) in hasher.output_paths(d).unwrap() {
                prop_assert_eq!(sd.print(&p), d.outputs[&name].path.clone());
            }
        }
        // The values survived Nix and our parser unchanged.
        for (i, (env, args, _, _)) in drvs.iter().enumerate() {
            let d = closure.values().find(|d| d.name() == format!("p{}", i + 1)).unwrap();
            prop_assert_eq!(&d.args, args);
            for (k, v) in env {
                prop_assert_eq!(&d.env[k], v);
            }
        }
    }
}
