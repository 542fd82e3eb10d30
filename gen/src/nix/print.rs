//! The canonical printer: writes an [`Expr`] as exactly the text nixfmt (RFC 166 style) gives for it, in one
//! linear pass, so that emitting large files costs about as much as writing them.
//!
//! nixfmt keeps an attribute set or list expanded when a line break follows its opening bracket, and fedigen
//! always expands non-empty ones: the layout of data never depends on line widths, only on structure. The
//! remaining layout rules (where a binding's value starts, how applications and parentheses break) mirror
//! nixfmt's for the shapes below; the property tests compare the printer with `nixfmt_rs` on arbitrary trees.

use super::ast::{AttrPath, AttrSet, Entry, Expr, NixString, Param, StrPart};
use super::lexical;

/// Prints a whole file: `# ` comment lines (the generated-file marker), then the expression and a final newline.
///
/// A file that is one large attribute set is printed in groups of [`GROUP`] bindings on rayon's threads and
/// concatenated: the printer carries no state from one binding to the next but the text itself, so the result
/// is byte for byte the sequential one (`print_file_sequential`; a property test compares them).
pub fn print_file(header: &[String], expr: &Expr) -> String {
    use rayon::prelude::*;
    match split_file(header, expr) {
        Some(split) => {
            let groups: Vec<String> = split.entries.par_chunks(GROUP).map(print_entries).collect();
            split.join(groups.iter().map(String::as_str))
        }
        None => print_file_sequential(header, expr),
    }
}

/// [`print_file`] in one pass on the calling thread: the reference the parallel printer is held to.
pub(crate) fn print_file_sequential(header: &[String], expr: &Expr) -> String {
    let mut printer = Printer {
        out: String::with_capacity(4096),
    };
    for line in header {
        printer.comment_line(line, 0);
    }
    printer.expr(expr, 0);
    printer.out.push('\n');
    printer.out
}

/// How many top-level bindings one parallel task prints (and the emitter verifies). Why 500: large enough that a
/// task's fixed cost (an rnix tree, a string) is negligible, small enough that 2 cores stay balanced on a few
/// thousand bindings and a task's text stays in cache while it is parsed.
pub(crate) const GROUP: usize = 500;

/// A file whose expression is a large attribute set, cut where it can be printed and checked in parallel.
pub(crate) struct Split<'a> {
    /// The text before the first binding: the header comments and the opening brace.
    pub(crate) head: String,
    /// The top-level entries, printed by [`print_entries`] in groups.
    pub(crate) entries: &'a [Entry],
}

impl Split<'_> {
    /// The text after the last binding: the closing brace and the final newline.
    pub(crate) const TAIL: &'static str = "\n}\n";

    /// The whole file from the printed groups, in order.
    pub(crate) fn join<'s>(&self, groups: impl Iterator<Item = &'s str> + Clone) -> String {
        let len = self.head.len() + groups.clone().map(str::len).sum::<usize>() + Self::TAIL.len();
        let mut out = String::with_capacity(len);
        out.push_str(&self.head);
        groups.for_each(|g| out.push_str(g));
        out.push_str(Self::TAIL);
        out
    }
}

/// The parallel cut of a file: `Some` when its expression is an attribute set of at least two groups of
/// bindings (smaller files are not worth a thread).
pub(crate) fn split_file<'a>(header: &[String], expr: &'a Expr) -> Option<Split<'a>> {
    let Expr::Attrs(set) = expr else { return None };
    if set.entries.len() < 2 * GROUP {
        return None;
    }
    let mut printer = Printer { out: String::new() };
    for line in header {
        printer.comment_line(line, 0);
    }
    if set.recursive {
        printer.out.push_str("rec ");
    }
    printer.out.push('{');
    Some(Split {
        head: printer.out,
        entries: &set.entries,
    })
}

/// Top-level bindings as [`print_file`] writes them inside the file's set: each on a new line, indented by two.
pub(crate) fn print_entries(entries: &[Entry]) -> String {
    let mut printer = Printer {
        out: String::with_capacity(entries.len() * 128),
    };
    for entry in entries {
        printer.newline(2);
        printer.entry(entry, 2);
    }
    printer.out
}

/// [`layout_is_exact`] of a set with these entries (for the groups of a [`Split`]).
pub(crate) fn entries_layout_is_exact(entries: &[Entry]) -> bool {
    entries.iter().all(exact_entry)
}

/// Prints one expression, without a trailing newline, as it would stand at the start of a file.
pub fn print_expr(expr: &Expr) -> String {
    print_expr_at(expr, 0)
}

/// Prints one expression as the value of a binding on a line indented by `indent` spaces: continuation lines
/// are indented from there, as nixfmt would lay them out in place (used to edit hand-written files).
pub fn print_expr_at(expr: &Expr, indent: usize) -> String {
    let mut printer = Printer { out: String::new() };
    printer.expr(expr, indent);
    printer.out
}

struct Printer {
    out: String,
}

impl Printer {
    fn indent(&mut self, indent: usize) {
        self.out.extend(std::iter::repeat_n(' ', indent));
    }

    fn newline(&mut self, indent: usize) {
        self.out.push('\n');
        self.indent(indent);
    }

    fn comment_line(&mut self, text: &str, indent: usize) {
        for line in text.split('\n') {
            let line = line.trim_end();
            self.out.push('#');
            if !line.is_empty() {
                self.out.push(' ');
                self.out.push_str(line);
            }
            self.newline(indent);
        }
    }

    /// Writes `expr` at the current position; `indent` is the indentation of the current line, where closing
    /// brackets go.
    fn expr(&mut self, expr: &Expr, indent: usize) {
        match expr {
            Expr::Null => self.out.push_str("null"),
            Expr::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Expr::Int(i) => lexical::write_int(&mut self.out, *i),
            Expr::Float(f) => lexical::write_float(&mut self.out, f.get()),
            Expr::Str(s) => self.string(s, indent),
            Expr::Var(v) => self.out.push_str(v.as_str()),
            Expr::SourcePath(p) => self.out.push_str(p.as_str()),
            Expr::List(items) => self.list(items, indent),
            Expr::Attrs(set) => self.attrs(set, indent),
            Expr::Let(entries, body) => {
                self.out.push_str("let");
                for entry in entries {
                    self.newline(indent + 2);
                    self.entry(entry, indent + 2);
                }
                self.newline(indent);
                self.out.push_str("in");
                self.newline(indent);
                self.expr(body, indent);
            }
            Expr::Lambda(param, body) => self.lambda(param, body, indent),
            Expr::Apply(function, args) => self.apply(function, args, indent),
            Expr::Select(base, path, default) => {
                if matches!(**base, Expr::Int(_) | Expr::Float(_) | Expr::SourcePath(_)) {
                    // `1.a` would lex as the float `1.` followed by `a`, and `./a.nix.b` as one path.
                    self.out.push('(');
                    self.expr(base, indent);
                    self.out.push(')');
                } else {
                    self.operand(base, indent);
                }
                if is_multiline(base) {
                    // nixfmt starts the selection on its own line after a multi-line base.
                    self.newline(indent);
                }
                self.out.push('.');
                self.attr_path(path);
                if let Some(default) = default {
                    self.out.push_str(" or ");
                    self.operand(default, indent);
                }
            }
            Expr::With(scope, body) => self.with(scope, body, indent, false),
        }
    }

    /// `with scope; body`: a multi-line body starts on its own line, unless the `with` is a binding's value
    /// and its body a block, which nixfmt keeps on the line (`x = with lib; {`).
    fn with(&mut self, scope: &Expr, body: &Expr, indent: usize, absorbed: bool) {
        self.out.push_str("with ");
        self.operand(scope, indent);
        self.out.push(';');
        if is_multiline(body) && !(absorbed && opens_block(body)) {
            self.newline(indent);
        } else {
            self.out.push(' ');
        }
        self.expr(body, indent);
    }

    /// An expression in operand position: parenthesised unless it is an atom. A multi-line parenthesised
    /// expression opens on its own line, as nixfmt lays out function arguments.
    fn operand(&mut self, expr: &Expr, indent: usize) {
        if is_atom(expr) {
            self.expr(expr, indent);
        } else if is_multiline(expr) {
            self.out.push('(');
            self.newline(indent + 2);
            self.expr(expr, indent + 2);
            self.newline(indent);
            self.out.push(')');
        } else {
            self.out.push('(');
            self.expr(expr, indent);
            self.out.push(')');
        }
    }

    fn list(&mut self, items: &[Expr], indent: usize) {
        if items.is_empty() {
            self.out.push_str("[ ]");
            return;
        }
        self.out.push('[');
        for item in items {
            self.newline(indent + 2);
            if is_atom(item) || !hugs_parentheses(item) {
                self.operand(item, indent + 2);
            } else {
                // nixfmt keeps a list item's parentheses hugging an application whose last argument opens a block.
                self.out.push('(');
                self.expr(item, indent + 2);
                self.out.push(')');
            }
        }
        self.newline(indent);
        self.out.push(']');
    }

    fn attrs(&mut self, set: &AttrSet, indent: usize) {
        if set.recursive {
            self.out.push_str("rec ");
        }
        if set.entries.is_empty() {
            self.out.push_str("{ }");
            return;
        }
        self.out.push('{');
        for entry in &set.entries {
            self.newline(indent + 2);
            self.entry(entry, indent + 2);
        }
        self.newline(indent);
        self.out.push('}');
    }

    fn entry(&mut self, entry: &Entry, indent: usize) {
        match entry {
            Entry::Binding {
                comment,
                path,
                value,
            } => {
                for line in comment {
                    self.comment_line(line, indent);
                }
                self.attr_path(path);
                if value_starts_on_next_line(value) {
                    self.out.push_str(" =");
                    self.newline(indent + 2);
                    self.expr(value, indent + 2);
                } else {
                    self.out.push_str(" = ");
                    match value {
                        Expr::With(scope, body) => self.with(scope, body, indent, true),
                        _ => self.expr(value, indent),
                    }
                }
                self.out.push(';');
            }
            Entry::Inherit { from, names } => {
                self.out.push_str("inherit");
                if let Some(from) = from {
                    self.out.push_str(" (");
                    self.expr(from, indent);
                    self.out.push(')');
                }
                for name in names {
                    self.out.push(' ');
                    lexical::write_attr_name(&mut self.out, name.as_str());
                }
                self.out.push(';');
            }
        }
    }

    fn attr_path(&mut self, path: &AttrPath) {
        for (i, name) in path.names().iter().enumerate() {
            if i > 0 {
                self.out.push('.');
            }
            lexical::write_attr_name(&mut self.out, name.as_str());
        }
    }

    fn lambda(&mut self, param: &Param, body: &Expr, indent: usize) {
        match param {
            Param::Ident(name) => {
                // A chain `a: b: c:` is written on one line; nixfmt then decides once where its body starts.
                self.out.push_str(name.as_str());
                self.out.push(':');
                let (depth, last) = lambda_chain(body);
                let mut inner = body;
                while let Expr::Lambda(Param::Ident(name), next) = inner {
                    self.out.push(' ');
                    self.out.push_str(name.as_str());
                    self.out.push(':');
                    inner = next;
                }
                if lambda_body_on_next_line(depth, last) {
                    self.newline(indent);
                } else {
                    self.out.push(' ');
                }
                self.expr(last, indent);
            }
            Param::Formals {
                formals,
                ellipsis,
                bind,
            } => {
                if formals.is_empty() {
                    self.out.push_str(if *ellipsis { "{ ... }" } else { "{ }" });
                } else {
                    self.out.push('{');
                    for (name, default) in formals {
                        self.newline(indent + 2);
                        self.out.push_str(name.as_str());
                        if let Some(default) = default {
                            self.out.push_str(" ? ");
                            self.expr(default, indent + 2);
                        }
                        self.out.push(',');
                    }
                    if *ellipsis {
                        self.newline(indent + 2);
                        self.out.push_str("...");
                    }
                    self.newline(indent);
                    self.out.push('}');
                }
                if let Some(bind) = bind {
                    self.out.push('@');
                    self.out.push_str(bind.as_str());
                }
                self.out.push(':');
                if formals.is_empty() && bind.is_some() {
                    // nixfmt reads `{ }@a` as a plain parameter, whose body follows on the same line.
                    self.out.push(' ');
                } else {
                    self.newline(indent);
                }
                self.expr(body, indent);
            }
        }
    }

    fn apply(&mut self, function: &Expr, args: &[Expr], indent: usize) {
        let multiline_args = args.iter().filter(|a| is_multiline(a)).count();
        self.operand(function, indent);
        if multiline_args >= 2 {
            // Several multi-line arguments: nixfmt puts each on its own line.
            for arg in args {
                self.newline(indent + 2);
                self.operand(arg, indent + 2);
            }
        } else {
            for arg in args {
                self.out.push(' ');
                self.operand(arg, indent);
            }
        }
    }

    fn string(&mut self, s: &NixString, indent: usize) {
        if fits_indented(s) {
            self.indented_string(s, indent);
            return;
        }
        self.out.push('"');
        let parts = s.parts();
        for (i, part) in parts.iter().enumerate() {
            match part {
                StrPart::Literal(text) => {
                    let before_interpolation =
                        matches!(parts.get(i + 1), Some(StrPart::Interpolation(_)));
                    lexical::escape_double_quoted(&mut self.out, text, before_interpolation);
                }
                StrPart::Interpolation(e) => self.interpolation(e, indent),
            }
        }
        self.out.push('"');
    }

    fn interpolation(&mut self, expr: &Expr, indent: usize) {
        self.out.push_str("${");
        if is_multiline(expr) && !opens_block(expr) {
            self.newline(indent + 2);
            self.expr(expr, indent + 2);
            self.newline(indent);
        } else {
            self.expr(expr, indent);
        }
        self.out.push('}');
    }

    fn indented_string(&mut self, s: &NixString, indent: usize) {
        self.out.push_str("''");
        self.out.push('\n');
        let mut at_line_start = true;
        let parts = s.parts();
        for (i, part) in parts.iter().enumerate() {
            match part {
                StrPart::Literal(text) => {
                    let before_interpolation =
                        matches!(parts.get(i + 1), Some(StrPart::Interpolation(_)));
                    let mut lines = text.split('\n').peekable();
                    while let Some(line) = lines.next() {
                        if !line.is_empty() {
                            if at_line_start {
                                self.indent(indent + 2);
                            }
                            let last = lines.peek().is_none();
                            lexical::escape_indented(
                                &mut self.out,
                                line,
                                last && before_interpolation,
                            );
                            at_line_start = false;
                        }
                        if lines.peek().is_some() {
                            self.out.push('\n');
                            at_line_start = true;
                        }
                    }
                }
                StrPart::Interpolation(e) => {
                    if at_line_start {
                        self.indent(indent + 2);
                        at_line_start = false;
                    }
                    self.interpolation(e, indent + 2);
                }
            }
        }
        self.indent(indent);
        self.out.push_str("''");
    }
}

/// Whether a string is printed as an indented string: see [`lexical::fits_indented`]. An interpolation
/// counts as ordinary text on its line.
fn fits_indented(s: &NixString) -> bool {
    match s.as_literal() {
        Some(text) => lexical::fits_indented(text),
        None => {
            let mut projected = String::new();
            for part in s.parts() {
                match part {
                    StrPart::Literal(text) => projected.push_str(text),
                    StrPart::Interpolation(e) if !is_multiline(e) => projected.push('x'),
                    StrPart::Interpolation(_) => return false,
                }
            }
            lexical::fits_indented(&projected)
        }
    }
}

/// An application whose only multi-line part is its last argument, a block that can open on the same line.
fn hugs_parentheses(expr: &Expr) -> bool {
    match expr {
        Expr::Apply(function, args) => {
            let (last, rest) = args.split_last().expect("applications have arguments");
            !is_multiline(function) && !rest.iter().any(is_multiline) && opens_block(last)
        }
        _ => !is_multiline(expr),
    }
}

/// Lists, sets and indented strings that open on the current line and close on their own.
fn opens_block(expr: &Expr) -> bool {
    match expr {
        Expr::List(items) => !items.is_empty(),
        Expr::Attrs(set) => !set.entries.is_empty(),
        Expr::Str(s) => fits_indented(s),
        _ => false,
    }
}

/// Atoms need no parentheses as list items, function arguments or select bases.
fn is_atom(expr: &Expr) -> bool {
    match expr {
        Expr::Null
        | Expr::Bool(_)
        | Expr::Str(_)
        | Expr::Var(_)
        | Expr::SourcePath(_)
        | Expr::List(_) => true,
        Expr::Attrs(_) => true,
        // `i64::MIN`, negative zero and subnormals print parenthesised already; other negatives need parentheses.
        Expr::Int(i) => *i >= 0 || *i == i64::MIN,
        Expr::Float(f) => f.get() >= 0.0 || lexical::float_is_expression(f.get()),
        Expr::Select(_, _, default) => default.is_none(),
        Expr::Let(..) | Expr::Lambda(..) | Expr::Apply(..) | Expr::With(..) => false,
    }
}

/// Whether the printed expression spans several lines (decided by structure, never by width).
fn is_multiline(expr: &Expr) -> bool {
    match expr {
        Expr::Null
        | Expr::Bool(_)
        | Expr::Int(_)
        | Expr::Float(_)
        | Expr::Var(_)
        | Expr::SourcePath(_) => false,
        Expr::Str(s) => {
            fits_indented(s)
                || s.parts().iter().any(|p| match p {
                    StrPart::Interpolation(e) => is_multiline(e),
                    StrPart::Literal(_) => false,
                })
        }
        Expr::List(items) => !items.is_empty(),
        Expr::Attrs(set) => !set.entries.is_empty(),
        Expr::Let(..) => true,
        // The body of a function with formals starts on its own line, except after `{ }@a`.
        Expr::Lambda(Param::Formals { formals, bind, .. }, body) => {
            !(formals.is_empty() && bind.is_some()) || is_multiline(body)
        }
        Expr::Lambda(Param::Ident(_), body) => {
            let (depth, last) = lambda_chain(body);
            is_multiline(last) || lambda_body_on_next_line(depth, last)
        }
        Expr::Apply(function, args) => is_multiline(function) || args.iter().any(is_multiline),
        Expr::Select(base, _, default) => {
            is_multiline(base) || default.as_deref().is_some_and(is_multiline)
        }
        Expr::With(scope, body) => is_multiline(scope) || is_multiline(body),
    }
}

/// nixfmt moves a binding's value to the next line (indented) for these shapes, and keeps it after ` = `
/// otherwise.
fn value_starts_on_next_line(value: &Expr) -> bool {
    match value {
        Expr::Let(..) => true,
        Expr::Lambda(Param::Formals { .. }, _) => true,
        Expr::Lambda(Param::Ident(_), body) => {
            let (depth, last) = lambda_chain(body);
            lambda_body_on_next_line(depth, last)
        }
        Expr::Select(_, _, Some(default)) => is_multiline(default),
        Expr::With(_, body) => {
            is_multiline(body) && !matches!(**body, Expr::Attrs(_) | Expr::List(_))
        }
        Expr::Apply(_, args) => args.iter().filter(|a| is_multiline(a)).count() >= 2,
        _ => false,
    }
}

/// The body of a simple lambda `a: body` with any further simple lambdas peeled off (`a: b: c: last`), and the
/// number of parameters in the chain (1 for `a: last`).
fn lambda_chain(body: &Expr) -> (usize, &Expr) {
    let mut depth = 1;
    let mut last = body;
    while let Expr::Lambda(Param::Ident(_), next) = last {
        depth += 1;
        last = next;
    }
    (depth, last)
}

/// Whether nixfmt starts the body of a chain of simple lambdas on its own line (at the lambda's indentation)
/// rather than after the last colon: a body it can absorb (a block) always stays on the line; otherwise the body
/// moves down when it spans several lines, and always after a chain of three or more parameters. The line break
/// also moves the whole lambda to its own line where it is a binding's value.
fn lambda_body_on_next_line(depth: usize, last: &Expr) -> bool {
    !absorbable(last) && (depth > 2 || is_multiline(last))
}

/// Expressions nixfmt absorbs onto the line before them (after `a:` or ` = `): blocks, `with` before a block,
/// and simple lambdas whose chain ends in a block.
fn absorbable(expr: &Expr) -> bool {
    match expr {
        Expr::With(_, body) => opens_block(body),
        Expr::Lambda(Param::Ident(_), body) => {
            let (_, last) = lambda_chain(body);
            opens_block(last)
        }
        _ => opens_block(expr),
    }
}

/// Whether the printer's structural layout is known to be exactly nixfmt's for this tree (as long as no line is
/// wider than nixfmt's width). These are the shapes fedigen generates: data, bindings whose values are blocks or
/// applications ending in a block, `with` and `let`, functions with formals at the top of a file, simple
/// interpolations. Other trees are still printed correctly, and the emitter hands them to nixfmt for layout.
pub fn layout_is_exact(expr: &Expr) -> bool {
    match expr {
        Expr::Lambda(Param::Formals { formals, bind, .. }, body) => {
            !(formals.is_empty() && bind.is_some())
                && formals.iter().all(|(_, default)| {
                    default
                        .as_ref()
                        .is_none_or(|d| !is_multiline(d) && exact(d))
                })
                && exact(body)
        }
        _ => exact(expr),
    }
}

fn exact(expr: &Expr) -> bool {
    match expr {
        Expr::Null
        | Expr::Bool(_)
        | Expr::Int(_)
        | Expr::Float(_)
        | Expr::Var(_)
        | Expr::SourcePath(_) => true,
        Expr::Str(s) => s.parts().iter().all(|p| match p {
            StrPart::Literal(_) => true,
            StrPart::Interpolation(e) => !is_multiline(e) && exact(e),
        }),
        Expr::List(items) => items.iter().all(|item| {
            exact(item) && (is_atom(item) || !is_multiline(item) || hugs_parentheses(item))
        }),
        Expr::Attrs(set) => set.entries.iter().all(exact_entry),
        Expr::Let(entries, body) => entries.iter().all(exact_entry) && exact(body),
        // A function with formals at the end of a chain of simple lambdas is laid out by nixfmt.
        Expr::Lambda(Param::Ident(_), body) => {
            let (_, last) = lambda_chain(body);
            !matches!(last, Expr::Lambda(Param::Formals { .. }, _)) && exact(last)
        }
        Expr::Lambda(Param::Formals { .. }, _) => false,
        Expr::Apply(function, args) => {
            let (last, rest) = args.split_last().expect("applications have arguments");
            // nixfmt lays out `(f x).a [ ] [ … ]` (a select of anything but a name) otherwise: every argument on
            // a line of its own (found by tests/nix_roundtrip.rs).
            (matches!(**function, Expr::Var(_))
                || matches!(&**function, Expr::Select(base, _, None) if matches!(**base, Expr::Var(_))))
                && !is_multiline(function)
                && exact(function)
                && rest.iter().all(|a| !is_multiline(a) && exact(a))
                // Before a block, an empty list or set is no "simple" argument to nixfmt: `x [ ] [ … ]` gets every
                // argument on a line of its own (found by tests/nix_roundtrip.rs).
                && (!is_multiline(last)
                    || (opens_block(last)
                        && !rest.iter().any(|a| matches!(a, Expr::List(_) | Expr::Attrs(_)))))
                && exact(last)
        }
        Expr::Select(base, _, default) => {
            !is_multiline(base)
                && exact(base)
                && default
                    .as_deref()
                    .is_none_or(|d| !is_multiline(d) && exact(d))
        }
        // Only as a binding's value (see `exact_entry`): elsewhere nixfmt's line breaks depend on the context.
        Expr::With(..) => false,
    }
}

fn exact_entry(entry: &Entry) -> bool {
    match entry {
        Entry::Binding { value, .. } => match value {
            // `x = with lib; { … }` stays on the binding's line.
            Expr::With(scope, body) => {
                !is_multiline(scope)
                    && exact(scope)
                    && exact(body)
                    && (opens_block(body) || !is_multiline(body))
            }
            Expr::Lambda(Param::Formals { .. }, _) => false,
            _ => exact(value),
        },
        Entry::Inherit { from, .. } => from.as_ref().is_none_or(|f| !is_multiline(f) && exact(f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nix::ast::Ident;
    use crate::nix::verify::check_canonical;

    fn var(name: &str) -> Expr {
        Expr::var(name).unwrap()
    }

    fn lambda(param: &str, body: Expr) -> Expr {
        Expr::Lambda(Param::Ident(Ident::new(param).unwrap()), Box::new(body))
    }

    fn formals(body: Expr) -> Expr {
        let p = Ident::new("p").unwrap();
        Expr::Lambda(
            Param::Formals {
                formals: vec![(p, None)],
                ellipsis: false,
                bind: None,
            },
            Box::new(body),
        )
    }

    fn set(value: Expr) -> Expr {
        Expr::attrs(vec![Entry::binding(AttrPath::dotted("a").unwrap(), value)])
    }

    /// The case the property test found: nixfmt puts the body of `a:` on its own line when the body is a
    /// multi-line application (it cannot be absorbed onto the `a:` line the way a list or set can).
    #[test]
    fn a_lambda_whose_body_is_a_multiline_application_breaks_after_the_colon() {
        let tree = lambda(
            "a",
            Expr::apply(var("x"), vec![Expr::List(vec![Expr::Null])]),
        );
        assert_eq!(print_file(&[], &tree), "a:\nx [\n  null\n]\n");
        let binding = set(tree);
        assert_eq!(
            print_file(&[], &binding),
            "{\n  a =\n    a:\n    x [\n      null\n    ];\n}\n"
        );
    }

    /// Every lambda body shape (blocks, applications ending in blocks, single-line applications, `let`, nested
    /// simple lambdas of depth 1 to 3) in every context the printer claims to lay out exactly is laid out as
    /// nixfmt lays it out.
    #[test]
    fn lambda_bodies_are_laid_out_as_nixfmt_lays_them_out() {
        let list = Expr::List(vec![Expr::Null]);
        let indented = Expr::string("a\nb\n").unwrap();
        let bodies = [
            var("x"),
            list.clone(),
            set(Expr::Null),
            indented.clone(),
            Expr::List(vec![]),
            Expr::apply(var("x"), vec![var("y")]),
            Expr::apply(var("x"), vec![list.clone()]),
            Expr::apply(var("x"), vec![var("y"), set(Expr::Null)]),
            Expr::apply(var("x"), vec![indented]),
            Expr::apply(var("x"), vec![Expr::List(vec![])]),
            Expr::select_dotted(var("x"), "a").unwrap(),
            Expr::Let(
                vec![Entry::binding(AttrPath::dotted("b").unwrap(), Expr::Null)],
                Box::new(var("x")),
            ),
        ];
        let mut checked = 0;
        for body in bodies {
            let lambdas = [
                lambda("a", body.clone()),
                lambda("a", lambda("b", body.clone())),
                lambda("a", lambda("b", lambda("c", body.clone()))),
                formals(lambda("a", body.clone())),
            ];
            for l in lambdas {
                let contexts = [
                    l.clone(),
                    set(l.clone()),
                    Expr::List(vec![l.clone()]),
                    Expr::apply(var("g"), vec![l.clone()]),
                    Expr::apply(var("g"), vec![l.clone(), var("y")]),
                    Expr::Let(
                        vec![Entry::binding(AttrPath::dotted("b").unwrap(), Expr::Null)],
                        Box::new(l.clone()),
                    ),
                    formals(l.clone()),
                ];
                for tree in contexts {
                    if layout_is_exact(&tree) {
                        let printed = print_file(&[], &tree);
                        if let Err(e) = check_canonical("tree.nix", &printed) {
                            panic!("{e}\n--- fedigen:\n{printed}");
                        }
                        checked += 1;
                    }
                }
            }
        }
        // 186 of the 336 trees are claimed exact (parenthesised lambdas with a block body are left to nixfmt); a
        // change that silently stops claiming them would make this test vacuous.
        assert!(checked >= 180, "only {checked} trees claimed exact");
    }
}
