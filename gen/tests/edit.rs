//! Property tests of `fedigen edit` on hand-written-shaped Nix: random documents (nested sets and dotted
//! bindings, comments everywhere, odd spacing, one-line sets, module functions, `let … in`, `lib.mkIf` bodies,
//! strings holding `=`, `;`, `#`, `{`), random edits (set, unset, get of existing leaves and sets, new paths).
//! For each edit:
//! - the result parses, and the real `nix-instantiate --eval --strict --json` of it equals the original's value
//!   with exactly that edit applied (computed on JSON, independently of the editor);
//! - every binding the edit does not concern, and every comment it does not remove with its binding, lies
//!   outside the edited byte range (so it is byte-identical in the result);
//! - an edit is refused exactly when the path is defined by several bindings (and `get` when it is defined in
//!   parts), which the test knows from how it wrote the document.

use std::ops::Range;

use fedigen::edit::{Definition, EditError, EditPath, NewValue, NixFile};
use fedigen::eval::{Evaluator, Source};
use fedigen::nix::print::print_expr_at;
use fedigen::nix::value::{DataPolicy, from_json};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

/// Names that stress quoting and dotted paths: keywords, dots, quotes, dashes.
const NAMES: &[&str] = &[
    "a", "b", "services", "enable", "x-y", "in", "with.dot", "c'", "_u", "port",
];

/// Text for strings and comments that looks like syntax.
const TRICKY: &[&str] = &[
    "a = 1;",
    "};",
    "# not a comment",
    "{ x = y; }",
    "${not interpolated}",
    "''",
    "\"quoted\"",
    "line one\nline two; = #\n",
    "/* not a block */",
    "plain",
];

/// A document's meaning: nested sets with unique names, leaves holding JSON data.
#[derive(Debug, Clone)]
enum Node {
    Leaf(Value),
    Set(Vec<(String, Node)>),
}

impl Node {
    fn json(&self) -> Value {
        match self {
            Node::Leaf(v) => v.clone(),
            Node::Set(children) => Value::Object(
                children
                    .iter()
                    .map(|(k, n)| (k.clone(), n.json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(Value::from),
        proptest::sample::select(TRICKY).prop_map(Value::from),
        "[a-z ]{0,8}".prop_map(Value::from),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(proptest::sample::select(NAMES), inner, 1..4).prop_map(
                |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            ),
        ]
    })
}

fn node(depth: u32) -> BoxedStrategy<Node> {
    let leaf = data().prop_map(Node::Leaf);
    if depth == 0 {
        return leaf.boxed();
    }
    prop_oneof![
        2 => leaf,
        3 => prop::collection::btree_map(proptest::sample::select(NAMES), node(depth - 1), 1..4)
            .prop_map(|m| Node::Set(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
    ]
    .boxed()
}

/// Who a comment belongs to, which decides whether an edit may take it along.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CommentKind {
    /// On the lines above a binding: always stays.
    Leading,
    /// After a binding on its line, or between its name and `=`: goes when the binding goes.
    Trailing,
    /// Inside a set's braces before its first binding: goes only with the whole set.
    Interior,
}

/// A document as written, with what the test needs to know about where things are.
#[derive(Debug)]
struct Written {
    text: String,
    /// Every leaf binding's full path and byte range.
    leaves: Vec<(Vec<String>, Range<usize>)>,
    /// Every comment: its owner binding's full path, kind and byte range.
    comments: Vec<(Vec<String>, CommentKind, Range<usize>)>,
    /// Every binding: the depth of the set it stands in, its full path, and whether its value holds a
    /// `lib.mkIf` (which makes it more than plain data).
    bindings: Vec<(usize, Vec<String>, bool)>,
    /// Every item of a list written by hand: the list's path, its index and byte range.
    items: Vec<(Vec<String>, usize, Range<usize>)>,
    /// Every comment of such an item: the list's path, the item's index, the kind and byte range.
    item_comments: Vec<(Vec<String>, usize, CommentKind, Range<usize>)>,
}

/// Presentation choices, drawn from a stream of dice so that one proptest input decides the whole layout.
struct Writer<'a> {
    dice: &'a [u8],
    next: usize,
    out: Written,
    lib_in_scope: bool,
    /// A comment just written at the top of a set's body: attached to the first binding if no blank line
    /// separates them (and then it goes with that binding on `unset`).
    interior: Option<usize>,
    /// Whether a `lib.mkIf` was written since this was last reset.
    wrapped: bool,
}

impl Writer<'_> {
    fn roll(&mut self, sides: u8) -> u8 {
        let d = self.dice[self.next % self.dice.len()];
        self.next += 1;
        d % sides
    }

    fn push(&mut self, s: &str) -> Range<usize> {
        let start = self.out.text.len();
        self.out.text.push_str(s);
        start..self.out.text.len()
    }

    fn comment(&mut self, owner: &[String], kind: CommentKind, text: &str) {
        let range = self.push(text);
        self.out.comments.push((owner.to_vec(), kind, range));
    }

    fn tricky(&mut self) -> String {
        TRICKY[self.roll(TRICKY.len() as u8) as usize]
            .replace('\n', " ")
            .replace("*/", "* /")
    }

    /// The children of a set at `path`, between braces already written, at `indent`.
    fn set_body(&mut self, path: &[String], children: &[(String, Node)], indent: usize) {
        let one_line = children.len() <= 3
            && children.iter().all(|(_, n)| matches!(n, Node::Leaf(v) if !v.is_array() && !v.is_object() && !v.as_str().is_some_and(|s| s.contains('\n'))))
            && self.roll(3) == 0;
        if one_line {
            // Packed (`{a=1;b=2;}`) or spaced: where tokens touch, no space tells them apart.
            let gap = if self.roll(2) == 0 { "" } else { " " };
            for (name, child) in children {
                self.push(gap);
                let mut full = path.to_vec();
                full.push(name.clone());
                self.binding(
                    path.len(),
                    &full,
                    std::slice::from_ref(name),
                    child,
                    0,
                    true,
                );
            }
            self.push(gap);
            return;
        }
        self.push("\n");
        if self.roll(4) == 0 {
            let pad = " ".repeat(indent);
            let t = self.tricky();
            self.push(&pad);
            self.comment(path, CommentKind::Interior, &format!("# {t}"));
            self.interior = Some(self.out.comments.len() - 1);
            self.push("\n");
        }
        for (name, child) in children {
            let mut full = path.to_vec();
            full.push(name.clone());
            match child {
                // A set written as dotted bindings in its parent: `name.child = …;`.
                Node::Set(grandchildren) if self.roll(3) == 0 => {
                    for (g, gnode) in grandchildren {
                        let mut gfull = full.clone();
                        gfull.push(g.clone());
                        self.line(
                            path.len(),
                            &gfull,
                            &[name.clone(), g.clone()],
                            gnode,
                            indent,
                        );
                    }
                }
                _ => self.line(path.len(), &full, std::slice::from_ref(name), child, indent),
            }
        }
        if self.roll(4) == 0 {
            self.push("\n");
        }
        self.push(&" ".repeat(indent.saturating_sub(2)));
    }

    /// One binding on its own line(s), with optional comments around it.
    fn line(
        &mut self,
        depth: usize,
        full: &[String],
        names: &[String],
        node: &Node,
        indent: usize,
    ) {
        let pad = " ".repeat(indent);
        let blank = self.roll(4) == 0;
        if blank {
            // A comment a blank line away belongs to no binding: it goes only with the whole set.
            if self.roll(2) == 0 {
                let t = self.tricky();
                self.push(&pad);
                let set = &full[..full.len() - names.len()];
                self.comment(set, CommentKind::Interior, &format!("# {t}"));
                self.push("\n");
            }
            self.push("\n");
        }
        if let Some(interior) = self.interior.take()
            && !blank
        {
            let comment = &mut self.out.comments[interior];
            comment.0 = full.to_vec();
            comment.1 = CommentKind::Leading;
        }
        if self.roll(3) == 0 {
            let t = self.tricky();
            self.push(&pad);
            self.comment(full, CommentKind::Leading, &format!("# {t}"));
            self.push("\n");
        }
        self.push(&pad);
        self.binding(depth, full, names, node, indent, false);
        if self.roll(3) == 0 {
            let t = self.tricky();
            self.push(" ");
            self.comment(full, CommentKind::Trailing, &format!("# {t}"));
        }
        self.push("\n");
    }

    fn binding(
        &mut self,
        depth: usize,
        full: &[String],
        names: &[String],
        node: &Node,
        indent: usize,
        one_line: bool,
    ) {
        let start = self.out.text.len();
        let index = self.out.bindings.len();
        self.out.bindings.push((depth, full.to_vec(), false));
        let outer_wrapped = std::mem::replace(&mut self.wrapped, false);
        let path = EditPath::new(names.to_vec()).unwrap().to_string();
        self.push(&path);
        if self.roll(5) == 0 {
            let t = self.tricky();
            self.push(" ");
            self.comment(full, CommentKind::Trailing, &format!("/* {t} */"));
        }
        let eq = [" = ", "=", "  = ", " =\n"][self.roll(if one_line { 3 } else { 4 }) as usize];
        self.push(eq);
        if eq.ends_with('\n') {
            self.push(&" ".repeat(indent + 2));
        }
        match node {
            Node::Leaf(value) => {
                let by_hand = value.as_array().filter(|items| {
                    items.iter().all(|item| {
                        !item.is_array()
                            && !item.is_object()
                            && !item.as_str().is_some_and(|s| s.contains('\n'))
                    })
                });
                match by_hand {
                    Some(items) if self.roll(2) == 0 => self.list(full, items, indent, one_line),
                    _ => {
                        let expr = from_json(value, DataPolicy::default()).unwrap();
                        let text = print_expr_at(&expr, indent);
                        self.push(&text);
                    }
                }
                self.push(";");
                let range = start..self.out.text.len();
                self.out.leaves.push((full.to_vec(), range));
            }
            Node::Set(children) => {
                if self.lib_in_scope && self.roll(4) == 0 {
                    self.push("lib.mkIf true ");
                    self.wrapped = true;
                }
                self.push("{");
                self.set_body(full, children, indent + 2);
                self.push("};");
            }
        }
        self.out.bindings[index].2 = self.wrapped;
        self.wrapped |= outer_wrapped;
    }

    /// A list of one-line items written as people do: inline, or one item a line with comments around.
    fn list(&mut self, full: &[String], items: &[Value], indent: usize, one_line: bool) {
        let text = |item: &Value| {
            let printed = print_expr_at(&from_json(item, DataPolicy::default()).unwrap(), 0);
            if printed.starts_with('-') {
                format!("({printed})")
            } else {
                printed
            }
        };
        if items.is_empty() || one_line || self.roll(2) == 0 {
            let open = ["[", "[ "][self.roll(2) as usize];
            self.push(open);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    self.push(" ");
                }
                let range = self.push(&text(item));
                self.out.items.push((full.to_vec(), i, range));
            }
            let close = [" ]", "]"][self.roll(2) as usize];
            self.push(close);
            return;
        }
        let pad = " ".repeat(indent + 2);
        self.push("[\n");
        for (i, item) in items.iter().enumerate() {
            if self.roll(4) == 0 {
                // A comment a blank line away belongs to no item (index `usize::MAX`).
                if self.roll(2) == 0 {
                    let t = self.tricky();
                    self.push(&pad);
                    let range = self.push(&format!("# {t}"));
                    self.out.item_comments.push((
                        full.to_vec(),
                        usize::MAX,
                        CommentKind::Interior,
                        range,
                    ));
                    self.push("\n");
                }
                self.push("\n");
            }
            if self.roll(3) == 0 {
                let t = self.tricky();
                self.push(&pad);
                let comment = if self.roll(2) == 0 {
                    format!("# {t}")
                } else {
                    format!("/* {t} */")
                };
                let range = self.push(&comment);
                self.out
                    .item_comments
                    .push((full.to_vec(), i, CommentKind::Leading, range));
                self.push("\n");
            }
            self.push(&pad);
            let range = self.push(&text(item));
            self.out.items.push((full.to_vec(), i, range));
            if self.roll(3) == 0 {
                let t = self.tricky();
                self.push(" ");
                let range = self.push(&format!("# {t}"));
                self.out
                    .item_comments
                    .push((full.to_vec(), i, CommentKind::Trailing, range));
            }
            self.push("\n");
        }
        self.push(&" ".repeat(indent));
        self.push("]");
    }
}

fn write(root: &[(String, Node)], dice: &[u8]) -> Written {
    let mut w = Writer {
        dice,
        next: 0,
        out: Written {
            text: String::new(),
            leaves: Vec::new(),
            comments: Vec::new(),
            bindings: Vec::new(),
            items: Vec::new(),
            item_comments: Vec::new(),
        },
        lib_in_scope: false,
        interior: None,
        wrapped: false,
    };
    w.push("# A configuration someone maintains; { = ; } in comments is not code.\n");
    match w.roll(3) {
        0 => {}
        1 => {
            w.lib_in_scope = true;
            w.push("{ config, lib, ... }:\n");
        }
        _ => {
            w.lib_in_scope = true;
            w.push("{ config, lib, ... }:\nlet\n  unused = \"in { a = 1; }\"; # ;\nin\n");
        }
    }
    w.push("{");
    w.set_body(&[], root, 2);
    w.push("}\n");
    w.out
}

/// What to do to the document.
#[derive(Debug, Clone)]
enum Op {
    Set(Value),
    Unset,
    Get,
    /// Add an item to a list (or to a path that is not a list, which must be refused).
    Add(Value),
    /// Remove an item from a list.
    Remove(Value),
}

/// Paths of the model: every leaf and set (not the root), and new paths under sets.
fn paths(node: &Node, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, bool)>) {
    if let Node::Set(children) = node {
        if !prefix.is_empty() {
            out.push((prefix.clone(), true));
        }
        let mut fresh = prefix.clone();
        fresh.push("new.name".to_owned());
        out.push((fresh, false));
        for (name, child) in children {
            prefix.push(name.clone());
            match child {
                Node::Leaf(_) => out.push((prefix.clone(), true)),
                Node::Set(_) => paths(child, prefix, out),
            }
            prefix.pop();
        }
    }
}

/// The value with `path` set to `new`, intermediate sets created.
fn json_set(value: &mut Value, path: &[String], new: Value) {
    let Value::Object(map) = value else {
        unreachable!()
    };
    if path.len() == 1 {
        map.insert(path[0].clone(), new);
    } else {
        let child = map
            .entry(path[0].clone())
            .or_insert_with(|| Value::Object(Map::new()));
        json_set(child, &path[1..], new);
    }
}

/// The value with `path` removed; sets on the path that end up empty are removed too (the test cannot know
/// which empty sets the editor keeps for a comment inside, so both sides are normalised the same way).
fn json_unset(value: &mut Value, path: &[String]) {
    let Value::Object(map) = value else { return };
    if path.len() == 1 {
        map.remove(&path[0]);
    } else if let Some(child) = map.get_mut(&path[0]) {
        json_unset(child, &path[1..]);
        if child.as_object().is_some_and(Map::is_empty) {
            map.remove(&path[0]);
        }
    }
}

fn prune_empty_on_path(value: &mut Value, path: &[String]) {
    let Value::Object(map) = value else { return };
    if let Some(child) = map.get_mut(&path[0]) {
        if path.len() > 1 {
            prune_empty_on_path(child, &path[1..]);
        }
        if child.as_object().is_some_and(Map::is_empty) {
            map.remove(&path[0]);
        }
    }
}

fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.get(k))
}

const STUB_LIB: &str = "{ mkIf = cond: body: if cond then body else { }; }";

/// Nix text evaluating a written document (a set, or a module function taking `config` and `lib`).
fn evaluable(text: &str) -> String {
    format!(
        "let\n  lib = {STUB_LIB};\n  f = (\n{text}\n);\nin\nif builtins.isFunction f then f {{ config = {{ }}; inherit lib; }} else f\n"
    )
}

#[derive(Debug)]
struct Case {
    root: Vec<(String, Node)>,
    dice: Vec<u8>,
    pick: usize,
    op: u8,
    value: Value,
    /// A one-line value, the usual list item.
    item: Value,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::btree_map(proptest::sample::select(NAMES), node(3), 1..5),
        prop::collection::vec(any::<u8>(), 64),
        any::<usize>(),
        0u8..5,
        data(),
        scalar(),
    )
        .prop_map(|(root, dice, pick, op, value, item)| Case {
            root: root.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            dice,
            pick,
            op,
            value,
            item,
        })
}

/// Runs a batch of cases; every check but Nix's evaluation happens here, then one Nix process evaluates all.
/// How many list items a batch added and removed (checked by Nix), so that the test can tell it tried them.
#[derive(Default, Clone, Copy)]
struct ItemEdits {
    added: usize,
    removed: usize,
}

fn check_batch(nix: &Evaluator, cases: &[Case]) -> Result<ItemEdits, String> {
    let mut tally = ItemEdits::default();
    let mut sources = Vec::new();
    let mut expected = Vec::new();
    let mut refused = 0;
    for (i, case) in cases.iter().enumerate() {
        let written = write(&case.root, &case.dice);
        let meaning = Node::Set(case.root.clone()).json();
        let mut candidates = Vec::new();
        paths(
            &Node::Set(case.root.clone()),
            &mut Vec::new(),
            &mut candidates,
        );
        // Adding and removing items is mostly tried on lists.
        let lists: Vec<_> = candidates
            .iter()
            .filter(|(p, exists)| *exists && get(&meaning, p).is_some_and(Value::is_array))
            .cloned()
            .collect();
        let (path, exists) = match &lists[..] {
            [_, ..] if case.op >= 3 && case.pick % 5 != 0 => lists[case.pick % lists.len()].clone(),
            _ => candidates[case.pick % candidates.len()].clone(),
        };
        let list = get(&meaning, &path).and_then(Value::as_array);
        let op = match (exists, case.op) {
            (_, 3) => Op::Add(match list {
                // An item already there now and then: adding it changes nothing.
                Some(items) if !items.is_empty() && case.pick % 4 == 0 => {
                    items[case.pick % items.len()].clone()
                }
                _ if case.pick % 3 == 0 => case.value.clone(),
                _ => case.item.clone(),
            }),
            (true, 4) if list.is_some() => Op::Remove(match list {
                Some(items) if !items.is_empty() && case.pick % 6 != 0 => {
                    items[(case.pick / 7) % items.len()].clone()
                }
                _ => case.value.clone(),
            }),
            (false, _) | (true, 0) => Op::Set(case.value.clone()),
            (true, 1) => Op::Unset,
            (true, _) => Op::Get,
        };
        let context = || {
            format!(
                "case {i}: {op:?} {path:?}\n--- document ---\n{}",
                written.text
            )
        };
        let document =
            NixFile::parse("doc.nix", &written.text).map_err(|e| format!("{e}\n{}", context()))?;
        let attr_path = EditPath::new(path.clone()).unwrap();

        // Which bindings define the path: a binding standing at depth d with full path p does when it names
        // beyond the depth it stands at and p starts with the path.
        let defining: Vec<(&Vec<String>, bool)> = written
            .bindings
            .iter()
            .filter(|(depth, full, _)| {
                *depth < path.len() && full.len() >= path.len() && full[..path.len()] == path[..]
            })
            .map(|(_, full, wrapped)| (full, *wrapped))
            .collect();
        // `get` merges a set defined in several places or in parts, unless a part is not plain data.
        let in_parts =
            defining.len() > 1 || defining.iter().any(|(full, _)| full.len() > path.len());
        let expect_refusal = match &op {
            Op::Get => in_parts && defining.iter().any(|(_, wrapped)| *wrapped),
            Op::Add(_) | Op::Remove(_) => defining.len() > 1 || (exists && list.is_none()),
            _ => defining.len() > 1,
        };
        // What removing an item finds: the item (once), nothing, or several.
        let occurrences = match (&op, list) {
            (Op::Remove(value), Some(items)) => items.iter().filter(|item| *item == value).count(),
            _ => 0,
        };
        let expect_refusal = expect_refusal || occurrences > 1;

        // The skimmed document (what the command uses) answers exactly as the fully parsed one.
        let skimmed = NixFile::for_path("doc.nix", &written.text, &attr_path)
            .map_err(|e| format!("{e}\n{}", context()))?;
        let answers = |doc: &NixFile| match &op {
            Op::Get => format!("{:?}", doc.get(&attr_path)),
            Op::Set(value) => format!(
                "{:?}",
                doc.set(
                    &attr_path,
                    &NewValue::Expr(from_json(value, DataPolicy::default()).unwrap())
                )
            ),
            Op::Unset => format!("{:?}", doc.unset(&attr_path)),
            Op::Add(value) => format!(
                "{:?}",
                doc.add_item(
                    &attr_path,
                    &NewValue::Expr(from_json(value, DataPolicy::default()).unwrap())
                )
            ),
            Op::Remove(value) => format!(
                "{:?}",
                doc.remove_item(
                    &attr_path,
                    &NewValue::Expr(from_json(value, DataPolicy::default()).unwrap())
                )
            ),
        };
        let (full, skim) = (answers(&document), answers(&skimmed));
        if full != skim {
            return Err(format!(
                "parsed whole: {full}\nskimmed: {skim}\n{}",
                context()
            ));
        }

        let result = match &op {
            Op::Get => {
                let found = document.get(&attr_path);
                match (found, expect_refusal) {
                    (Ok(definition), false) => {
                        // The static reading, where the text fixes the value, must agree too.
                        let want = get(&meaning, &path).unwrap();
                        if let Ok(data) = &definition.data
                            && data != want
                        {
                            return Err(format!(
                                "get --json gave {data}, not {want}\n{}",
                                context()
                            ));
                        }
                        sources.push(Source {
                            name: format!("get-{i}.nix"),
                            text: format!("let lib = {STUB_LIB}; in\n(\n{}\n)\n", definition.value),
                        });
                        expected.push((get(&meaning, &path).cloned().unwrap(), None, context()));
                        continue;
                    }
                    (
                        Err(EditError::DefinedInSeveralPlaces { .. } | EditError::Refused { .. }),
                        true,
                    ) => {
                        refused += 1;
                        continue;
                    }
                    (other, _) => {
                        return Err(format!(
                            "get gave {other:?}, refusal expected: {expect_refusal}\n{}",
                            context()
                        ));
                    }
                }
            }
            Op::Set(value) => {
                let expr = from_json(value, DataPolicy::default()).unwrap();
                document.set(&attr_path, &NewValue::Expr(expr))
            }
            Op::Unset => document.unset(&attr_path),
            Op::Add(value) => {
                let expr = from_json(value, DataPolicy::default()).unwrap();
                document.add_item(&attr_path, &NewValue::Expr(expr))
            }
            Op::Remove(value) => {
                let expr = from_json(value, DataPolicy::default()).unwrap();
                document.remove_item(&attr_path, &NewValue::Expr(expr))
            }
        };
        let edit = match (result, expect_refusal) {
            (Err(EditError::NoSuchItem { .. }), false)
                if matches!(op, Op::Remove(_)) && occurrences == 0 =>
            {
                continue;
            }
            (Ok(_), false) if matches!(op, Op::Remove(_)) && occurrences == 0 => {
                return Err(format!(
                    "removed an item the list does not hold\n{}",
                    context()
                ));
            }
            (Ok(edit), false) => edit,
            (Err(EditError::DefinedInSeveralPlaces { .. }), true) if defining.len() > 1 => {
                refused += 1;
                continue;
            }
            (Err(EditError::Refused { .. }), true) if matches!(op, Op::Add(_) | Op::Remove(_)) => {
                refused += 1;
                continue;
            }
            (other, _) => {
                return Err(format!(
                    "edit gave {other:?}, refusal expected: {expect_refusal}\n{}",
                    context()
                ));
            }
        };
        let new_text = edit.apply(&written.text);
        let touches = |range: &Range<usize>| {
            if edit.range.is_empty() {
                range.start < edit.range.start && edit.range.start < range.end
            } else {
                range.start < edit.range.end && edit.range.start < range.end
            }
        };
        let related = |full: &[String]| full.starts_with(&path) || path.starts_with(full);
        for (full, range) in &written.leaves {
            if !related(full) && touches(range) {
                return Err(format!(
                    "the edit {:?} → {:?} touches the unrelated binding {full:?} at {range:?}\n{}",
                    edit.range,
                    edit.replacement,
                    context()
                ));
            }
        }
        // The item a removal takes (with its comments); every other item stays where it was.
        let removed = match &op {
            Op::Remove(value) => list.and_then(|items| items.iter().position(|item| item == value)),
            _ => None,
        };
        let items_only = matches!(op, Op::Add(_) | Op::Remove(_));
        for (owner, index, range) in &written.items {
            let may_go = if items_only {
                owner == &path && Some(*index) == removed
            } else {
                owner.starts_with(&path)
            };
            if !may_go && touches(range) {
                return Err(format!(
                    "the edit {:?} → {:?} touches the item {:?} of {owner:?}\n{}",
                    edit.range,
                    edit.replacement,
                    &written.text[range.clone()],
                    context()
                ));
            }
        }
        for (owner, index, kind, range) in &written.item_comments {
            let may_go = if items_only {
                owner == &path && Some(*index) == removed
            } else {
                owner.starts_with(&path)
            };
            if !may_go && touches(range) {
                return Err(format!(
                    "the edit {:?} → {:?} touches the comment {:?} ({kind:?}, of item {index} of {owner:?})\n{}",
                    edit.range,
                    edit.replacement,
                    &written.text[range.clone()],
                    context()
                ));
            }
        }
        for (owner, kind, range) in &written.comments {
            let unset = matches!(op, Op::Unset);
            let may_go = if items_only {
                false // a list's own comments stay; its items' are checked above
            } else if owner.starts_with(&path) && owner.len() > path.len() {
                true // inside the replaced or removed value
            } else if owner == &path {
                // The comment lines directly above a binding go with it, but stay when its value changes.
                unset || *kind != CommentKind::Leading
            } else if path.starts_with(owner) {
                // An ancestor: its own comments go when an unset prunes it.
                unset && *kind != CommentKind::Interior
            } else {
                false
            };
            if !may_go && touches(range) {
                return Err(format!(
                    "the edit {:?} → {:?} touches the comment {:?} ({kind:?}, of {owner:?})\n{}",
                    edit.range,
                    edit.replacement,
                    &written.text[range.clone()],
                    context()
                ));
            }
        }
        if let Err(e) = fedigen::nix::verify::check_syntax("edited.nix", &new_text) {
            return Err(format!("{e}\n{}\n--- edited ---\n{new_text}", context()));
        }
        let mut want = meaning.clone();
        let normalise = match &op {
            Op::Set(value) => {
                json_set(&mut want, &path, value.clone());
                None
            }
            // The list with the item added at its end (unless it holds it already), or the item removed.
            Op::Add(value) => {
                tally.added += 1;
                let mut items = list.cloned().unwrap_or_default();
                if !items.contains(value) {
                    items.push(value.clone());
                }
                if !exists && !edit.replacement.contains('[') {
                    return Err(format!("a new list was not written as one\n{}", context()));
                }
                json_set(&mut want, &path, Value::Array(items));
                None
            }
            Op::Remove(_) => {
                tally.removed += 1;
                let mut items = list.cloned().unwrap_or_default();
                items.remove(removed.expect("only an item the list holds is removed"));
                json_set(&mut want, &path, Value::Array(items));
                None
            }
            _ => {
                json_unset(&mut want, &path);
                Some(path.clone())
            }
        };
        sources.push(Source {
            name: format!("edited-{i}.nix"),
            text: evaluable(&new_text),
        });
        expected.push((
            want,
            normalise,
            format!("{}\n--- edited ---\n{new_text}", context()),
        ));
    }
    let results = nix.eval_json(&sources);
    for ((result, (want, normalise, context)), source) in
        results.into_iter().zip(expected).zip(&sources)
    {
        let mut got =
            result.map_err(|e| format!("Nix rejected {}: {e}\n{context}", source.name))?;
        if let Some(path) = normalise {
            prune_empty_on_path(&mut got, &path);
        }
        if got != want {
            return Err(format!(
                "Nix says\n{got}\nbut the edit means\n{want}\n{context}"
            ));
        }
    }
    // Most edits must go through: a generator that only produced refusals would prove nothing.
    if refused * 2 > cases.len() {
        return Err(format!("{refused} of {} edits were refused", cases.len()));
    }
    Ok(tally)
}

fn nix() -> Evaluator {
    Evaluator::locate().expect("these tests need Nix: run scripts/install-test-deps")
}

/// A runner of `cases` batches, each evaluated by one Nix process; failures are not shrunk (each costs a Nix run).
fn batches(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        max_shrink_iters: 0,
        ..Config::default()
    })
}

#[test]
fn random_edits_change_exactly_their_path_and_nothing_else() {
    let nix = nix();
    // 12 batches of 40 edits, each batch evaluated by one Nix process.
    let mut runner = batches(12);
    let total = std::cell::Cell::new(ItemEdits::default());
    runner
        .run(&prop::collection::vec(case(), 40), |cases| {
            let tally = check_batch(&nix, &cases).map_err(TestCaseError::fail)?;
            let sum = total.get();
            total.set(ItemEdits {
                added: sum.added + tally.added,
                removed: sum.removed + tally.removed,
            });
            Ok(())
        })
        .map_err(|e| match e {
            proptest::test_runner::TestError::Fail(reason, _) => reason.to_string(),
            proptest::test_runner::TestError::Abort(reason) => reason.to_string(),
        })
        .unwrap();
    // List items must really have been added and removed (of 480 edits, about a fifth each are tried).
    let ItemEdits { added, removed } = total.get();
    eprintln!("{added} items added and {removed} removed, checked by Nix");
    assert!(
        added >= 30 && removed >= 20,
        "only {added} items added and {removed} removed"
    );
}

#[test]
fn the_writer_writes_what_the_model_means() {
    // The test's own document writer is checked against Nix too, or its oracle would mean nothing.
    let nix = nix();
    let mut runner = batches(3);
    runner
        .run(&prop::collection::vec(case(), 40), |cases| {
            let sources: Vec<_> = cases
                .iter()
                .enumerate()
                .map(|(i, c)| Source {
                    name: format!("doc-{i}.nix"),
                    text: evaluable(&write(&c.root, &c.dice).text),
                })
                .collect();
            for (case, result) in cases.iter().zip(nix.eval_json(&sources)) {
                let got = result.map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(got, Node::Set(case.root.clone()).json());
            }
            Ok(())
        })
        .unwrap();
}

/// Stand-ins for what real-world modules take (`lib`'s module functions, packages, `config`), so that the
/// fixtures evaluate with Nix alone. `mkMerge` merges recursively, as the module system would here. `mkOption`
/// returns its argument: `fedigen edit` reads a path through a call's set-literal argument (`mkOption { … }`,
/// `nixpkgs.lib.nixosSystem { … }`) as a path into that argument, which this stand-in makes the evaluated value.
const FIXTURE_ARGS: &str = r#"
  lib = rec {
    mkIf = c: b: if c then b else { };
    mkDefault = x: x;
    mkForce = x: x;
    recursiveUpdate = a: b: a // builtins.mapAttrs (n: v:
      if builtins.isAttrs v && builtins.isAttrs (a.${n} or null) then recursiveUpdate a.${n} v else v) b;
    mkMerge = builtins.foldl' recursiveUpdate { };
    mkEnableOption = d: { _option = d; };
    mkOption = o: o;
    types.port = "port";
  };
  pkgs = { git = "git"; htop = "htop"; relay = "/nix/store/relay"; };
  config = { services.openssh.enable = true; services.relay = { enable = true; port = 8085; }; };
  nixpkgs.lib.nixosSystem = arguments: arguments;
"#;

/// Nix text evaluating a fixture's text to its value (without `imports`, whose paths are not data); a flake's
/// `outputs` function is called with stand-in inputs.
fn fixture_value(text: &str) -> String {
    format!(
        "let\n{FIXTURE_ARGS}\n  v = (\n{text}\n);\n  m = if builtins.isFunction v then v {{ inherit lib pkgs config; }} else v;\n  r = if m ? outputs then m // {{ outputs = if builtins.isFunction m.outputs then m.outputs {{ self = {{ }}; inherit nixpkgs; }} else m.outputs; }} else m;\nin\nbuiltins.removeAttrs r [ \"imports\" ]\n"
    )
}

/// Every attribute path of a value (sets and leaves), and a new name under every set.
fn value_paths(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, bool)>) {
    if let Value::Object(map) = value {
        let mut fresh = prefix.clone();
        fresh.push("fedigenNew".to_owned());
        out.push((fresh, false));
        for (name, child) in map {
            prefix.push(name.clone());
            out.push((prefix.clone(), true));
            value_paths(child, prefix, out);
            prefix.pop();
        }
    }
}

#[test]
fn random_edits_of_real_world_shaped_files_change_exactly_their_path() {
    let nix = nix();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edit");
    let mut fixtures: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "nix"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 3);
    let totals = std::cell::Cell::new((0, 0));
    for fixture in fixtures {
        let name = fixture.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&fixture).unwrap();
        let original = nix
            .eval_json(&[Source {
                name: name.clone(),
                text: fixture_value(&text),
            }])
            .remove(0)
            .unwrap_or_else(|e| panic!("{name} does not evaluate with the stand-ins: {e}"));
        let mut candidates = Vec::new();
        value_paths(&original, &mut Vec::new(), &mut candidates);
        let mut runner = batches(4);
        let strategy = prop::collection::vec((any::<usize>(), 0u8..5, data()), 40);
        let lists: Vec<_> = candidates
            .iter()
            .filter(|(p, exists)| *exists && get(&original, p).is_some_and(Value::is_array))
            .cloned()
            .collect();
        runner
            .run(&strategy, |picks| {
                let mut sources = Vec::new();
                let mut wanted = Vec::new();
                let (mut done, mut tried) = (0, 0);
                for (pick, op, value) in picks {
                    let (path, exists) = if op >= 3 && pick % 4 != 0 && !lists.is_empty() {
                        lists[pick % lists.len()].clone()
                    } else {
                        candidates[pick % candidates.len()].clone()
                    };
                    // Removing: an item the list holds once (as Nix evaluates it), else adding.
                    let list = get(&original, &path).and_then(Value::as_array);
                    let once = list.and_then(|items| {
                        let item = items.get((pick / 5) % items.len().max(1))?;
                        (items.iter().filter(|i| *i == item).count() == 1).then(|| item.clone())
                    });
                    let (op, value) = match (op, once) {
                        (4, Some(item)) => (4, item),
                        (4, None) => (3, value),
                        (op, _) => (op, value),
                    };
                    let attr_path = EditPath::new(path.clone()).unwrap();
                    let whole = NixFile::parse(&name, &text).unwrap();
                    let skimmed = NixFile::for_path(&name, &text, &attr_path).unwrap();
                    let new = NewValue::Expr(from_json(&value, DataPolicy::default()).unwrap());
                    let context = format!("{name}: op {op} at {path:?} with {value}");
                    if exists && op == 2 {
                        let (a, b) = (whole.get(&attr_path), skimmed.get(&attr_path));
                        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}", context);
                        if let Ok(Definition { data: Ok(data), .. }) = a {
                            prop_assert_eq!(Some(&data), get(&original, &path), "{}", context);
                        }
                        continue;
                    }
                    let edit = |doc: &NixFile| match op {
                        3 => doc.add_item(&attr_path, &new),
                        4 => doc.remove_item(&attr_path, &new),
                        1 if exists => doc.unset(&attr_path),
                        _ => doc.set(&attr_path, &new),
                    };
                    tried += 1;
                    let (a, b) = (edit(&whole), edit(&skimmed));
                    prop_assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}", context);
                    let Ok(edit) = a else {
                        // A refusal says where and why; which paths are refused is the unit tests' business.
                        let message = a.unwrap_err().to_string();
                        prop_assert!(message.starts_with(&name), "{}", message);
                        continue;
                    };
                    done += 1;
                    let edited = edit.apply(&text);
                    let mut want = original.clone();
                    let normalise = if op == 3 {
                        // The item at the end, unless the editor found it there already (an empty edit), which
                        // Nix must then confirm.
                        let mut items = list.cloned().unwrap_or_default();
                        if !edit.replacement.is_empty() {
                            items.push(value.clone());
                        }
                        json_set(&mut want, &path, Value::Array(items));
                        None
                    } else if op == 4 {
                        let mut items = list.cloned().unwrap_or_default();
                        items.retain(|item| *item != value);
                        json_set(&mut want, &path, Value::Array(items));
                        None
                    } else if exists && op == 1 {
                        json_unset(&mut want, &path);
                        Some(path.clone())
                    } else {
                        json_set(&mut want, &path, value.clone());
                        None
                    };
                    sources.push(Source {
                        name: format!("{name} edited at {path:?}"),
                        text: fixture_value(&edited),
                    });
                    wanted.push((
                        want,
                        normalise,
                        format!("{context}\n--- edited ---\n{edited}"),
                    ));
                }
                for (result, (want, normalise, context)) in
                    nix.eval_json(&sources).into_iter().zip(wanted)
                {
                    let mut got =
                        result.map_err(|e| TestCaseError::fail(format!("{e}\n{context}")))?;
                    if let Some(path) = normalise {
                        prune_empty_on_path(&mut got, &path);
                    }
                    prop_assert_eq!(got, want, "{}", context);
                }
                eprintln!("{name}: {done} of {tried} edits went through, the rest refused");
                totals.set((totals.get().0 + done, totals.get().1 + tried));
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{e}"));
    }
    // Edits of files like these must mostly go through (a `mkMerge` file refuses more: a new attribute
    // could go into any of its sets, and one set is often defined in several).
    let (done, tried) = totals.get();
    assert!(
        done * 5 >= tried * 3,
        "only {done} of {tried} edits went through"
    );
}

/// Runs `fedigen edit - ARGS` on `text` given on standard input: its exit status, standard output and error.
fn edit_cli(text: &str, args: &[&str]) -> (i32, String, String) {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedigen"))
        .args(["edit", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn the_command_adds_and_removes_list_items_and_takes_negative_values() {
    let text = "{\n  ports = [\n    80 # http\n    443\n  ];\n  more = [ 1 ] ++ extra;\n}\n";
    // A value beginning with `-` is a value, not an option, without `--`; `--nix` stays an option.
    let (code, out, err) = edit_cli(text, &["set", "x", "-1"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.contains("  x = -1;\n"), "{out}");
    let (code, out, _) = edit_cli(text, &["set", "x", "-1.5"]);
    assert!(code == 0 && out.contains("  x = -1.5;\n"), "{out}");
    let (code, out, _) = edit_cli(text, &["set", "x", "--nix", "pkgs.hello"]);
    assert!(code == 0 && out.contains("  x = pkgs.hello;\n"), "{out}");

    let (code, out, _) = edit_cli(text, &["add", "ports", "-8"]);
    assert_eq!(code, 0);
    assert_eq!(out, text.replace("    443\n", "    443\n    (-8)\n"));
    let (code, out, _) = edit_cli(text, &["remove", "ports", "80"]);
    assert_eq!(code, 0);
    assert_eq!(out, text.replace("    80 # http\n", ""));
    let (code, out, _) = edit_cli(text, &["add", "ports", "443"]);
    assert_eq!((code, out.as_str()), (0, text));

    // An item the list lacks: exit 1; a list built with `++`: exit 2, with where and why.
    let (code, _, err) = edit_cli(text, &["remove", "ports", "8080"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("error: <stdin>:2:11: `ports` holds no item `8080`"),
        "{err}"
    );
    let (code, _, err) = edit_cli(text, &["add", "more", "2"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with("error: <stdin>:6:10: ") && err.contains("concatenation"),
        "{err}"
    );
}
