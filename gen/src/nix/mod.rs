//! Nix text: the syntax model fedigen emits (`ast`), the lexical rules ([`lexical`]), the canonical printer
//! ([`print`](mod@print)), data conversion ([`value`]) and the checks every emitted file passes ([`verify`]).

pub(crate) mod ast;
pub mod lexical;
pub mod literal;
pub mod print;
pub mod value;
pub mod verify;

pub use ast::{
    AttrName, AttrPath, AttrSet, Entry, Expr, Ident, NixString, Param, SourcePath, StrPart,
};
pub use lexical::LexicalError;
