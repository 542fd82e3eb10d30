//! The JSON documents fedigen reads back (a migration job, a storage description): parsed with the JSON path of
//! a type error, validated, and refused with every problem at its JSON path. One place, so both documents
//! report alike.

use std::fmt;

use serde::de::DeserializeOwned;

/// One problem of a document, at a JSON path (`buckets[1].source.key_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: a JSON path from the top of the document (empty for the whole document).
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a document was refused: every problem, each at its JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidDocument {
    /// What the document is, for the message (`migration job`).
    pub kind: &'static str,
    /// The file it came from, for the message.
    pub source: String,
    /// Every problem, in document order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidDocument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} {}:", self.kind, self.source)?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InvalidDocument {}

/// Parses `text` as a `kind` from `source`: a type error at its JSON path, else the problems `check` finds.
pub(crate) fn parse<T: DeserializeOwned>(
    text: &str,
    source: &str,
    kind: &'static str,
    check: impl Fn(&T) -> Vec<Problem>,
) -> Result<T, InvalidDocument> {
    let refuse = |problems| InvalidDocument {
        kind,
        source: source.to_owned(),
        problems,
    };
    let de = &mut serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(de).map_err(|e| {
        refuse(vec![Problem {
            path: json_path(&e.path().to_string()),
            message: e.inner().to_string(),
        }])
    })?;
    let problems = check(&value);
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(refuse(problems))
    }
}

/// serde_path_to_error's path (`nodes[1].id`, `.` for the root) as the messages write it.
fn json_path(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Doc {
        items: Vec<u32>,
    }

    #[test]
    fn a_type_error_is_at_its_path_and_checks_run_after_parsing() {
        let check = |d: &Doc| {
            d.items
                .iter()
                .enumerate()
                .filter(|(_, n)| **n == 0)
                .map(|(i, _)| Problem {
                    path: format!("items[{i}]"),
                    message: "zero".into(),
                })
                .collect()
        };
        let e = parse::<Doc>(r#"{"items": [1, "x"]}"#, "d.json", "document", check).unwrap_err();
        assert_eq!(e.problems[0].path, "items[1]");
        let e = parse::<Doc>(r#"{"items": [1, 0]}"#, "d.json", "document", check).unwrap_err();
        assert_eq!(e.to_string(), "invalid document d.json:\n  items[1]: zero");
        let e = parse::<Doc>("[]", "d.json", "document", check).unwrap_err();
        assert!(e.problems[0].path.is_empty(), "{e}");
        assert!(parse::<Doc>(r#"{"items": [1]}"#, "d.json", "document", check).is_ok());
    }
}
