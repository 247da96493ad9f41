//! Decoded values of L1 hits. An L1 hit hands back the same `Bytes` (one allocation shared
//! with the L1 entry) until the entry changes, so the Python object decoded from it can be
//! handed back too, without decoding again: what the original module's `TTLCache` did (it
//! stored the objects). The memo keeps its `Bytes`, so the allocation cannot be reused by
//! another value while its address is compared.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use pyo3::prelude::*;

/// Bound on the memo's entries; past it the memo starts again empty.
const MAX_ENTRIES: usize = 65_536;

struct Decoded {
    bytes: Bytes,
    decoder: usize,
    object: Py<PyAny>,
}

/// category -> key -> the last object decoded for that key.
#[derive(Default)]
pub struct Memo {
    map: Mutex<HashMap<String, HashMap<String, Decoded>>>,
}

impl Memo {
    /// The object for `bytes` read from `category`/`key`, decoded with `loads` unless the
    /// same bytes were decoded by the same function before.
    pub fn decode(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        bytes: Bytes,
        loads: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let decoder = loads.as_ptr() as usize;
        if let Some(obj) = self.lookup(py, category, key, &bytes, decoder) {
            return Ok(obj);
        }
        let object = loads
            .call1((pyo3::types::PyBytes::new(py, &bytes),))?
            .unbind();
        let mut map = self.lock();
        let total: usize = map.values().map(HashMap::len).sum();
        if total >= MAX_ENTRIES {
            map.clear();
        }
        let entry = Decoded {
            bytes,
            decoder,
            object: object.clone_ref(py),
        };
        map.entry(category.to_string())
            .or_default()
            .insert(key.to_string(), entry);
        Ok(object)
    }

    fn lookup(
        &self,
        py: Python<'_>,
        category: &str,
        key: &str,
        bytes: &Bytes,
        decoder: usize,
    ) -> Option<Py<PyAny>> {
        let map = self.lock();
        let d = map.get(category)?.get(key)?;
        let same = d.decoder == decoder
            && d.bytes.len() == bytes.len()
            && d.bytes.as_ptr() == bytes.as_ptr();
        same.then(|| d.object.clone_ref(py))
    }

    /// Forgets a key (after this process changed it) or, with `None`, a whole category.
    pub fn forget(&self, category: &str, key: Option<&str>) {
        let mut map = self.lock();
        match key {
            Some(k) => {
                if let Some(m) = map.get_mut(category) {
                    m.remove(k);
                }
            }
            None => {
                map.remove(category);
            }
        }
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Decoded>>> {
        // A panic while holding it leaves only a memo of decoded values: still valid.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
