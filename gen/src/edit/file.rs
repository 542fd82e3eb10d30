//! The parsed file every lookup and edit works on, and the way from its tree back to the file's bytes.

use std::ops::Range;

use rnix::ast;
use rowan::ast::AstNode;

use super::path::EditPath;
use super::skim;
use super::types::{Edit, EditError};
use crate::nix::verify::{self, VerifyError};
use crate::position::Position;

/// A hand-written Nix file, parsed and ready for lookups and edits. (Not `model::source`'s specification
/// document: this is any Nix file a person maintains.)
pub struct NixFile {
    pub(super) name: String,
    pub(super) text: String,
    /// What rnix parsed: the text itself, or (for one path) the text with what is off the path skimmed, with
    /// the way back to the file's offsets. Every offset taken from the tree goes through it.
    pub(super) tree: skim::Skimmed,
    pub(super) root: ast::Expr,
    /// The only path this document can answer for, when it was skimmed for it.
    pub(super) focus: Option<EditPath>,
}

impl NixFile {
    /// Parses the whole of `text` (the contents of the file `name`, which is used in messages); any path can
    /// then be looked up.
    pub fn parse(name: &str, text: &str) -> Result<Self, EditError> {
        Self::from_tree(name, text, skim::Skimmed::whole(text), None)
    }

    /// Parses `text` for edits of `path` alone: the values of bindings unrelated to the path are skimmed by the
    /// tokenizer instead of parsed (see `skim`), which makes an edit of a large file several times cheaper than
    /// a full parse. Syntax errors inside those values are not looked for (`fedigen nix check` does); lexical
    /// errors anywhere and everything on the path are.
    pub fn for_path(name: &str, text: &str, path: &EditPath) -> Result<Self, EditError> {
        let tree = skim::skim(text, path.names());
        Self::from_tree(name, text, tree, Some(path.clone()))
    }

    pub(super) fn from_tree(
        name: &str,
        text: &str,
        tree: skim::Skimmed,
        focus: Option<EditPath>,
    ) -> Result<Self, EditError> {
        let root = match verify::parse(name, &tree.text) {
            Ok(root) => root,
            // The whole file, so that a syntax error is reported where it is in the file.
            Err(_) if tree.text.len() != text.len() => {
                return Self::from_tree(name, text, skim::Skimmed::whole(text), focus);
            }
            Err(e) => return Err(e.into()),
        };
        let root = root.expr().ok_or_else(|| VerifyError::Syntax {
            file: name.to_owned(),
            position: Position { line: 1, column: 1 },
            message: "the file holds no expression".to_owned(),
        })?;
        Ok(Self {
            name: name.to_owned(),
            text: text.to_owned(),
            tree,
            root,
            focus,
        })
    }

    /// The file's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub(super) fn checked(&self, edit: Edit) -> Result<Edit, EditError> {
        // The smallest set literal around the edit, edited, must parse on its own: the edit stays inside it,
        // and outside it nothing changes. (The tree has the file's structure around the edit.)
        let range =
            self.tree.of_file_offset(edit.range.start)..self.tree.of_file_offset(edit.range.end);
        let enclosing = self
            .root
            .syntax()
            .covering_element(rowan::TextRange::new(
                (range.start as u32).into(),
                (range.end as u32).into(),
            ))
            .ancestors()
            .filter(|node| node.kind() == rnix::SyntaxKind::NODE_ATTR_SET)
            .map(|node| byte_range(&node))
            .find(|set| set.start < range.start && range.end < set.end)
            .unwrap_or(0..self.tree.text.len());
        let mut text = String::from(&self.tree.text[enclosing.start..range.start]);
        text.push_str(&edit.replacement);
        text.push_str(&self.tree.text[range.end..enclosing.end]);
        let parsed = rnix::Root::parse(&text);
        match parsed.errors().first() {
            None => Ok(edit),
            Some(error) => Err(EditError::Broken {
                file: self.name.clone(),
                message: error.to_string(),
            }),
        }
    }

    /// Where a node of the tree starts in the file.
    pub(super) fn start_of(&self, node: &rnix::SyntaxNode) -> usize {
        self.tree
            .file_offset(usize::from(node.text_range().start()), false)
    }

    /// Where a node of the tree ends in the file.
    pub(super) fn end_of(&self, node: &rnix::SyntaxNode) -> usize {
        self.tree
            .file_offset(usize::from(node.text_range().end()), true)
    }

    /// A node's bytes in the file.
    pub(super) fn range_of(&self, node: &rnix::SyntaxNode) -> Range<usize> {
        self.start_of(node)..self.end_of(node)
    }

    pub(super) fn position_of(&self, node: &rnix::SyntaxNode) -> Position {
        Position::of_offset(&self.text, self.start_of(node))
    }

    pub(super) fn refused(
        &self,
        path: &EditPath,
        node: &rnix::SyntaxNode,
        reason: String,
    ) -> EditError {
        EditError::Refused {
            file: self.name.clone(),
            position: self.position_of(node),
            path: path.to_string(),
            reason,
        }
    }
}

pub(super) fn byte_range(node: &rnix::SyntaxNode) -> Range<usize> {
    let range = node.text_range();
    usize::from(range.start())..usize::from(range.end())
}

pub(super) fn abbreviate(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    if first.chars().count() > 40 || first.len() < text.len() {
        format!("{}…", first.chars().take(40).collect::<String>())
    } else {
        first.to_owned()
    }
}
