//! [`KeyIndex`]: the mirror's rows by table and primary key.

use foldhash::fast::FixedState;
use hashbrown::HashMap;
use locus_types::{TableId, Value};

use crate::RowId;

/// Rows by table and primary key.
///
/// Integer keys (the common case, and nearly always `auto_inc`, so dense) live per table in a plain vector indexed
/// by the key while keys stay below twice the mirrored row count plus 1024; other integers in a compact map of
/// `u64`s; other keys in a general map. The lookup of every changed row so touches 4 bytes a row, not a hash table.
#[derive(Debug)]
pub(crate) struct KeyIndex {
    /// Per table: `dense[key]` is the row, or [`NO_ROW`].
    dense: Vec<Vec<u32>>,
    ints: HashMap<(TableId, u64), RowId, FixedState>,
    others: HashMap<(TableId, Value), RowId, FixedState>,
    len: usize,
}

const NO_ROW: u32 = u32::MAX;

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            dense: Vec::new(),
            ints: HashMap::with_hasher(FixedState::with_seed(0x1a7e)),
            others: HashMap::with_hasher(FixedState::with_seed(0x1a7f)),
            len: 0,
        }
    }
}

impl KeyIndex {
    /// The integer form of a key (a column has one type, so the cast of an `I64` cannot collide with a `U64`).
    fn int(key: &Value) -> Option<u64> {
        match key {
            Value::U64(v) => Some(*v),
            Value::I64(v) => Some(*v as u64),
            Value::Timestamp(t) => Some(t.0),
            _ => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn dense_slot(&self, table: TableId, k: u64) -> Option<u32> {
        let slot = *self
            .dense
            .get(table.0 as usize)?
            .get(usize::try_from(k).ok()?)?;
        (slot != NO_ROW).then_some(slot)
    }

    pub(crate) fn get(&self, table: TableId, key: &Value) -> Option<RowId> {
        match Self::int(key) {
            Some(k) => self
                .dense_slot(table, k)
                .map(RowId)
                .or_else(|| self.ints.get(&(table, k)).copied()),
            None => self.others.get(&(table, key.clone())).copied(),
        }
    }

    pub(crate) fn insert(&mut self, table: TableId, key: Value, id: RowId) {
        self.len += 1;
        let Some(k) = Self::int(&key) else {
            self.others.insert((table, key), id);
            return;
        };
        let t = table.0 as usize;
        if self.dense.len() <= t {
            self.dense.resize_with(t + 1, Vec::new);
        }
        let dense = &mut self.dense[t];
        let limit = 2 * self.len as u64 + 1024;
        if k < dense.len() as u64 || k < limit {
            let k = k as usize;
            if dense.len() <= k {
                dense.resize((k + 1).max(dense.len() * 2), NO_ROW);
            }
            dense[k] = id.0;
        } else {
            self.ints.insert((table, k), id);
        }
    }

    pub(crate) fn remove(&mut self, table: TableId, key: &Value) -> Option<RowId> {
        let removed = match Self::int(key) {
            Some(k) => match self.dense_slot(table, k) {
                Some(id) => {
                    self.dense[table.0 as usize][k as usize] = NO_ROW;
                    Some(RowId(id))
                }
                None => self.ints.remove(&(table, k)),
            },
            None => self.others.remove(&(table, key.clone())),
        };
        self.len -= usize::from(removed.is_some());
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_index_keeps_dense_sparse_and_other_keys_apart() {
        let mut index = KeyIndex::default();
        let (t0, t1) = (TableId(0), TableId(1));
        index.insert(t0, Value::U64(5), RowId(50));
        index.insert(t1, Value::U64(5), RowId(51));
        // Far beyond twice the row count: the sparse map.
        index.insert(t0, Value::U64(1 << 40), RowId(52));
        index.insert(t0, Value::I64(-3), RowId(53));
        index.insert(t0, Value::String("k".into()), RowId(54));
        assert!(
            index.dense[0].len() < 4096,
            "large keys do not blow up the dense vector"
        );
        assert_eq!(index.len(), 5);
        assert_eq!(index.get(t0, &Value::U64(5)), Some(RowId(50)));
        assert_eq!(index.get(t1, &Value::U64(5)), Some(RowId(51)));
        assert_eq!(index.get(t0, &Value::U64(1 << 40)), Some(RowId(52)));
        assert_eq!(index.get(t0, &Value::I64(-3)), Some(RowId(53)));
        assert_eq!(index.get(t0, &Value::String("k".into())), Some(RowId(54)));
        assert_eq!(index.get(t0, &Value::U64(6)), None);
        assert_eq!(index.remove(t0, &Value::U64(5)), Some(RowId(50)));
        assert_eq!(index.remove(t0, &Value::U64(1 << 40)), Some(RowId(52)));
        assert_eq!(index.remove(t0, &Value::U64(5)), None);
        assert_eq!(index.get(t0, &Value::U64(5)), None);
        assert_eq!(index.get(t1, &Value::U64(5)), Some(RowId(51)));
        assert_eq!(index.len(), 3);
    }
}
