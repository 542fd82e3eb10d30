//! The structure of a specification, written once: it checks a document (every problem, each with its path)
//! and prints the JSON Schema, so the validator and the schema the panel and editors use cannot disagree.
//!
//! What the structure covers: which fields exist (unknown ones get a "did you mean"), which are required, their
//! types, the formats of strings (RFC 1123 domain names, e-mail addresses, URLs, SSH targets, absolute paths),
//! integer ranges, secret references (a literal where a reference belongs is refused with how to reference it),
//! and, from the manifests, which applications exist and what their settings and secrets are. What needs the
//! whole model (uniqueness, collisions, limits, references between parts) is in `super::check`.
//!
//! One file per job: [`format`] (string formats), `tree` (the structure), `checker` (the walk that collects
//! every problem), [`suggest`] ("did you mean"), `secret_names` (which keys name secrets, shared with
//! `import/`), `canonical` (float canonicalisation) and `schema` (the JSON Schema printer).

mod canonical;
mod checker;
mod format;
mod schema;
pub(crate) mod secret_names;
mod suggest;
mod tree;

pub use canonical::canonicalize;
pub use checker::check;
pub use format::{StrFormat, is_ip_address};
pub use schema::json_schema;
pub use secret_names::{is_secret_like, words};
pub use suggest::suggest;
#[cfg(test)]
pub(crate) use tree::application_fields as tree_application_fields;
pub use tree::{Field, Shape, spec_shape};
