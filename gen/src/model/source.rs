//! Specification text → a JSON value and an index of where every key and value is written.
//!
//! Three formats, one model: TOML (hand-written), JSON (what the panel sends) and Nix (a `.nix` file evaluated
//! by the real Nix to JSON). Whatever the format, the rest of the pipeline sees a [`serde_json::Value`] and asks
//! the [`SpecDocument`] for the byte range of a [`FieldPath`] when it reports a problem:
//!
//! - TOML: spans come from `toml`'s own parser (`toml::de::DeTable`, every key and value `Spanned`).
//! - JSON: serde_json parses (and reports syntax errors); a small scanner over the same, already valid, text
//!   then records where every key and value is, and finds duplicate keys, which serde_json silently merges.
//! - Nix: the file is evaluated together with `builtins.unsafeGetAttrPos` for every attribute, so positions
//!   point at the attribute's name in the `.nix` file. Values inside lists and attributes Nix knows no position
//!   for (built by functions in another file) point at the nearest enclosing attribute that has one. When Nix
//!   fails (`throw`, a missing import, a type or syntax error), a second evaluation walks the attributes in
//!   order, announcing each with `builtins.trace`, so the report names the field that failed and its place.
//! - Text that is not UTF-8 is reported at its first invalid byte (line, column and byte offset).

use std::ops::Range;
use std::path::Path;

use serde_json::{Map, Number, Value};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::LoadError;
use super::diagnostic::{Diagnostic, Target, shorten_value};
use super::path::{FieldPath, Step};
use crate::eval::{EvalError, Evaluator};
use crate::position::LineIndex;

/// The input formats, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.toml`: written by hand, the default.
    Toml,
    /// `.json`: what the panel sends.
    Json,
    /// `.nix`: evaluated with the real Nix to JSON.
    Nix,
}

impl Format {
    /// The format of a file, by its extension.
    pub fn of_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "toml" => Some(Self::Toml),
            "json" => Some(Self::Json),
            "nix" => Some(Self::Nix),
            _ => None,
        }
    }
}

/// Where an entry of a specification is written in its source text: its key (absent for list items and the
/// root) and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEntry {
    /// The key's byte range.
    pub key: Option<Range<usize>>,
    /// The value's byte range.
    pub value: Range<usize>,
}

/// Where each path of a document is written: a tree of steps, each step's key held once (a map keyed by whole
/// [`FieldPath`]s held every ancestor's keys again in every path: about 670 bytes an entry, most of a large
/// specification's load; issue #18).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceIndex {
    /// (parent node, step) → child node; node 0 is the root.
    children: std::collections::HashMap<(u32, Step), u32>,
    /// Each node's entry, when its path is written.
    entries: Vec<Option<SourceEntry>>,
    /// How many paths have an entry.
    len: usize,
}

impl SourceIndex {
    /// The node of `path`, if any of its entries or descendants' was inserted.
    fn node(&self, path: &FieldPath) -> Option<u32> {
        let mut node = 0;
        for step in &path.0 {
            node = *self.children.get(&(node, step.clone()))?;
        }
        Some(node)
    }

    /// Where `path` is written, if it is.
    pub fn get(&self, path: &FieldPath) -> Option<&SourceEntry> {
        let node = self.node(path)?;
        self.entries.get(node as usize)?.as_ref()
    }

    /// Records where `path` is written (replacing what was recorded for it).
    pub fn insert(&mut self, path: &FieldPath, entry: SourceEntry) {
        if self.entries.is_empty() {
            self.entries.push(None);
        }
        let mut node = 0;
        for step in &path.0 {
            let next = u32::try_from(self.entries.len()).expect("fewer than 2^32 entries");
            node = *self
                .children
                .entry((node, step.clone()))
                .or_insert_with(|| {
                    self.entries.push(None);
                    next
                });
        }
        let slot = &mut self.entries[node as usize];
        if slot.is_none() {
            self.len += 1;
        }
        *slot = Some(entry);
    }

    /// How many paths are recorded.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no path is recorded.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Index<&FieldPath> for SourceIndex {
    type Output = SourceEntry;

    fn index(&self, path: &FieldPath) -> &SourceEntry {
        self.get(path).expect("the path is recorded")
    }
}

/// A parsed specification: its value, where each part of it is written, and any problem found while parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecDocument {
    /// The file name, as shown in diagnostics.
    pub name: String,
    /// The text positions refer to.
    pub text: String,
    /// The input format.
    pub format: Format,
    /// The specification as JSON.
    pub value: Value,
    /// Where each path is written.
    pub index: SourceIndex,
    /// Problems found while parsing (syntax errors, duplicate keys, values JSON cannot hold).
    pub diagnostics: Vec<Diagnostic>,
    /// What a reader of the diagnostics should know about positions.
    pub note: Option<String>,
}

impl SpecDocument {
    /// Reads a specification file, in the format its extension names. Text that is not UTF-8 is invalid
    /// input: the document then holds one diagnostic at the first invalid byte, and is not evaluated.
    pub fn read(path: &Path) -> Result<Self, LoadError> {
        let format =
            Format::of_path(path).ok_or_else(|| LoadError::UnknownFormat(path.to_owned()))?;
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        let name = path.display().to_string();
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => return Ok(Self::not_utf8(&name, format, e.as_bytes())),
        };
        match format {
            Format::Toml => Ok(Self::toml(&name, &text)),
            Format::Json => Ok(Self::json(&name, &text)),
            Format::Nix => {
                let nix_error = |source| LoadError::Nix {
                    path: path.to_owned(),
                    source,
                };
                let nix = Evaluator::locate().map_err(nix_error)?;
                Self::nix(&nix, path, &name, text).map_err(nix_error)
            }
        }
    }

    /// A document for bytes that are not UTF-8: one diagnostic at the first invalid byte, with its line,
    /// column and byte offset. The text shown is the bytes with invalid sequences replaced (U+FFFD), which
    /// leaves everything before the first one, and so its position, unchanged.
    pub(crate) fn not_utf8(name: &str, format: Format, bytes: &[u8]) -> Self {
        let Err(error) = std::str::from_utf8(bytes) else {
            unreachable!("only called for bytes that are not UTF-8")
        };
        let at = error.valid_up_to();
        let bad = &bytes[at..at + error.error_len().unwrap_or(bytes.len() - at)];
        let text = String::from_utf8_lossy(bytes).into_owned();
        let position = LineIndex::new(&text).positions(&text, &[at])[0];
        let shown: Vec<String> = bad.iter().map(|b| format!("0x{b:02x}")).collect();
        let mut document = Self::empty(name, &text, format);
        let replacement = text[at..].chars().next().map_or(0, char::len_utf8);
        document.syntax_error(
            at..at + replacement,
            format!(
                "the file is not UTF-8 text: invalid byte{} {} at line {}, column {} (byte offset {at})",
                if bad.len() == 1 { "" } else { "s" },
                shown.join(" "),
                position.line,
                position.column,
            ),
        );
        if let Some(d) = document.diagnostics.last_mut() {
            d.label = "not UTF-8".into();
            d.hint = Some(
                "specifications are UTF-8 text; convert the file (e.g. `iconv -f LATIN1 -t UTF-8`) or fix the byte"
                    .into(),
            );
        }
        document
    }

    /// Parses TOML text.
    pub fn toml(name: &str, text: &str) -> Self {
        let mut document = Self::empty(name, text, Format::Toml);
        match DeTable::parse(text) {
            Ok(table) => {
                let root = DeValue::Table(table.into_inner());
                document.value =
                    document.toml_value(&mut FieldPath::root(), None, Spanned::new(0..0, root));
            }
            Err(e) => document.syntax_error(
                e.span().unwrap_or(0..0),
                format!("invalid TOML: {}", e.message().trim_end()),
            ),
        }
        document
    }

    /// Parses JSON text.
    pub fn json(name: &str, text: &str) -> Self {
        let mut document = Self::empty(name, text, Format::Json);
        match serde_json::from_str::<Value>(text) {
            Ok(value) => {
                document.value = value;
                let mut scanner = JsonScanner {
                    text: text.as_bytes(),
                    at: 0,
                    document: &mut document,
                };
                scanner.value(FieldPath::root(), None);
            }
            Err(e) => {
                let offset = LineIndex::new(text).offset_of(text, e.line(), e.column().max(1));
                let message = e.to_string();
                // serde_json appends " at line L column C"; the rendered location says it already.
                let message = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(m, _)| m);
                document.syntax_error(offset..offset, format!("invalid JSON: {message}"));
            }
        }
        document
    }

    /// Evaluates a `.nix` specification with Nix and indexes the attributes' positions in its text.
    ///
    /// When Nix fails (a `throw`, an import of a missing file, a type error, a syntax error), the document
    /// holds one diagnostic naming the field whose evaluation failed, at its place in the file (see
    /// `Self::nix_failure`); `Err` is left for Nix itself failing to run.
    pub fn nix(nix: &Evaluator, path: &Path, name: &str, text: String) -> Result<Self, EvalError> {
        let absolute = std::fs::canonicalize(path).map_err(|e| EvalError::Io(e.to_string()))?;
        let dir = tempfile::Builder::new()
            .prefix("fedigen-spec-")
            .tempdir()
            .map_err(|e| EvalError::Io(e.to_string()))?;
        let mut quoted = String::from("\"");
        crate::nix::lexical::escape_double_quoted(&mut quoted, &absolute.to_string_lossy(), false);
        quoted.push('"');
        let wrapper = format!(
            "let\n  spec = import (/. + {quoted});\n{POSITIONS}in\n{{ value = spec; positions = positions [ ] spec; }}\n"
        );
        let driver = dir.path().join("spec-positions.nix");
        std::fs::write(&driver, wrapper).map_err(|e| EvalError::Io(e.to_string()))?;
        let result = match nix.eval_file_json(&driver) {
            Ok(result) => result,
            Err(EvalError::Nix { message, .. }) => {
                return Self::nix_failure(
                    nix,
                    &absolute,
                    dir.path(),
                    &quoted,
                    name,
                    &text,
                    &message,
                );
            }
            Err(e) => return Err(e),
        };
        let mut document = Self::empty(name, &text, Format::Nix);
        document.value = result.get("value").cloned().unwrap_or(Value::Null);
        let file = absolute.to_string_lossy();
        let lines = LineIndex::new(&text);
        for entry in result
            .get("positions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some((steps, (line, column))) = traced_attribute(entry, &file) else {
                continue;
            };
            let Some(Step::Key(key)) = steps.last() else {
                continue;
            };
            let span = attribute_span(&text, &lines, line, column, key);
            document.index.insert(
                &FieldPath(steps),
                SourceEntry {
                    key: Some(span.clone()),
                    value: span,
                },
            );
        }
        document.note = Some(
            "positions in a .nix specification point at the attribute that holds the value (from `builtins.unsafeGetAttrPos`)"
                .to_owned(),
        );
        Ok(document)
    }

    /// The document of a `.nix` specification Nix failed to evaluate: one diagnostic naming the field whose
    /// evaluation failed, at Nix's own position of the error when that is in this file, else at the
    /// attribute (or the nearest enclosing attribute written in this file), with Nix's message shortened.
    ///
    /// The field is found by evaluating the specification again, walking every attribute and list item in
    /// order and announcing each (its path and `builtins.unsafeGetAttrPos`) with `builtins.trace` before it is
    /// forced: the last announcement before Nix stops is the field that failed. This finds every kind of
    /// failure, including those `builtins.tryEval` cannot catch (`abort`, a missing file, type errors).
    fn nix_failure(
        nix: &Evaluator,
        absolute: &Path,
        dir: &Path,
        quoted: &str,
        name: &str,
        text: &str,
        message: &str,
    ) -> Result<Self, EvalError> {
        let walker = dir.join("spec-walk.nix");
        std::fs::write(
            &walker,
            format!("let\n  spec = import (/. + {quoted});\n{WALK}in\nwalk [ ] spec\n"),
        )
        .map_err(|e| EvalError::Io(e.to_string()))?;
        let traces = match nix.eval_file_json(&walker) {
            Err(EvalError::Nix { message, .. }) => message,
            // The walk forced everything without failing (the failure was in turning the value into JSON,
            // e.g. a function), or Nix did not finish: the field is not known.
            _ => String::new(),
        };
        let file = absolute.to_string_lossy();
        let announced: Vec<Value> = traces
            .lines()
            .filter_map(|l| l.strip_prefix("trace: "))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v.get("p").is_some())
            .collect();
        let path: Vec<Step> = announced
            .last()
            .map(|v| steps_of(&v["p"]))
            .unwrap_or_default();
        // The attribute, or the nearest enclosing one, written in this file.
        let lines = LineIndex::new(text);
        let attribute = announced.iter().rev().find_map(|v| {
            let steps = steps_of(&v["p"]);
            if !path.starts_with(&steps) {
                return None;
            }
            let (steps, (line, column)) = traced_attribute(v, &file)?;
            let Some(Step::Key(key)) = steps.last() else {
                return None;
            };
            Some(attribute_span(text, &lines, line, column, key))
        });
        let (what, nix_position) = nix_message(message, &file, dir, name);
        let span = match nix_position {
            Some((line, column)) => {
                let start = lines.offset_of(text, line, column);
                let word = text[start..]
                    .find(|c: char| !(c.is_alphanumeric() || "_-'.".contains(c)))
                    .unwrap_or(text.len() - start);
                start..start + word.max(1).min(text.len() - start)
            }
            None => attribute.unwrap_or(0..0),
        };
        let path = FieldPath(path);
        let message = if path.is_root() {
            format!("Nix could not evaluate the specification: {what}")
        } else {
            format!("Nix could not evaluate this field: {what}")
        };
        let mut document = Self::empty(name, text, Format::Nix);
        if !path.is_root() {
            document.note = Some(
                "the field is the one Nix was evaluating when it stopped (each attribute of the specification is evaluated in order)"
                    .to_owned(),
            );
        }
        let mut d = Diagnostic::new(path, message, "evaluating this failed").hint(
            "fix this expression; `nix-instantiate --eval --strict --show-trace` on the file shows Nix's own trace",
        );
        d.span = Some(span);
        document.diagnostics.push(d);
        Ok(document)
    }

    /// A document for a value Nix produced without positions (e.g. evaluated in a batch): its text is the
    /// value as pretty-printed JSON, and diagnostics point into that.
    pub fn from_nix_json(name: &str, value: &Value) -> Self {
        let text = serde_json::to_string_pretty(value).expect("JSON values print") + "\n";
        let mut document = Self::json(name, &text);
        document.format = Format::Nix;
        document.note =
            Some("positions refer to the JSON that Nix produced from the .nix file".into());
        document
    }

    fn empty(name: &str, text: &str, format: Format) -> Self {
        let mut index = SourceIndex::default();
        index.insert(
            &FieldPath::root(),
            SourceEntry {
                key: None,
                value: 0..0,
            },
        );
        Self {
            name: name.to_owned(),
            text: text.to_owned(),
            format,
            value: Value::Null,
            index,
            diagnostics: Vec::new(),
            note: None,
        }
    }

    fn syntax_error(&mut self, span: Range<usize>, message: String) {
        let mut d = Diagnostic::new(FieldPath::root(), message, "here");
        d.span = Some(span);
        self.diagnostics.push(d);
    }

    /// The byte range a diagnostic about `path` points at: the entry's key or value, or, for a path that is
    /// not written (a missing field), the key of the nearest ancestor that is.
    pub(crate) fn span(&self, path: &FieldPath, target: Target) -> Range<usize> {
        let mut path = path.clone();
        let mut target = target;
        loop {
            if let Some(entry) = self.index.get(&path) {
                return match (target, &entry.key) {
                    (Target::Key, Some(key)) => key.clone(),
                    // A list item has no key: point at its first line (e.g. `{` or `[[operators]]`).
                    (Target::Key, None) => {
                        let value = &self.text[entry.value.clone()];
                        let first_line = value.find('\n').unwrap_or(value.len());
                        entry.value.start..entry.value.start + first_line
                    }
                    (Target::Value, _) => entry.value.clone(),
                };
            }
            match path.parent() {
                Some(parent) => {
                    path = parent;
                    target = Target::Key;
                }
                None => return 0..0,
            }
        }
    }

    /// Converts a parsed TOML value at `path` (restored on return) and records where it and everything in it
    /// are written. Takes the parsed tree by value so that each part is freed once converted: the parse tree
    /// and the JSON value are not both whole at once.
    fn toml_value(
        &mut self,
        path: &mut FieldPath,
        key: Option<Range<usize>>,
        value: Spanned<DeValue<'_>>,
    ) -> Value {
        let span = value.span();
        self.index.insert(
            path,
            SourceEntry {
                key,
                value: span.clone(),
            },
        );
        match value.into_inner() {
            DeValue::String(s) => Value::String(s.to_string()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Value::from(n),
                Err(_) => {
                    self.diagnostics.push(
                        Diagnostic::new(path.clone(), "integer out of range", "too large")
                            .hint("integers are 64-bit"),
                    );
                    Value::Null
                }
            },
            DeValue::Float(f) => match f.as_str().parse::<f64>().ok().and_then(Number::from_f64) {
                Some(n) => Value::Number(n),
                None => {
                    self.diagnostics.push(
                        Diagnostic::new(
                            path.clone(),
                            "infinite and NaN numbers cannot be used",
                            "not a finite number",
                        )
                        .hint("Nix and JSON have no such numbers; write a finite number"),
                    );
                    Value::Null
                }
            },
            DeValue::Boolean(b) => Value::Bool(b),
            DeValue::Datetime(_) => {
                self.diagnostics.push(
                    Diagnostic::new(
                        path.clone(),
                        "dates and times are not used in specifications",
                        "a TOML date or time",
                    )
                    .hint("quote it if a string is meant"),
                );
                Value::Null
            }
            DeValue::Array(items) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| {
                        path.0.push(Step::Index(i));
                        let value = self.toml_value(path, None, item);
                        path.0.pop();
                        value
                    })
                    .collect(),
            ),
            DeValue::Table(table) => {
                let mut map = Map::new();
                for (k, v) in table {
                    let name = k.get_ref().to_string();
                    path.0.push(Step::Key(name.clone()));
                    let value = self.toml_value(path, Some(k.span()), v);
                    path.0.pop();
                    map.insert(name, value);
                }
                Value::Object(map)
            }
        }
    }
}

/// The Nix function that lists every attribute's path and `builtins.unsafeGetAttrPos`.
const POSITIONS: &str = r#"  positions = path: v:
    if builtins.isAttrs v then
      builtins.concatLists (map (n: [ { path = path ++ [ n ]; pos = builtins.unsafeGetAttrPos n v; } ]
        ++ positions (path ++ [ n ]) v.${n}) (builtins.attrNames v))
    else if builtins.isList v then
      builtins.concatLists (builtins.genList (i: positions (path ++ [ i ]) (builtins.elemAt v i)) (builtins.length v))
    else [ ];
"#;

/// The Nix function that forces every attribute and list item in order, announcing each with `builtins.trace`
/// (its path and `builtins.unsafeGetAttrPos`) before forcing it.
const WALK: &str = r#"  walk = path: v:
    if builtins.isAttrs v then
      builtins.all (n: builtins.trace (builtins.toJSON { p = path ++ [ n ]; pos = builtins.unsafeGetAttrPos n v; })
        (walk (path ++ [ n ]) v.${n})) (builtins.attrNames v)
    else if builtins.isList v then
      builtins.all (i: builtins.trace (builtins.toJSON { p = path ++ [ i ]; pos = null; })
        (walk (path ++ [ i ]) (builtins.elemAt v i))) (builtins.genList (i: i) (builtins.length v))
    else builtins.seq v true;
"#;

/// The steps of a path Nix printed as a JSON list of names and indices.
fn steps_of(path: &Value) -> Vec<Step> {
    path.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| match s {
            Value::String(k) => Some(Step::Key(k.clone())),
            Value::Number(n) => n.as_u64().map(|i| Step::Index(i as usize)),
            _ => None,
        })
        .collect()
}

/// The path and the 1-based line and column of an attribute Nix described as `{ path|p, pos }`, when its
/// position is in `file`.
fn traced_attribute(entry: &Value, file: &str) -> Option<(Vec<Step>, (usize, usize))> {
    let pos = entry.get("pos").filter(|p| !p.is_null())?;
    if pos.get("file").and_then(Value::as_str) != Some(file) {
        return None;
    }
    let line = pos.get("line").and_then(Value::as_u64)?;
    let column = pos.get("column").and_then(Value::as_u64)?;
    let path = entry.get("path").or_else(|| entry.get("p"))?;
    Some((steps_of(path), (line as usize, column as usize)))
}

/// The span of an attribute's own name, from the position Nix gives: the position of the whole attribute path
/// (`machines.app.ssh = …`), so the name is looked for later on that line.
fn attribute_span(
    text: &str,
    lines: &LineIndex,
    line: usize,
    column: usize,
    key: &str,
) -> Range<usize> {
    let start = lines.offset_of(text, line, column);
    let rest = &text[start..];
    let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
    if line.starts_with(key) {
        start..start + key.len()
    } else if let Some(at) = line.find(&format!(".{key}")) {
        start + at + 1..start + at + 1 + key.len()
    } else if let Some(quoted) = line.strip_prefix('"') {
        start..start + quoted.find('"').map_or(1, |i| i + 2)
    } else {
        start..text.ceil_char_boundary((start + 1).min(text.len()))
    }
}

/// Nix's error message in one shortened line (without its `error:` prefix, traces, positions and the
/// `--show-trace` advice; temporary paths replaced), and its position when that is in the specification.
/// A position in another file (an imported one) stays in the message.
fn nix_message(
    message: &str,
    file: &str,
    dir: &Path,
    name: &str,
) -> (String, Option<(usize, usize)>) {
    let mut position = None;
    let mut elsewhere = None;
    let mut parts = Vec::new();
    for line in message.lines().map(str::trim) {
        if line.is_empty()
            || line.starts_with("trace: ")
            || line.starts_with("warning: ")
            || line.starts_with("(use '--show-trace'")
            // Nix's excerpt of the source (`8|     x = "4" + 4;` and its `|   ^` marker): the report shows it.
            || line.starts_with('|')
            || line
                .split_once('|')
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        if let Some(at) = line.strip_prefix("at ") {
            let at = at.strip_suffix(':').unwrap_or(at);
            let mut pieces = at.rsplitn(3, ':');
            let (Some(column), Some(row), Some(path)) =
                (pieces.next(), pieces.next(), pieces.next())
            else {
                continue;
            };
            let (Ok(column), Ok(row)) = (column.parse::<usize>(), row.parse::<usize>()) else {
                continue;
            };
            if path == file {
                position.get_or_insert((row, column));
            } else if !path.starts_with(&dir.to_string_lossy().into_owned()) {
                elsewhere.get_or_insert(format!("{path}:{row}:{column}"));
            }
            continue;
        }
        parts.push(line.strip_prefix("error: ").unwrap_or(line).to_owned());
    }
    let mut what = parts.join(" ");
    if let Some(at) = elsewhere {
        what.push_str(&format!(" (at {at})"));
    }
    // Paths as the user wrote them: the specification by its name, files beside it relative to it.
    let mut what = what
        .replace(file, name)
        .replace(&*dir.to_string_lossy(), "(fedigen's wrapper)");
    if let (Some(spec_dir), Some(name_dir)) = (Path::new(file).parent(), Path::new(name).parent()) {
        let shown = name_dir.to_string_lossy();
        let shown = if shown.is_empty() {
            String::new()
        } else {
            format!("{shown}/")
        };
        what = what.replace(&format!("{}/", spec_dir.to_string_lossy()), &shown);
    }
    (shorten_value(&what, 300), position)
}

/// Records where every key and value of valid JSON text is written.
struct JsonScanner<'a> {
    text: &'a [u8],
    at: usize,
    document: &'a mut SpecDocument,
}

impl JsonScanner<'_> {
    fn skip_whitespace(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    /// Scans the value at the cursor and records it under `path`.
    fn value(&mut self, path: FieldPath, key: Option<Range<usize>>) {
        self.skip_whitespace();
        let start = self.at;
        match self.text.get(self.at) {
            Some(b'{') => {
                self.at += 1;
                let mut seen: std::collections::BTreeSet<String> = Default::default();
                loop {
                    self.skip_whitespace();
                    match self.text.get(self.at) {
                        Some(b'}') => {
                            self.at += 1;
                            break;
                        }
                        Some(b',') => {
                            self.at += 1;
                            continue;
                        }
                        Some(b'"') => {
                            let key_span = self.string();
                            let name: String = serde_json::from_slice(&self.text[key_span.clone()])
                                .unwrap_or_default();
                            self.skip_whitespace();
                            self.at += 1; // the colon
                            let child = path.key(&name);
                            if !seen.insert(name.clone()) {
                                let mut d = Diagnostic::new(
                                    child.clone(),
                                    format!("duplicate key `{name}`"),
                                    "written again here",
                                )
                                .hint("JSON readers keep only one of them; remove one");
                                d.span = Some(key_span.clone());
                                d.related = Some((child.clone(), "first written here".into()));
                                self.document.diagnostics.push(d);
                                // Keep the first position for the path: diagnostics about it point there.
                                let mut skip = JsonScanner {
                                    text: self.text,
                                    at: self.at,
                                    document: &mut SpecDocument::empty("", "", Format::Json),
                                };
                                skip.value(FieldPath::root(), None);
                                self.at = skip.at;
                            } else {
                                self.value(child, Some(key_span));
                            }
                        }
                        _ => break,
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                let mut i = 0;
                loop {
                    self.skip_whitespace();
                    match self.text.get(self.at) {
                        Some(b']') => {
                            self.at += 1;
                            break;
                        }
                        Some(b',') => self.at += 1,
                        Some(_) => {
                            self.value(path.index(i), None);
                            i += 1;
                        }
                        None => break,
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while self
                    .text
                    .get(self.at)
                    .is_some_and(|b| !matches!(b, b',' | b']' | b'}') && !b.is_ascii_whitespace())
                {
                    self.at += 1;
                }
            }
            None => {}
        }
        self.document.index.insert(
            &path,
            SourceEntry {
                key,
                value: start..self.at,
            },
        );
    }

    /// Skips a string at the cursor; returns its range including the quotes.
    fn string(&mut self) -> Range<usize> {
        let start = self.at;
        self.at += 1;
        while let Some(&b) = self.text.get(self.at) {
            self.at += 1;
            match b {
                b'\\' => self.at += 1,
                b'"' => break,
                _ => {}
            }
        }
        start..self.at
    }
}

/// Converts a JSON value to TOML: integers stay integers, other numbers become floats. `null` has no TOML form.
pub(crate) fn json_to_toml(value: &Value) -> Result<toml::Value, String> {
    Ok(match value {
        Value::Null => return Err("null has no TOML form".into()),
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(
                n.as_f64()
                    .ok_or_else(|| format!("the number {n} has no TOML form"))?,
            ),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => {
            toml::Value::Array(items.iter().map(json_to_toml).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), json_to_toml(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_positions_cover_keys_and_values() {
        let text = "{\n  \"a\": {\"b\": [1, \"x\\\"y\"]},\n  \"c\": true\n}\n";
        let d = SpecDocument::json("t.json", text);
        assert!(d.diagnostics.is_empty());
        let at = |p: FieldPath| &text[d.index[&p].value.clone()];
        assert_eq!(at(FieldPath::of(&["a", "b"]).index(1)), "\"x\\\"y\"");
        assert_eq!(at(FieldPath::of(&["c"])), "true");
        assert_eq!(
            &text[d.index[&FieldPath::of(&["a"])].key.clone().unwrap()],
            "\"a\""
        );
    }

    #[test]
    fn text_that_is_not_utf8_is_reported_at_its_first_invalid_byte() {
        // `é` is two bytes: the column counts characters, the offset bytes.
        let d =
            SpecDocument::not_utf8("t.toml", Format::Toml, b"a = 1\nb = \"\xc3\xa9\xff\xfe\"\n");
        assert_eq!(d.diagnostics.len(), 1);
        let message = &d.diagnostics[0].message;
        assert!(
            message.contains("invalid byte 0xff at line 2, column 7 (byte offset 13)"),
            "{message}"
        );
        assert_eq!(d.diagnostics[0].span, Some(13..16));
        assert_eq!(&d.text[13..16], "\u{fffd}");
    }

    #[test]
    fn json_duplicate_keys_are_reported() {
        let d = SpecDocument::json("t.json", r#"{"a": 1, "a": 2}"#);
        assert_eq!(d.diagnostics.len(), 1);
        assert_eq!(d.diagnostics[0].span, Some(9..12));
    }

    #[test]
    fn toml_positions_cover_keys_and_values() {
        let text = "[provider]\nname = \"x\"\n[[operators]]\ndomain = \"a.b\"\n";
        let d = SpecDocument::toml("t.toml", text);
        assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
        let entry = &d.index[&FieldPath::of(&["operators"]).index(0).key("domain")];
        assert_eq!(&text[entry.value.clone()], "\"a.b\"");
        assert_eq!(&text[entry.key.clone().unwrap()], "domain");
    }
}
