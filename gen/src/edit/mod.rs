//! Lossless edits of Nix files that people write: set, unset or read one attribute path, or add or remove one
//! item of a list literal, changing only the bytes of that definition or item.
//!
//! The file is parsed with rnix, whose syntax tree keeps every byte (comments, blank lines, odd spacing). The
//! path is looked up statically through the shapes NixOS configurations are written in: attribute sets at any
//! depth and any mix of `a.b.c = …;` and `a = { b = …; };`, function bodies (`{ config, lib, ... }: …` modules,
//! a flake's `outputs = { self, … }: …`, so that `outputs.packages` means what a person means by it),
//! `let … in`, `with …;`, `assert …;`, parentheses, `lib.mkIf`/`mkDefault`/`mkForce`/`mkOverride`/`mkBefore`/
//! `mkAfter`/`mkOrder` bodies, each set of a `lib.mkMerge [ … ]` list, and the set-literal argument of any other
//! call (`nixpkgs.lib.nixosSystem { … }`: what people mean by a path through it). An edit is one
//! replacement of a byte range ([`Edit`]); everything outside it stays identical. New values come from the
//! same printer as every generated file, indented for the place they land in.
//!
//! What cannot be decided from the text is refused with the reason and the location rather than guessed: a
//! computed name (`${x}`), an inherited attribute, a value that is not a set literal (`a = import ./x.nix;`)
//! on the way to the path, a path defined in several places (`get` merges the parts when they are plain data), a
//! list that is not a list literal (`a ++ b`, a variable), or a new attribute that could go into several sets.
//!
//! The parts, one job each: `path` (the attribute path a person types), `types` (what an edit takes and
//! gives), `file` (the parsed file and the way from its tree back to the file's bytes), `lookup` (finding a
//! path through the NixOS idioms above), `bindings` (`get`, `set`, `unset`), `list` (`add`, `remove`), `layout`
//! (where new text goes and how it is indented), and `skim` (parsing only what is on the path).

mod bindings;
mod file;
mod layout;
mod list;
mod lookup;
mod path;
mod skim;
mod types;

pub use file::NixFile;
pub use path::EditPath;
pub use types::{Definition, Edit, EditError, NewValue};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Position;
    use serde_json::json;

    fn data(value: serde_json::Value) -> NewValue {
        NewValue::Expr(crate::nix::value::from_json(&value, Default::default()).unwrap())
    }

    fn path(text: &str) -> EditPath {
        EditPath::parse(text).unwrap()
    }

    fn set(text: &str, at: &str, value: serde_json::Value) -> String {
        let doc = NixFile::parse("test.nix", text).unwrap();
        doc.set(&path(at), &data(value)).unwrap().apply(text)
    }

    fn unset(text: &str, at: &str) -> String {
        let doc = NixFile::parse("test.nix", text).unwrap();
        doc.unset(&path(at)).unwrap().apply(text)
    }

    fn refusal(text: &str, at: &str) -> String {
        let doc = NixFile::parse("test.nix", text).unwrap();
        doc.set(&path(at), &data(json!(1))).unwrap_err().to_string()
    }

    const MODULE: &str = r#"# A machine someone maintains.
{ config, lib, pkgs, ... }:
let
  domain = "example.org"; # not ours to touch
in
{
  imports = [ ./hardware.nix ];

  # The web server.
  services.nginx = {
    enable = true;   # odd spacing kept
    virtualHosts."${domain}".root = "/srv/www";
  };
  networking.firewall.allowedTCPPorts = [ 80 443 ]; # web

  config = lib.mkIf config.services.nginx.enable {
    users.users.web.isSystemUser = true;
  };
}
"#;

    #[test]
    fn paths_parse_like_nix_attribute_paths() {
        assert_eq!(path(r#"a."b.c".d"#).names(), ["a", "b.c", "d"]);
        assert_eq!(path(r#"a."b.c".d"#).to_string(), r#"a."b.c".d"#);
        assert_eq!(path(r#""in".x"#).names(), ["in", "x"]);
        for bad in ["", "a.", "a b", "a = 1; b", "a.${x}", " a"] {
            assert!(EditPath::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn replacing_a_value_touches_only_that_value() {
        let out = set(MODULE, "services.nginx.enable", json!(false));
        assert_eq!(
            out,
            MODULE.replace("enable = true;   #", "enable = false;   #")
        );
        let out = set(MODULE, "networking.firewall.allowedTCPPorts", json!([443]));
        assert_eq!(
            out,
            MODULE.replace("[ 80 443 ]; # web", "[\n    443\n  ]; # web")
        );
    }

    #[test]
    fn new_bindings_go_after_their_closest_sibling_at_its_indentation() {
        let out = set(MODULE, "services.nginx.recommendedTlsSettings", json!(true));
        assert_eq!(
            out,
            MODULE.replace(
                "\"/srv/www\";\n",
                "\"/srv/www\";\n    recommendedTlsSettings = true;\n"
            )
        );
        let out = set(MODULE, "networking.hostName", json!("web"));
        assert_eq!(
            out,
            MODULE.replace(
                "443 ]; # web\n",
                "443 ]; # web\n  networking.hostName = \"web\";\n"
            )
        );
        let out = set(MODULE, "config.users.users.web.group", json!("web"));
        assert!(
            out.contains("isSystemUser = true;\n    users.users.web.group = \"web\";\n"),
            "{out}"
        );
    }

    #[test]
    fn setting_a_set_lays_it_out_for_where_it_lands() {
        let out = set(
            "{\n  a = {\n    b = 1;\n  };\n}\n",
            "a.c",
            json!({"x": [1, {"y": "z"}]}),
        );
        assert_eq!(
            out,
            "{\n  a = {\n    b = 1;\n    c = {\n      x = [\n        1\n        {\n          y = \"z\";\n        }\n      ];\n    };\n  };\n}\n"
        );
        assert_eq!(set("{ }", "a.b", json!(1)), "{\n  a.b = 1;\n}");
        assert_eq!(set("{ a = 1; }", "b", json!(2)), "{ a = 1; b = 2; }");
    }

    #[test]
    fn a_definition_in_parts_is_replaced_keeping_the_names_as_written() {
        assert_eq!(
            set("{\n  a.b.c = 1; # one\n}\n", "a.b", json!({"d": 2})),
            "{\n  a.b = {\n    d = 2;\n  }; # one\n}\n"
        );
    }

    #[test]
    fn unset_removes_the_line_and_sets_it_leaves_empty() {
        assert_eq!(
            unset(MODULE, "networking.firewall.allowedTCPPorts"),
            MODULE.replace(
                "  networking.firewall.allowedTCPPorts = [ 80 443 ]; # web\n",
                ""
            )
        );
        assert_eq!(
            unset("{\n  a = {\n    b = 1;\n  };\n  c = 2;\n}\n", "a.b"),
            "{\n  c = 2;\n}\n"
        );
        assert_eq!(
            unset("{\n  a = {\n    # keep me\n\n    b = 1;\n  };\n}\n", "a.b"),
            "{\n  a = {\n    # keep me\n\n  };\n}\n"
        );
        assert_eq!(unset("{ a = 1; b = 2; }", "a"), "{ b = 2; }");
        assert_eq!(unset("{ a = 1; b = 2; }", "b"), "{ a = 1; }");
    }

    #[test]
    fn what_only_evaluation_could_decide_is_refused_with_its_place() {
        let computed = refusal(MODULE, "services.nginx.virtualHosts.x.root");
        assert!(computed.starts_with("test.nix:12:18: "), "{computed}");
        assert!(computed.contains("computed"), "{computed}");

        let inherited = refusal("{\n  inherit (x) a;\n}", "a.b");
        assert!(
            inherited.starts_with("test.nix:2:3: ") && inherited.contains("inherited"),
            "{inherited}"
        );

        let not_a_set = refusal("{\n  a = import ./a.nix;\n}", "a.b");
        assert!(
            not_a_set.starts_with("test.nix:2:7: ") && not_a_set.contains("function call"),
            "{not_a_set}"
        );

        let twice = refusal("{\n  a = { b = 1; };\n  a.b = 2;\n}", "a.b");
        assert!(twice.contains("2 places (2:9, 3:3)"), "{twice}");

        let merge = refusal("lib.mkMerge [ { a = 1; } { b = 2; } ]", "c");
        assert!(merge.contains("any of 2 sets (1:15, 1:26)"), "{merge}");
        assert_eq!(
            set("lib.mkMerge [ { a = 1; } { b = 2; } ]", "b", json!(3)),
            "lib.mkMerge [ { a = 1; } { b = 3; } ]"
        );
    }

    #[test]
    fn a_flakes_outputs_are_edited_through_the_function() {
        let flake = "{\n  inputs.nixpkgs.url = \"github:NixOS/nixpkgs/nixos-25.05\";\n  outputs =\n    { self, nixpkgs }:\n    let\n      lib = nixpkgs.lib;\n    in\n    {\n      nixosModules.web = ./web.nix;\n    };\n}\n";
        assert_eq!(
            set(flake, "outputs.nixosModules.db", json!("x")),
            flake.replace(
                "./web.nix;\n",
                "./web.nix;\n      nixosModules.db = \"x\";\n"
            )
        );
        assert_eq!(
            set(
                flake,
                "inputs.nixpkgs.url",
                json!("github:NixOS/nixpkgs/nixos-unstable")
            ),
            flake.replace("nixos-25.05", "nixos-unstable")
        );
    }

    #[test]
    fn packed_sets_are_edited_alike_skimmed_or_whole() {
        // Where bindings touch (`a=1;b=2;`), the skim's removed bindings sit right against kept ones.
        let text = "{a=1;b=2;c=3;x.y=4;x.z=5;}";
        let cases = [
            ("a", None, "{b=2;c=3;x.y=4;x.z=5;}"),
            ("b", None, "{a=1;c=3;x.y=4;x.z=5;}"),
            ("x.y", None, "{a=1;b=2;c=3;x.z=5;}"),
            ("a", Some(json!(9)), "{a=9;b=2;c=3;x.y=4;x.z=5;}"),
            ("d", Some(json!(9)), "{a=1;b=2;c=3;x.y=4;x.z=5; d = 9;}"),
            ("x.w", Some(json!(9)), "{a=1;b=2;c=3;x.y=4;x.z=5; x.w = 9;}"),
        ];
        for (at, value, want) in cases {
            let path = path(at);
            let answers: Vec<String> = [
                NixFile::parse("t.nix", text).unwrap(),
                NixFile::for_path("t.nix", text, &path).unwrap(),
            ]
            .iter()
            .map(|doc| match &value {
                Some(v) => doc.set(&path, &data(v.clone())).unwrap().apply(text),
                None => doc.unset(&path).unwrap().apply(text),
            })
            .collect();
            assert_eq!(answers, [want, want], "{at}");
        }
    }

    #[test]
    fn new_lines_follow_the_files_tabs_and_line_breaks() {
        assert_eq!(
            set("{\r\n\ta = 1;\r\n}\r\n", "b", json!(2)),
            "{\r\n\ta = 1;\r\n\tb = 2;\r\n}\r\n"
        );
    }

    #[test]
    fn every_construct_is_skimmed_as_it_is_parsed() {
        // Whatever the skim does with a construct, the answers must be those of a whole parse.
        let text = r#"{ config, lib ? import <nixpkgs/lib>, pkgs, ... }@args:
with lib;
assert args ? config;
let
  inherit (lib) mkIf;
  x = rec { a = 1; b = a; };
in rec {
  "quoted\"name" = 1;
  ${"fixed"}.b = 2;
  a /* between */ . b = { c = x.a or 3; d = ./${toString 1}.nix; e = https://example.org/x; };
  a.f = if args ? pkgs then { g = 1; } else { };
  h = let y = { z = 1; }; in y // { w = 2; };
  i = with x; { j = a; k = "${toString b}"; l = ''
    ${"interpolated"} '''quotes''' ''${not}
  ''; };
  inherit (x) b;
  m = assert true; { n = [ { o = 1; } ({ p = 2; }) ]; };
  q.r.s = mkIf true { t = 1; };
  u = lib.mkMerge [ { v = 1; } (lib.mkIf true { w = 2; }) ];
  packed={aa=1;bb=2;cc=3;};
  sys.web = nixpkgs.lib.nixosSystem { modules = [ 1 /* c */ 2 ]; list = [ ]; };
  sys.web.more = 1;
  lists = { cat = [ 1 2 ] ++ x; withx = with x; [ 2 y ]; one = [
    # two
    2
  ]; };
  lists.wrapped = lib.mkForce [ 3 ];
}
"#;
        let paths = [
            "quoted\"name",
            "fixed.b",
            "a.b.c",
            "a.b.new",
            "a.f.g",
            "a.new",
            "h.z",
            "i.j",
            "i.l",
            "b",
            "b.x",
            "m.n",
            "m.new",
            "q.r.s.t",
            "q.r.new",
            "q.new",
            "u.v",
            "u.w",
            "u.new",
            "packed.aa",
            "packed.bb",
            "packed.cc",
            "packed.dd",
            "new",
            "new.deeper",
            "sys.web",
            "sys.web.modules",
            "sys.web.list",
            "sys.web.new",
            "lists.cat",
            "lists.withx",
            "lists.one",
            "lists.wrapped",
            "lists.new",
        ];
        let value = data(json!({"x": [1, "two"]}));
        let two = data(json!(2));
        let packed = skim::skim(text, &["packed".to_owned(), "aa".to_owned()]);
        assert!(
            packed.text.len() < text.len() / 2,
            "the skim followed the file"
        );
        for at in paths {
            let path = EditPath::new(at.split('.').map(str::to_owned).collect()).unwrap();
            let whole = NixFile::parse("k.nix", text).unwrap();
            let skimmed = NixFile::for_path("k.nix", text, &path).unwrap();
            let answers = |doc: &NixFile| {
                [
                    format!("{:?}", doc.get(&path)),
                    format!("{:?}", doc.set(&path, &value)),
                    format!("{:?}", doc.unset(&path)),
                    format!("{:?}", doc.add_item(&path, &two)),
                    format!("{:?}", doc.add_item(&path, &value)),
                    format!("{:?}", doc.remove_item(&path, &two)),
                ]
            };
            assert_eq!(answers(&whole), answers(&skimmed), "{at}");
        }
    }

    fn item(text: &str, at: &str, value: serde_json::Value, add: bool) -> Result<String, String> {
        let doc = NixFile::parse("test.nix", text).unwrap();
        let edit = if add {
            doc.add_item(&path(at), &data(value))
        } else {
            doc.remove_item(&path(at), &data(value))
        };
        edit.map(|e| e.apply(text)).map_err(|e| e.to_string())
    }

    fn add(text: &str, at: &str, value: serde_json::Value) -> String {
        item(text, at, value, true).unwrap()
    }

    fn remove(text: &str, at: &str, value: serde_json::Value) -> String {
        item(text, at, value, false).unwrap()
    }

    const PORTS: &str = "{\n  ports = [\n    22 # ssh\n\n    # the web\n    80\n    443 # tls\n  ];\n  inline = [ 1 2 3 ]; # small\n}\n";

    #[test]
    fn a_list_item_is_added_like_its_siblings() {
        assert_eq!(
            add(PORTS, "ports", json!(8080)),
            PORTS.replace("443 # tls\n", "443 # tls\n    8080\n")
        );
        assert_eq!(
            add(PORTS, "inline", json!(-4)),
            PORTS.replace("[ 1 2 3 ]", "[ 1 2 3 (-4) ]")
        );
        // An item equal to one already there, however it is written, changes nothing.
        let written = "{ a = [ (443) ''wheel'' ]; }";
        assert_eq!(add(written, "a", json!(443)), written);
        assert_eq!(add(written, "a", json!("wheel")), written);
        // Empty lists: inline for a one-line item, on lines of their own otherwise.
        assert_eq!(add("{ a = [ ]; }", "a", json!("x")), "{ a = [ \"x\" ]; }");
        assert_eq!(add("{ a = []; }", "a", json!(1)), "{ a = [ 1 ]; }");
        assert_eq!(
            add("{\n  a = [ ];\n}\n", "a", json!({"b": 1})),
            "{\n  a = [\n    {\n      b = 1;\n    }\n  ];\n}\n"
        );
        assert_eq!(
            add("{\n  a = [\n    # none yet\n  ];\n}\n", "a", json!(1)),
            "{\n  a = [\n    # none yet\n    1\n  ];\n}\n"
        );
        // Through the module system's wrappers, `with` and parentheses; a new path gets a one-item list.
        assert_eq!(
            add("{ a = lib.mkForce (with pkgs; [ git ]); }", "a", json!("x")),
            "{ a = lib.mkForce (with pkgs; [ git \"x\" ]); }"
        );
        assert_eq!(
            add("{\n  b = 1;\n}\n", "a", json!(1)),
            "{\n  b = 1;\n  a = [\n    1\n  ];\n}\n"
        );
        let doc = NixFile::parse("t.nix", "{ a = [ x ]; }").unwrap();
        let nix = |text: &str| NewValue::Text(text.to_owned());
        let added = |value| doc.add_item(&path("a"), &value).unwrap().apply(doc.text());
        assert_eq!(added(nix("lib.mkIf c y")), "{ a = [ x (lib.mkIf c y) ]; }");
        assert_eq!(added(nix(" x ")), "{ a = [ x ]; }");
        assert_eq!(added(nix("pkgs.git")), "{ a = [ x pkgs.git ]; }");
    }

    #[test]
    fn a_list_item_is_removed_with_its_comments_and_no_other() {
        // Its trailing comment and the comment lines directly above go; a comment after a blank line stays.
        assert_eq!(
            remove(PORTS, "ports", json!(80)),
            PORTS.replace("    # the web\n    80\n", "")
        );
        assert_eq!(
            remove(PORTS, "ports", json!(443)),
            PORTS.replace("    443 # tls\n", "")
        );
        assert_eq!(
            remove(PORTS, "ports", json!(22)),
            PORTS.replace("    22 # ssh\n", "")
        );
        assert_eq!(
            remove(PORTS, "inline", json!(1)),
            PORTS.replace("[ 1 2 3 ]", "[ 2 3 ]")
        );
        assert_eq!(
            remove(PORTS, "inline", json!(2)),
            PORTS.replace("[ 1 2 3 ]", "[ 1 3 ]")
        );
        assert_eq!(
            remove(PORTS, "inline", json!(3)),
            PORTS.replace("[ 1 2 3 ]", "[ 1 2 ]")
        );
        assert_eq!(
            remove("{ a = [ (443) ]; }", "a", json!(443)),
            "{ a = [ ]; }"
        );
        assert_eq!(
            remove("{\n  a = [\n    \"x\"\n  ];\n}\n", "a", json!("x")),
            "{\n  a = [ ];\n}\n"
        );
        let doc = NixFile::parse("t.nix", "{ a = with pkgs; [ git /* vcs */ htop ]; }").unwrap();
        let removed = doc
            .remove_item(&path("a"), &NewValue::Text("git".to_owned()))
            .unwrap()
            .apply(doc.text());
        assert_eq!(removed, "{ a = with pkgs; [ /* vcs */ htop ]; }");

        let absent = item(PORTS, "ports", json!(8080), false).unwrap_err();
        assert!(
            absent.starts_with("test.nix:2:11: ")
                && absent.contains("no item `8080` (it is `[ 22 80 443 ]`)"),
            "{absent}"
        );
        let twice = item("{ a = [ 1 2 1 ]; }", "a", json!(1), false).unwrap_err();
        assert!(twice.contains("2 times (1:9, 1:13)"), "{twice}");
    }

    #[test]
    fn a_list_that_is_not_a_literal_is_refused_with_the_reason() {
        let concat = item("{\n  a = [ 1 ] ++ b;\n}", "a", json!(2), true).unwrap_err();
        assert!(
            concat.starts_with("test.nix:2:7: ") && concat.contains("concatenation (`[ 1 ] ++ b`)"),
            "{concat}"
        );
        let variable = item("{\n  a = cfg.ports;\n}", "a", json!(2), false).unwrap_err();
        assert!(
            variable.starts_with("test.nix:2:7: ") && variable.contains("a variable (`cfg.ports`)"),
            "{variable}"
        );
        let scalar = item("{ a = 1; }", "a", json!(2), true).unwrap_err();
        assert!(scalar.contains("not a list"), "{scalar}");
        let set = item("{ a.b = [ ]; }", "a", json!(2), true).unwrap_err();
        assert!(set.contains("a set defined in parts"), "{set}");
    }

    #[test]
    fn get_merges_a_set_defined_in_several_places() {
        let get = |text: &str, at: &str| NixFile::parse("t.nix", text).unwrap().get(&path(at));
        let merged = get(
            "{\n  a.b = 1;\n  a = { c = 2; d.e = 3; };\n  a.d.f = 4;\n}",
            "a",
        )
        .unwrap();
        assert_eq!(
            merged.data,
            Ok(json!({"b": 1, "c": 2, "d": {"e": 3, "f": 4}}))
        );
        assert_eq!(
            merged.places,
            [
                Position { line: 2, column: 3 },
                Position { line: 3, column: 3 },
                Position { line: 4, column: 3 }
            ]
        );
        assert_eq!(merged.range, None);
        assert!(merged.value.contains("c = 2;"), "{}", merged.value);
        // A set in parts in one place, and the parts of a `mkMerge` (all under the same call).
        assert_eq!(
            get("{ a.b.c = 1; }", "a.b").unwrap().data,
            Ok(json!({"c": 1}))
        );
        assert_eq!(
            get("lib.mkMerge [ { a.b = 1; } { a.c = 2; } ]", "a")
                .unwrap()
                .data,
            Ok(json!({"b": 1, "c": 2}))
        );
        // Where only Nix can merge: a part that is not data, parts under different calls, a clash.
        let refusal = |text: &str| get(text, "a").unwrap_err().to_string();
        let computed = refusal("{\n  a.b = x;\n  a.c = 1;\n}");
        assert!(
            computed.contains("2 places (2:3, 3:3)")
                && computed.contains("the part at 2:9 is not plain data"),
            "{computed}"
        );
        let single = refusal("{\n  a.b = x;\n}");
        assert!(
            single.starts_with("t.nix:2:9: ")
                && single
                    .contains("defined in parts (`a.b`) and the part at 2:9 is not plain data"),
            "{single}"
        );
        let conditional = refusal("{\n  a = lib.mkIf c { b = 1; };\n  a.c = 1;\n}");
        assert!(conditional.contains("function call"), "{conditional}");
        let clash = refusal("{\n  a.b = 1;\n  a = { b = 2; };\n}");
        assert!(clash.contains("`a.b` is defined twice"), "{clash}");
    }

    #[test]
    fn unset_takes_the_comment_lines_attached_above() {
        let text = "{\n  a = 1; # about a\n  # about b,\n  /* on two\n     lines */\n  b = 2;\n\n  # about nothing in particular\n\n  c = 3;\n  d = 4; e = 5;\n  # about f\n  f.g = 6;\n}\n";
        assert_eq!(
            unset(text, "b"),
            text.replace("  # about b,\n  /* on two\n     lines */\n  b = 2;\n", "")
        );
        assert_eq!(unset(text, "c"), text.replace("  c = 3;\n", ""));
        assert_eq!(unset(text, "a"), text.replace("  a = 1; # about a\n", ""));
        assert_eq!(unset(text, "e"), text.replace(" e = 5;", ""));
        assert_eq!(
            unset(text, "f.g"),
            text.replace("  # about f\n  f.g = 6;\n", "")
        );
        // The binding's own comments gone, a set left empty goes too.
        assert_eq!(
            unset(
                "{\n  a = {\n    # about b\n    b = 1;\n  };\n  c = 2;\n}\n",
                "a.b"
            ),
            "{\n  c = 2;\n}\n"
        );
    }

    #[test]
    fn paths_go_through_a_calls_set_literal_argument() {
        let flake = "{\n  outputs =\n    { self, nixpkgs }:\n    {\n      nixosConfigurations.web = nixpkgs.lib.nixosSystem {\n        system = \"x86_64-linux\";\n        modules = [ ./web.nix ];\n      };\n    };\n}\n";
        assert_eq!(
            set(
                flake,
                "outputs.nixosConfigurations.web.system",
                json!("aarch64-linux")
            ),
            flake.replace("x86_64", "aarch64")
        );
        assert_eq!(
            set(
                flake,
                "outputs.nixosConfigurations.web.specialArgs.x",
                json!(1)
            ),
            flake.replace(
                "./web.nix ];\n",
                "./web.nix ];\n        specialArgs.x = 1;\n"
            )
        );
        let doc = NixFile::parse("flake.nix", flake).unwrap();
        let modules = path("outputs.nixosConfigurations.web.modules");
        let added = doc
            .add_item(&modules, &NewValue::Text("./db.nix".to_owned()))
            .unwrap();
        assert_eq!(
            added.apply(flake),
            flake.replace("./web.nix ]", "./web.nix ./db.nix ]")
        );
        assert_eq!(
            set("{ a = f { b = 1; }; }", "a.b", json!(2)),
            "{ a = f { b = 2; }; }"
        );
        assert_eq!(
            set(
                "{ a = pkgs.callPackage ./a.nix ({ b = 1; }); }",
                "a.c",
                json!(2)
            ),
            "{ a = pkgs.callPackage ./a.nix ({ b = 1; c = 2; }); }"
        );
    }

    #[test]
    fn get_returns_the_text_as_written() {
        let doc = NixFile::parse("m.nix", MODULE).unwrap();
        let found = doc
            .get(&path("networking.firewall.allowedTCPPorts"))
            .unwrap();
        assert_eq!(found.value, "[ 80 443 ]");
        assert_eq!(
            found.position,
            Position {
                line: 14,
                column: 3
            }
        );
        let missing = doc
            .get(&path("services.nginx.enabled"))
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("nearest definition is `services.nginx` at 10:3"),
            "{missing}"
        );
    }
}
