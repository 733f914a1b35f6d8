//! Pure types and rules of the registry: no I/O, no HTTP, no SQL.
//!
//! Values of the newtypes here are valid by construction; the API layer converts raw input
//! into them at the boundary and everything behind it can rely on that.

pub mod access;
pub mod artifact;
pub mod change;
pub mod cursor;
pub mod diff;
pub mod document;
pub mod filter;
pub mod metrics;
pub mod names;
pub mod stage;
pub mod tags;
pub mod time;
pub mod version;

pub use names::{ModelName, StageName};
pub use tags::{TagFilter, TagPatch, Tags};
pub use version::{Transition, VersionStatus};
