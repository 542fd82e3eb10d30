//! Skimming: the text rnix has to parse for an edit of one path, so that editing a 10,000-line file does not
//! cost a syntax tree of 10,000 lines.
//!
//! rnix's tokenizer is several times faster than building the tree. The skim walks the tokens once, keeping
//! track of which attribute path each binding defines (through nested sets, `lib.mkIf … { }` bodies, function
//! bodies and lists of sets). In each set on the way to the path, a binding off the path is removed, except the
//! last one of each length of prefix it shares with the path (which is where the editor would add a new
//! binding); the kept ones off the path have their value replaced by `null`, and so do `let` bindings. What
//! rnix then parses holds the structure the editor inspects (the sets on the path, the names of every kept
//! binding, every `inherit`, everything under the path) and a map back to the file's offsets, through which
//! every offset taken from the tree goes.
//!
//! Whatever the skim cannot follow it leaves alone: bindings with computed names, and everything when the file
//! has a lexical error or unbalanced brackets (then the whole file is parsed and the error reported as usual).
//! The property tests hold the skimmed and the whole parse to identical answers.

use rnix::SyntaxKind::{self, *};

/// Which attribute path the bindings directly inside a frame define.
#[derive(Debug, Clone, PartialEq)]
enum Context<'a> {
    /// The bindings extend this path, which leads to (or into) the edited path.
    OnPath(Vec<&'a str>),
    /// A binding on the way has a computed name: anything could be on the path, keep everything.
    Unknown,
    /// Nothing here is on the path (`let` bindings, function arguments, values of unrelated bindings).
    Opaque,
}

/// Where a frame's bindings stand in their `name = value;` cycle.
#[derive(Debug)]
enum Binding<'a> {
    /// Before a binding's name (after `{`, `;` or `let`).
    Start,
    /// Reading names from `start`: `Some` for a fixed name, `None` for a computed one; `string` is a quoted
    /// name being read (`Some(None)` once it turns out computed).
    Names {
        start: usize,
        names: Vec<Option<&'a str>>,
        string: Option<Option<&'a str>>,
    },
    /// Inside the value of a binding that started at `binding`: what to do with it, and its text so far.
    Value {
        binding: usize,
        fate: Fate,
        inner: Context<'a>,
        start: Option<usize>,
        end: usize,
    },
    /// In `inherit …;`, or in anything the skim does not read as bindings (patterns, lists, parentheses).
    Other,
}

/// What becomes of a binding in the text rnix parses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// On the path, or unknowable: kept as written.
    Keep,
    /// Not an attribute of the result (a `let` binding): kept, its value replaced.
    Skim,
    /// Off the path after sharing this many names with the rest of it: its value replaced, and the whole
    /// binding blanked unless it is the last one of its set sharing that many (where the editor would put a
    /// new binding: after the last sibling with the longest shared prefix).
    Off(usize),
}

#[derive(Debug)]
struct Frame<'a> {
    /// The token that closes it.
    close: SyntaxKind,
    /// The path its bindings define.
    context: Context<'a>,
    /// Whether `name = value;` bindings stand directly in it (sets and `let`).
    bindings: bool,
    state: Binding<'a>,
    /// `with …;` and `assert …;` whose `;` is still to come at this level.
    pending: usize,
    /// Bindings off the path: how many names they share with the rest of it, and their bytes.
    off: Vec<(usize, usize, usize)>,
}

impl<'a> Frame<'a> {
    fn new(close: SyntaxKind, context: Context<'a>, bindings: bool) -> Self {
        Frame {
            close,
            context,
            bindings,
            state: if bindings {
                Binding::Start
            } else {
                Binding::Other
            },
            pending: 0,
            off: Vec::new(),
        }
    }
}

/// A replacement in the text to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cut {
    /// A value becomes `null` and spaces.
    Null(usize, usize),
    /// A whole binding becomes spaces.
    Blank(usize, usize),
}

impl Cut {
    fn range(self) -> (usize, usize) {
        match self {
            Cut::Null(start, end) | Cut::Blank(start, end) => (start, end),
        }
    }
}

/// The text rnix parses for an edit, and how its offsets map back to the file's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skimmed {
    /// The file without the bindings off the path, and with `null` for the values of the ones kept.
    pub text: String,
    /// Each replacement, in order: the file's bytes and the length of what stands for them (0 or 4).
    pieces: Vec<Piece>,
}

/// One replacement: `original` in the file became `len` bytes at `at` in the skimmed text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    original: std::ops::Range<usize>,
    at: usize,
    len: usize,
}

impl Skimmed {
    /// The file itself, nothing skimmed.
    pub fn whole(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            pieces: Vec::new(),
        }
    }

    /// The file's offset for an offset of the skimmed text. At a removed binding, `end` says which side: the
    /// end of something before it (its start in the file) or the start of something after it (its end).
    pub(crate) fn file_offset(&self, offset: usize, end: bool) -> usize {
        let before = self.pieces.partition_point(|p| {
            let after = p.at + p.len;
            after < offset || (after == offset && (p.len > 0 || !end))
        });
        if let Some(p) = self.pieces.get(before)
            && p.at < offset
        {
            return p.original.start + (offset - p.at); // inside a `null`; never asked in practice
        }
        match before.checked_sub(1).map(|i| &self.pieces[i]) {
            Some(p) => offset - (p.at + p.len) + p.original.end,
            None => offset,
        }
    }

    /// The skimmed text's offset for an offset of the file (one inside a replaced range maps to its start).
    pub(crate) fn of_file_offset(&self, offset: usize) -> usize {
        let before = self.pieces.partition_point(|p| p.original.end <= offset);
        if let Some(p) = self.pieces.get(before)
            && p.original.start < offset
        {
            return p.at;
        }
        match before.checked_sub(1).map(|i| &self.pieces[i]) {
            Some(p) => offset - p.original.end + p.at + p.len,
            None => offset,
        }
    }
}

/// The text to parse for an edit of `path`: `text` without the bindings off the path (all but the last of
/// each shared-prefix length in each set on the path), and with `null` for the values of the others.
pub fn skim(text: &str, path: &[String]) -> Skimmed {
    let Some(mut cuts) = cuts(text, path) else {
        return Skimmed::whole(text);
    };
    // Values end inside out (an inner value's `;` comes first): order by start, outer first.
    cuts.sort_by_key(|cut| {
        let (start, end) = cut.range();
        (start, std::cmp::Reverse(end))
    });
    let mut out = String::with_capacity(text.len() / 4);
    let mut pieces = Vec::with_capacity(cuts.len());
    let mut copied = 0;
    for cut in cuts {
        let (start, end) = cut.range();
        if start < copied {
            continue; // inside a binding or value already replaced
        }
        out.push_str(&text[copied..start]);
        let replacement = match cut {
            Cut::Null(..) => "null",
            Cut::Blank(..) => "",
        };
        pieces.push(Piece {
            original: start..end,
            at: out.len(),
            len: replacement.len(),
        });
        out.push_str(replacement);
        copied = end;
    }
    out.push_str(&text[copied..]);
    Skimmed { text: out, pieces }
}

/// What to replace, or `None` when the skim cannot follow the file (then it is parsed whole).
fn cuts(text: &str, path: &[String]) -> Option<Vec<Cut>> {
    let mut cuts = Vec::new();
    let mut stack = vec![Frame::new(TOKEN_ERROR, Context::OnPath(Vec::new()), false)];
    let mut offset = 0;
    for (kind, token) in rnix::tokenize(text) {
        let start = offset;
        offset += token.len();
        match kind {
            TOKEN_WHITESPACE | TOKEN_COMMENT => continue,
            TOKEN_ERROR => return None,
            _ => {}
        }
        let frame = stack.last_mut().expect("the root frame is never popped");
        if frame.bindings
            && matches!(frame.state, Binding::Start)
            && matches!(
                kind,
                TOKEN_IDENT | TOKEN_STRING_START | TOKEN_INTERPOL_START | TOKEN_OR
            )
        {
            frame.state = Binding::Names {
                start,
                names: Vec::new(),
                string: None,
            };
        }

        // A binding's names, quoted ones (`"example.org"`) included, up to its `=`.
        if let Binding::Names {
            start: binding,
            names,
            string,
        } = &mut frame.state
        {
            let binding = *binding;
            match (kind, string.as_mut()) {
                (TOKEN_STRING_START, None) => *string = Some(Some("")),
                (TOKEN_STRING_CONTENT, Some(content)) => {
                    *content = match content {
                        Some("") if !token.contains('\\') => Some(token),
                        _ => None,
                    }
                }
                (TOKEN_STRING_END, Some(content)) => {
                    names.push(*content);
                    *string = None;
                }
                (TOKEN_INTERPOL_START, Some(content)) => {
                    *content = None;
                    stack.push(Frame::new(TOKEN_INTERPOL_END, Context::Unknown, false));
                }
                (TOKEN_IDENT, None) => names.push(Some(token)),
                (TOKEN_DOT, None) => {}
                (TOKEN_INTERPOL_START, None) => {
                    names.push(None);
                    stack.push(Frame::new(TOKEN_INTERPOL_END, Context::Unknown, false));
                }
                (TOKEN_OR, None) => names.push(None),
                (TOKEN_ASSIGN, None) => {
                    let names = std::mem::take(names);
                    let (fate, inner) = fate(&frame.context, names, path);
                    frame.state = Binding::Value {
                        binding,
                        fate,
                        inner,
                        start: None,
                        end: 0,
                    };
                }
                _ => {
                    // Not a binding after all (a function pattern `{ a, b ? 1, ... }`): read no further here.
                    frame.state = Binding::Other;
                    if frame.context != Context::Unknown {
                        frame.context = Context::Opaque;
                    }
                    generic(&mut stack, &mut cuts, kind, start, offset)?;
                }
            }
            continue;
        }
        generic(&mut stack, &mut cuts, kind, start, offset)?;
    }
    (stack.len() == 1).then_some(cuts)
}

/// Everything but names: values, brackets, `;`.
fn generic<'a>(
    stack: &mut Vec<Frame<'a>>,
    cuts: &mut Vec<Cut>,
    kind: SyntaxKind,
    start: usize,
    offset: usize,
) -> Option<()> {
    let frame = stack.last_mut().expect("the root frame is never popped");
    if let Binding::Value {
        start: value_start,
        end,
        ..
    } = &mut frame.state
        && kind != TOKEN_SEMICOLON
    {
        value_start.get_or_insert(start);
        *end = offset;
    }
    match kind {
        TOKEN_SEMICOLON if frame.pending > 0 => frame.pending -= 1,
        TOKEN_SEMICOLON if frame.bindings => {
            if let Binding::Value {
                binding,
                fate,
                start: Some(value_start),
                end,
                ..
            } = frame.state
            {
                if let Fate::Off(shared) = fate {
                    frame.off.push((shared, binding, offset));
                }
                // A value off the path becomes `null` (which a blanked binding contains anyway).
                if fate != Fate::Keep && end - value_start >= 4 {
                    cuts.push(Cut::Null(value_start, end));
                }
            }
            frame.state = Binding::Start;
        }
        TOKEN_WITH | TOKEN_ASSERT => frame.pending += 1,
        TOKEN_INHERIT if matches!(frame.state, Binding::Start) => frame.state = Binding::Other,
        TOKEN_L_BRACE | TOKEN_LET | TOKEN_L_BRACK | TOKEN_L_PAREN | TOKEN_INTERPOL_START
        | TOKEN_STRING_START => {
            let context = match &frame.state {
                Binding::Value { inner, .. } => inner.clone(),
                _ if frame.bindings => Context::Opaque,
                _ => frame.context.clone(),
            };
            let pushed = match kind {
                TOKEN_L_BRACE => Frame::new(TOKEN_R_BRACE, context, true),
                TOKEN_LET => Frame::new(TOKEN_IN, Context::Opaque, true),
                TOKEN_L_BRACK => Frame::new(TOKEN_R_BRACK, context, false),
                TOKEN_L_PAREN => Frame::new(TOKEN_R_PAREN, context, false),
                TOKEN_INTERPOL_START => Frame::new(TOKEN_INTERPOL_END, context, false),
                _ => Frame::new(TOKEN_STRING_END, context, false),
            };
            stack.push(pushed);
        }
        TOKEN_R_BRACE | TOKEN_R_BRACK | TOKEN_R_PAREN | TOKEN_INTERPOL_END | TOKEN_IN
        | TOKEN_STRING_END => {
            if stack.len() == 1 || stack.last()?.close != kind {
                return None;
            }
            let closed = stack.pop()?;
            // Blank the bindings off the path but the last of each shared-prefix length.
            let mut closed = closed.off;
            closed.sort_by_key(|&(shared, start, _)| (shared, std::cmp::Reverse(start)));
            for (i, &(shared, start, end)) in closed.iter().enumerate() {
                if i > 0 && closed[i - 1].0 == shared {
                    cuts.push(Cut::Blank(start, end));
                }
            }
            // What closed was part of the enclosing frame's current value.
            if let Some(Frame {
                state: Binding::Value { end, .. },
                ..
            }) = stack.last_mut()
            {
                *end = offset;
            }
        }
        _ => {}
    }
    Some(())
}

/// What becomes of a binding with these names standing in `context`, and the context of what its value opens.
fn fate<'a>(
    context: &Context<'a>,
    names: Vec<Option<&'a str>>,
    path: &[String],
) -> (Fate, Context<'a>) {
    let prefix = match context {
        Context::Opaque => return (Fate::Skim, Context::Opaque),
        Context::Unknown => return (Fate::Keep, Context::Unknown),
        Context::OnPath(prefix) => prefix,
    };
    let depth = prefix.len();
    for (i, name) in names.iter().enumerate() {
        let Some(name) = name else {
            return (Fate::Keep, Context::Unknown);
        };
        if path.get(depth + i).is_some_and(|wanted| wanted != name) {
            return (Fate::Off(i), Context::Opaque);
        }
    }
    let mut inner = prefix.clone();
    inner.extend(names.into_iter().flatten());
    (Fate::Keep, Context::OnPath(inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(path: &str) -> Vec<String> {
        path.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn unrelated_bindings_and_values_are_replaced_and_offsets_kept() {
        let text = "{ config, lib ? { x = 1; }, ... }:\nlet\n  big = [ 1 2 3 ];\nin\n{\n  a.b = { c = 1; d = [ 1 2 ]; };\n  e = { f = \"long string\"; }; # comment\n  a.x = lib.mkIf true { y = 2; z = 3333; };\n}\n";
        let skimmed = skim(text, &names("a.x.y"));
        let out = skimmed.text.clone();
        // Every offset maps back: the kept text is where it was.
        for (i, c) in out.char_indices() {
            let at = skimmed.file_offset(i, false);
            let in_null = (i.saturating_sub(3)..=i).any(|j| out[j..].starts_with("null"));
            assert!(text[at..].starts_with(c) || in_null, "{i} → {at}");
        }
        assert!(rnix::Root::parse(&out).errors().is_empty(), "{out}");
        // Off the path: a.b's and e's values, the let binding; on it: a.x and y.
        assert!(out.contains("a.b = null"), "{out}");
        assert!(out.contains("e = null"), "{out}");
        assert!(out.contains("big = null"), "{out}");
        assert!(out.contains("lib ? { x = 1; }"), "{out}");
        assert!(
            out.contains("a.x = lib.mkIf true { y = 2; z = null; };"),
            "{out}"
        );
        assert!(out.contains("# comment"));
    }

    #[test]
    fn only_the_last_sibling_of_each_shared_prefix_stays() {
        // Where a new `a.b.z` would go: after the last binding sharing the most names with it (`a.b.y`).
        let text = "{\n  p = 1;\n  a.b.x = 1;\n  a.c = 2;\n  a.b.y = 3;\n  q = 4;\n  a.d = 5;\n}\n";
        let out = skim(text, &names("a.b.z")).text;
        let kept: Vec<&str> = out
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert_eq!(kept, ["{", "a.b.y = 3;", "q = 4;", "a.d = 5;", "}"]);
    }

    #[test]
    fn computed_names_and_unreadable_files_are_left_alone() {
        let text = "{\n  ${x} = { a = 1111; };\n  \"q${y}\".b = 2222;\n  z = 3333;\n}\n";
        let out = skim(text, &names("a.b")).text;
        assert!(
            out.contains("${x} = { a = 1111; };") && out.contains("\"q${y}\".b = 2222;"),
            "{out}"
        );
        assert!(out.contains("z = null"), "{out}");
        for broken in ["{ a = { b = 1; ; }", "{ a = 1111; } }", "{ a = \"\\\n"] {
            assert_eq!(skim(broken, &names("b")).text, broken);
        }
    }

    #[test]
    fn with_assert_and_let_semicolons_stay_inside_their_value() {
        let text = "{\n  a = with lib; assert true; let q = 1; in { b = 1111; };\n  c = 2222;\n}\n";
        let out = skim(text, &names("c")).text;
        assert!(
            out.contains("a = null") && out.contains("c = 2222;"),
            "{out}"
        );
        let out = skim(text, &names("a.b")).text;
        assert!(
            out.contains("b = 1111") && out.contains("c = null"),
            "{out}"
        );
    }
}
