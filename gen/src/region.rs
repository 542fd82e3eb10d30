//! Generated regions inside hand-written files: the lines between `# fedigen:begin <name>` and
//! `# fedigen:end <name>` belong to `fedigen generate`, everything else to the people who wrote the file.
//!
//! A hand-written `flake.nix` or host configuration often needs one list that follows the templates (the
//! applications, the modules to import, the VM tests). A region lets the generator keep exactly that list
//! current, and `generate --check` report it when stale, without owning (or rewriting) the rest of the file.
//! Markers are found as real comments in the rnix tree, so text that merely looks like a marker inside a
//! string is left alone. The content is laid out at the begin marker's indentation and the whole file must
//! still parse, so a region placed where no list item or binding can go is reported, not written.

use std::ops::Range;

use rnix::SyntaxKind;
use rowan::ast::AstNode;

use crate::nix::verify::{self, VerifyError};
use crate::position::Position;

/// How a region starts: `# fedigen:begin <name>` on a line of its own.
pub(crate) const BEGIN: &str = "# fedigen:begin";

/// How a region ends: `# fedigen:end <name>` on a line of its own.
pub(crate) const END: &str = "# fedigen:end";

/// One region of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    /// What the generator puts there (e.g. `applications`).
    pub name: String,
    /// The begin marker's position, for messages.
    pub position: Position,
    /// The begin marker's indentation in spaces, which the content takes.
    pub indent: usize,
    /// The bytes of the lines between the two markers (what the generator owns).
    pub content: Range<usize>,
}

/// A file's regions are malformed, or their content does not fit where they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionError {
    /// The file does not parse, so its markers cannot be told from text in strings.
    #[error(transparent)]
    Syntax(#[from] VerifyError),
    /// A marker that does not pair up, or a bad name.
    #[error("{file}:{position}: {message}")]
    Marker {
        /// The file.
        file: String,
        /// Where the marker is.
        position: Position,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A region whose name the generator does not know.
    #[error(
        "{file}:{position}: no generator fills a region named `{name}`; known regions: {known}"
    )]
    Unknown {
        /// The file.
        file: String,
        /// Where the begin marker is.
        position: Position,
        /// The name found.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// The filled file no longer parses: the region stands where its content cannot go.
    #[error(
        "{file}:{position}: the region `{name}` holds {}, which cannot stand here (the file would not parse: {message}); move the markers inside {}",
        content.what(),
        content.place()
    )]
    Misplaced {
        /// The file.
        file: String,
        /// Where the begin marker is.
        position: Position,
        /// The region's name.
        name: String,
        /// What the content is.
        content: Content,
        /// The parser's message.
        message: String,
    },
}

/// The regions of a file, in order. Markers must pair up, with the same name, one region at a time.
pub fn find(file: &str, text: &str) -> Result<Vec<Region>, RegionError> {
    let root = verify::parse(file, text)?;
    let mut regions = Vec::new();
    let mut open: Option<(String, Position, usize, usize)> = None;
    for token in root
        .syntax()
        .descendants_with_tokens()
        .filter_map(|element| element.into_token())
        .filter(|token| token.kind() == SyntaxKind::TOKEN_COMMENT)
    {
        let comment = token.text();
        let start = usize::from(token.text_range().start());
        let position = Position::of_offset(text, start);
        let marker = |message: String| RegionError::Marker {
            file: file.to_owned(),
            position,
            message,
        };
        let (is_begin, rest) = if let Some(rest) = comment.strip_prefix(BEGIN) {
            (true, rest)
        } else if let Some(rest) = comment.strip_prefix(END) {
            (false, rest)
        } else {
            continue;
        };
        let name = rest.trim();
        if !rest.starts_with(' ')
            || name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(marker(format!(
                "a region marker is `{BEGIN} <name>` or `{END} <name>` with a name of lowercase letters, digits and `-`; found `{comment}`"
            )));
        }
        let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        if !text[line_start..start].trim().is_empty()
            || !text[start + comment.len()..line_end].trim().is_empty()
        {
            return Err(marker(format!(
                "the marker `{comment}` must stand on a line of its own"
            )));
        }
        match (&open, is_begin) {
            (None, true) => {
                let indent = text[line_start..start]
                    .chars()
                    .filter(|c| *c == ' ')
                    .count();
                let content_start = (line_end + 1).min(text.len());
                open = Some((name.to_owned(), position, indent, content_start));
            }
            (Some((outer, at, _, _)), true) => {
                return Err(marker(format!(
                    "the region `{outer}` opened at {at} is not closed before this one begins; close it with `{END} {outer}`"
                )));
            }
            (None, false) => {
                return Err(marker(format!(
                    "`{comment}` closes no region; open it with `{BEGIN} {name}` above"
                )));
            }
            (Some((opened, at, indent, content_start)), false) => {
                if opened != name {
                    return Err(marker(format!(
                        "`{comment}` closes `{name}`, but the region opened at {at} is `{opened}`"
                    )));
                }
                regions.push(Region {
                    name: opened.clone(),
                    position: *at,
                    indent: *indent,
                    content: *content_start..line_start,
                });
                open = None;
            }
        }
    }
    if let Some((name, position, _, _)) = open {
        return Err(RegionError::Marker {
            file: file.to_owned(),
            position,
            message: format!("the region `{name}` is never closed; add `{END} {name}` after it"),
        });
    }
    Ok(regions)
}

/// What a region holds, so the file can be checked after filling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Items of a list (the markers stand inside `[ … ]`).
    ListItems,
    /// Bindings of an attribute set (the markers stand inside `{ … }`).
    Bindings,
}

impl Content {
    fn what(self) -> &'static str {
        match self {
            Content::ListItems => "list items",
            Content::Bindings => "attribute bindings",
        }
    }

    fn place(self) -> &'static str {
        match self {
            Content::ListItems => "a list `[ … ]`",
            Content::Bindings => "an attribute set `{ … }`",
        }
    }
}

/// The file with every region's lines replaced by `fill(region)`: the content's lines (without indentation; the
/// region's indentation is added), and what kind of content it is. Everything outside the regions is kept
/// byte for byte. The result must parse.
pub fn fill(
    file: &str,
    text: &str,
    mut fill: impl FnMut(&Region) -> Result<(Content, Vec<String>), RegionError>,
) -> Result<String, RegionError> {
    let regions = find(file, text)?;
    let mut filled = Vec::with_capacity(regions.len());
    for region in &regions {
        let (content, lines) = fill(region)?;
        let mut rendered = String::new();
        for line in lines {
            if !line.is_empty() {
                rendered.extend(std::iter::repeat_n(' ', region.indent));
                rendered.push_str(&line);
            }
            rendered.push('\n');
        }
        filled.push((region, content, rendered));
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (region, _, rendered) in &filled {
        out.push_str(&text[copied..region.content.start]);
        out.push_str(rendered);
        copied = region.content.end;
    }
    out.push_str(&text[copied..]);
    if let Err(VerifyError::Syntax { message, .. }) = verify::check_syntax(file, &out) {
        // Name the region that breaks the file: the first one that, filled alone, does not parse.
        let alone = |region: &Region, rendered: &str| {
            let mut text_alone = String::from(&text[..region.content.start]);
            text_alone.push_str(rendered);
            text_alone.push_str(&text[region.content.end..]);
            verify::check_syntax(file, &text_alone).is_err()
        };
        let culprit = filled
            .iter()
            .find(|(region, _, rendered)| alone(region, rendered))
            .or(filled.first());
        if let Some((region, kind, _)) = culprit {
            return Err(RegionError::Misplaced {
                file: file.to_owned(),
                position: region.position,
                name: region.name.clone(),
                content: *kind,
                message,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(lines: &[&str]) -> impl FnMut(&Region) -> Result<(Content, Vec<String>), RegionError> {
        let lines: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        move |_| Ok((Content::ListItems, lines.clone()))
    }

    #[test]
    fn only_the_lines_between_markers_change() {
        let text = "# mine\n{\n  xs = [\n    \"kept\" # a comment\n    # fedigen:begin applications\n    \"old\"\n    # fedigen:end applications\n  ];\n}\n";
        let out = fill("f.nix", text, items(&["\"a\"", "\"b\""])).unwrap();
        assert_eq!(out, text.replace("    \"old\"\n", "    \"a\"\n    \"b\"\n"));
        // Filling again changes nothing.
        assert_eq!(
            fill("f.nix", &out, items(&["\"a\"", "\"b\""])).unwrap(),
            out
        );
    }

    #[test]
    fn markers_inside_strings_are_text() {
        let text = "[\n  ''\n    # fedigen:begin applications\n  ''\n]\n";
        assert_eq!(find("f.nix", text).unwrap(), []);
    }

    #[test]
    fn bad_markers_are_reported_where_they_are() {
        let cases = [
            (
                "[\n  # fedigen:begin a\n]\n",
                "f.nix:2:3: the region `a` is never closed",
            ),
            (
                "[\n  # fedigen:end a\n]\n",
                "f.nix:2:3: `# fedigen:end a` closes no region",
            ),
            (
                "[\n  # fedigen:begin a\n  # fedigen:end b\n]\n",
                "f.nix:3:3: `# fedigen:end b` closes `b`, but the region opened at 2:3 is `a`",
            ),
            (
                "[\n  # fedigen:begin a\n  # fedigen:begin b\n]\n",
                "f.nix:3:3: the region `a` opened at 2:3 is not closed",
            ),
            (
                "[\n  # fedigen:begin A\n]\n",
                "f.nix:2:3: a region marker is",
            ),
            (
                "[ 1 # fedigen:begin a\n  # fedigen:end a\n]\n",
                "f.nix:1:5: the marker `# fedigen:begin a` must stand on a line of its own",
            ),
        ];
        for (text, message) in cases {
            let error = find("f.nix", text).unwrap_err().to_string();
            assert!(error.starts_with(message), "{text:?}: {error}");
        }
    }

    #[test]
    fn content_that_cannot_stand_there_is_refused() {
        let text = "{\n  # fedigen:begin applications\n  # fedigen:end applications\n}\n";
        let error = fill("f.nix", text, items(&["\"a\""]))
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(
                "f.nix:2:3: the region `applications` holds list items, which cannot stand here"
            ),
            "{error}"
        );
    }
}
