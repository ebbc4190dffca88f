//! Embedded store on redb. (Being written.)
use std::path::PathBuf;

/// Options of the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub path: PathBuf,
}

pub struct EmbeddedStore;
