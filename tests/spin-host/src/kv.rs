//! The `default` key-value store, backed by SQLite like Spin's default store, and the host side of
//! `spin:key-value/key-value@3.0.0`.
//!
//! The table layout is Spin's (`spin_key_value(store, key, value)`), in
//! `<kv-dir>/sqlite_key_value.db` or in memory. Spin's default-store limits are enforced here
//! (keys up to 256 bytes, values up to 1 MiB): breaking them, or opening a store the component
//! did not list in `key_value_stores`, answers the interface's `error` variant and never traps.
//! SQLite calls are blocking, so they run on tokio's blocking pool, never on a runtime thread.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension};
use wasmtime::component::{Accessor, FutureReader, HasData, Resource, ResourceTable, StreamReader};

use crate::bindings::spin::key_value::key_value as wit;
use crate::error::Error;

/// Longest key Spin's default store accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value Spin's default store accepts, in bytes (1 MiB).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// How many stores one instance may have open at once (Spin's store table capacity).
pub const MAX_OPEN_STORES: usize = 256;
/// The only store label this host backs.
pub const DEFAULT_STORE: &str = "default";
/// File name of the database inside `--kv-dir` (Spin uses the same name under `.spin/`).
pub const DB_FILE: &str = "sqlite_key_value.db";

/// The SQLite database shared by all instances of the application.
pub struct KvBackend {
    conn: Mutex<Connection>,
    location: Option<PathBuf>,
}

impl std::fmt::Debug for KvBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvBackend").field("location", &self.location).finish_non_exhaustive()
    }
}

impl KvBackend {
    /// Open (creating if needed) the database in `dir`, or an in-memory one when `dir` is `None`.
    pub fn open(dir: Option<&Path>) -> Result<Arc<Self>, Error> {
        let (conn, location) = match dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::KeyValue(format!("cannot create {}: {e}", dir.display())))?;
                let path = dir.join(DB_FILE);
                let conn = Connection::open(&path)
                    .map_err(|e| Error::KeyValue(format!("cannot open {}: {e}", path.display())))?;
                (conn, Some(path))
            }
            None => (Connection::open_in_memory().map_err(|e| Error::KeyValue(e.to_string()))?, None),
        };
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS spin_key_value (
                 store TEXT NOT NULL,
                 key   TEXT NOT NULL,
                 value BLOB NOT NULL,
                 PRIMARY KEY (store, key)
             );",
        )
        .map_err(|e| Error::KeyValue(format!("cannot create table: {e}")))?;
        Ok(Arc::new(Self { conn: Mutex::new(conn), location }))
    }

    /// Where the data lives: the file, or `None` for memory.
    pub fn location(&self) -> Option<&Path> {
        self.location.as_deref()
    }

    fn with_conn<R>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, wit::Error> {
        let conn = self.conn.lock().map_err(|_| wit::Error::Other("key-value database lock poisoned".into()))?;
        f(&conn).map_err(|e| wit::Error::Other(format!("sqlite: {e}")))
    }

    /// Read a value.
    pub fn get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, wit::Error> {
        check_key(key)?;
        self.with_conn(|c| {
            c.prepare_cached("SELECT value FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .query_row((store, key), |row| row.get(0))
                .optional()
        })
    }

    /// Write a value, replacing any previous one.
    pub fn set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), wit::Error> {
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(wit::Error::Other(format!(
                "value of {} bytes exceeds the limit of {MAX_VALUE_BYTES} bytes",
                value.len()
            )));
        }
        self.with_conn(|c| {
            c.prepare_cached(
                "INSERT INTO spin_key_value (store, key, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (store, key) DO UPDATE SET value = excluded.value",
            )?
            .execute((store, key, value))
            .map(drop)
        })
    }

    /// Delete a key (no error when absent).
    pub fn delete(&self, store: &str, key: &str) -> Result<(), wit::Error> {
        check_key(key)?;
        self.with_conn(|c| {
            c.prepare_cached("DELETE FROM spin_key_value WHERE store = ?1 AND key = ?2")?
                .execute((store, key))
                .map(drop)
        })
    }

    /// Whether a key exists.
    pub fn exists(&self, store: &str, key: &str) -> Result<bool, wit::Error> {
        check_key(key)?;
        self.with_conn(|c| {
            c.prepare_cached("SELECT 1 FROM spin_key_value WHERE store = ?1 AND key = ?2")?.exists((store, key))
        })
    }

    /// All keys of a store.
    pub fn keys(&self, store: &str) -> Result<Vec<String>, wit::Error> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached("SELECT key FROM spin_key_value WHERE store = ?1 ORDER BY key")?;
            let rows = stmt.query_map([store], |row| row.get(0))?;
            rows.collect()
        })
    }
}

fn check_key(key: &str) -> Result<(), wit::Error> {
    if key.len() > MAX_KEY_BYTES {
        Err(wit::Error::Other(format!("key of {} bytes exceeds the limit of {MAX_KEY_BYTES} bytes", key.len())))
    } else {
        Ok(())
    }
}

/// The Rust type behind the `spin:key-value/key-value.store` resource.
#[derive(Debug)]
pub struct StoreHandle {
    label: String,
}

/// Per-instance state: which labels the component may open, and how many are open.
#[derive(Debug, Clone)]
pub struct KvState {
    backend: Arc<KvBackend>,
    allowed: Arc<BTreeSet<String>>,
    open: usize,
}

impl KvState {
    /// State for one instance of a component allowed to open `allowed`.
    pub fn new(backend: Arc<KvBackend>, allowed: Arc<BTreeSet<String>>) -> Self {
        Self { backend, allowed, open: 0 }
    }
}

/// What the key-value host functions see of the store's data.
pub struct KvView<'a> {
    /// The per-instance state.
    pub state: &'a mut KvState,
    /// The store's resource table (shared with WASI).
    pub table: &'a mut ResourceTable,
}

/// `HasData` marker for the `spin:key-value` bindings.
pub struct SpinKeyValue;

impl HasData for SpinKeyValue {
    type Data<'a> = KvView<'a>;
}

/// Run a blocking database call off the async runtime.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, wit::Error> + Send + 'static,
) -> wasmtime::Result<Result<R, wit::Error>> {
    tokio::task::spawn_blocking(f).await.map_err(|e| wasmtime::format_err!("key-value task failed: {e}"))
}

/// The backend and label behind an open store handle.
fn resolve<T>(
    accessor: &Accessor<T, SpinKeyValue>,
    store: &Resource<StoreHandle>,
) -> wasmtime::Result<(Arc<KvBackend>, String)> {
    accessor.with(|mut access| {
        let view = access.get();
        let label = view.table.get(store)?.label.clone();
        Ok((Arc::clone(&view.state.backend), label))
    })
}

impl<T> wit::HostStoreWithStore<T> for SpinKeyValue {
    async fn open(
        accessor: &Accessor<T, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<StoreHandle>, wit::Error>> {
        accessor.with(|mut access| {
            let view = access.get();
            if !view.state.allowed.contains(&label) {
                return Ok(Err(wit::Error::AccessDenied));
            }
            if label != DEFAULT_STORE {
                return Ok(Err(wit::Error::NoSuchStore));
            }
            if view.state.open >= MAX_OPEN_STORES {
                return Ok(Err(wit::Error::StoreTableFull));
            }
            let handle = view.table.push(StoreHandle { label })?;
            view.state.open += 1;
            Ok(Ok(handle))
        })
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        store: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit::Error>> {
        let (backend, label) = resolve(accessor, &store)?;
        blocking(move || backend.get(&label, &key)).await
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        store: Resource<StoreHandle>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let (backend, label) = resolve(accessor, &store)?;
        blocking(move || backend.set(&label, &key, &value)).await
    }

    async fn delete(
        accessor: &Accessor<T, Self>,
        store: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let (backend, label) = resolve(accessor, &store)?;
        blocking(move || backend.delete(&label, &key)).await
    }

    async fn exists(
        accessor: &Accessor<T, Self>,
        store: Resource<StoreHandle>,
        key: String,
    ) -> wasmtime::Result<Result<bool, wit::Error>> {
        let (backend, label) = resolve(accessor, &store)?;
        blocking(move || backend.exists(&label, &key)).await
    }

    async fn get_keys(
        accessor: &Accessor<T, Self>,
        store: Resource<StoreHandle>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), wit::Error>>)> {
        let (backend, label) = resolve(accessor, &store)?;
        let (keys, outcome) = match blocking(move || backend.keys(&label)).await? {
            Ok(keys) => (keys, Ok(())),
            Err(e) => (Vec::new(), Err(e)),
        };
        accessor.with(|mut access| {
            let keys = StreamReader::new(&mut access, keys)?;
            let outcome = FutureReader::new(&mut access, async move { Ok::<_, wasmtime::Error>(outcome) })?;
            Ok((keys, outcome))
        })
    }
}

impl wit::HostStore for KvView<'_> {
    fn drop(&mut self, store: Resource<StoreHandle>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        self.state.open = self.state.open.saturating_sub(1);
        Ok(())
    }
}

impl wit::Host for KvView<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_errors_not_panics() {
        let kv = KvBackend::open(None).expect("in-memory db");
        kv.set("default", "k", b"v").expect("small value");
        assert_eq!(kv.get("default", "k").expect("read"), Some(b"v".to_vec()));
        assert_eq!(kv.get("other", "k").expect("read"), None, "stores are separate");
        kv.set("default", &"k".repeat(MAX_KEY_BYTES), b"v").expect("key at the limit");
        assert!(matches!(kv.set("default", &"k".repeat(MAX_KEY_BYTES + 1), b"v"), Err(wit::Error::Other(_))));
        kv.set("default", "big", &vec![0; MAX_VALUE_BYTES]).expect("value at the limit");
        assert!(matches!(kv.set("default", "big", &vec![0; MAX_VALUE_BYTES + 1]), Err(wit::Error::Other(_))));
        assert_eq!(kv.keys("default").expect("keys").len(), 3);
        kv.delete("default", "k").expect("delete");
        kv.delete("default", "k").expect("delete twice is fine");
        assert!(!kv.exists("default", "k").expect("exists"));
    }

    #[test]
    fn persists_in_a_directory() {
        let dir = std::env::temp_dir().join(format!("spin-host-kv-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        KvBackend::open(Some(&dir)).expect("file db").set("default", "k", b"1").expect("set");
        let again = KvBackend::open(Some(&dir)).expect("reopen");
        assert_eq!(again.get("default", "k").expect("get"), Some(b"1".to_vec()));
        assert_eq!(again.location(), Some(dir.join(DB_FILE).as_path()));
        drop(again);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
