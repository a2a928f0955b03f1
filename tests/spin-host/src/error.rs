//! The one error type of spin-host: everything that can stop the host from starting or serving.
//!
//! Errors of a single request (a trap, a guest error code) are answered with a 500 and logged,
//! never turned into this type; this type is for the caller of [`crate::spawn`] and the CLI.

use std::path::PathBuf;

/// Why spin-host could not load, start or keep serving an application.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest file could not be read.
    #[error("cannot read manifest {path}: {source}")]
    ReadManifest {
        /// The manifest path as given.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The manifest is not valid TOML or does not fit the schema.
    #[error("invalid manifest {path}: {message}")]
    ParseManifest {
        /// The manifest path as given.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// The manifest uses something valid for Spin that this host does not implement.
    #[error("unsupported in spin-host: {0}")]
    Unsupported(String),
    /// The manifest is inconsistent (what `spin up` would refuse too).
    #[error("invalid application: {0}")]
    Invalid(String),
    /// A variable name, template or value is wrong, or a required variable has no value.
    #[error("variables: {0}")]
    Variables(String),
    /// An `allowed_outbound_hosts` entry cannot be parsed.
    #[error("allowed_outbound_hosts of component `{component}`: {message}")]
    AllowedHost {
        /// The component id.
        component: String,
        /// The offending entry and why.
        message: String,
    },
    /// A component's Wasm file could not be read, compiled or linked.
    #[error("component `{component}`: {message}")]
    Component {
        /// The component id.
        component: String,
        /// What wasmtime said (its whole chain).
        message: String,
    },
    /// The key-value database could not be opened.
    #[error("key-value store: {0}")]
    KeyValue(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tokio runtime or the server thread could not be started.
    #[error("runtime: {0}")]
    Runtime(String),
    /// Command-line usage error.
    #[error("{0}")]
    Usage(String),
}

/// Render a `wasmtime::Error` with its whole cause chain (it does not implement `std::error::Error`).
pub(crate) fn wasm_message(error: &wasmtime::Error) -> String {
    format!("{error:?}")
}
