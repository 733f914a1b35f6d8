//! Pure types and rules of the registry: no I/O, no HTTP, no SQL.
//!
//! Values of the newtypes here are valid by construction; the API layer converts raw input
//! into them at the boundary and everything behind it can rely on that.

pub mod access;
pub mod address;
pub mod artifact;
pub mod card;
pub mod change;
pub mod compare;
pub mod cursor;
pub mod diff;
pub mod digest;
pub mod document;
pub mod downsample;
pub mod filter;
pub mod guard;
pub mod inputs;
pub mod logged_model;
pub mod metrics;
pub mod names;
pub mod order;
pub mod point_block;
pub mod policy;
#[cfg(test)]
mod properties;
pub mod retention;
pub mod schema;
pub mod signature;
pub mod stage;
pub mod tags;
pub mod time;
pub mod token;
pub mod trust;
pub mod version;
pub mod webhook;

pub use names::{Description, ModelName, Reason, StageName};
pub use tags::{TagFilter, TagPatch, Tags};
pub use version::{Transition, VersionStatus};

#[cfg(test)]
mod tests {
    /// The layering rule: the domain (and the error type it uses) knows no HTTP framework and
    /// no database driver, and nothing of the layers above it. Code before a file's unit tests
    /// is read.
    #[test]
    fn domain_imports_no_http_no_sql_and_no_outer_layer() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![root.join("error.rs")];
        let mut dirs = vec![root.join("domain")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        let forbidden = [
            "axum",
            "sqlx",
            "hyper",
            "tower",
            "crate::api",
            "crate::auth",
            "crate::store",
            "crate::blob",
            "crate::config",
            "crate::AppState",
        ];
        let mut found = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            // Unit tests (the end of a file) may use what they like.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                for word in forbidden {
                    if code.contains(word) {
                        found.push(format!("{}:{}: {word}", file.display(), n + 1));
                    }
                }
            }
        }
        assert!(files.len() > 10, "read {} files", files.len());
        assert!(found.is_empty(), "{found:#?}");
    }
}
