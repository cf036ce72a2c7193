//! [`RowSlab`]: a table's row slots, in chunks shared copy-on-write with frozen images of the table.
//!
//! # Layout
//!
//! Slots are grouped in chunks of [`CHUNK`] slots, each chunk behind its own `Arc`; each row is its own
//! `Arc<[u8]>`. [`RowSlab::freeze`] clones the chunks' `Arc`s (one reference count per 1,024 slots), so an image of
//! a table of a million rows costs about a thousand increments, not a pass over the rows.
//!
//! # Invariants
//!
//! - A [`FrozenRows`] never changes. A write to a slot first makes its chunk unshared (`Arc::make_mut`: a chunk an
//!   image still holds is copied, which costs one reference count per row in it, not a copy of the rows), and a
//!   row an image still holds is replaced by a new allocation, never overwritten.
//! - Slots `0..slots` exist (`slots` counts every slot pushed); the last chunk's slots past them are empty.

use std::sync::Arc;

/// Slots per chunk.
pub(crate) const CHUNK: usize = 1024;

type Chunk = [Option<Arc<[u8]>>; CHUNK];

fn empty_chunk() -> Arc<Chunk> {
    Arc::new([const { None }; CHUNK])
}

/// A table's row slots. See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct RowSlab {
    chunks: Vec<Arc<Chunk>>,
    slots: usize,
}

impl RowSlab {
    /// The row in `slot`, if the slot exists and is live.
    pub(crate) fn get(&self, slot: u32) -> Option<&[u8]> {
        let slot = slot as usize;
        self.chunks.get(slot / CHUNK)?[slot % CHUNK].as_deref()
    }

    /// Add an empty slot at the end; returns it.
    pub(crate) fn push_empty(&mut self) -> u32 {
        if self.slots.is_multiple_of(CHUNK) {
            self.chunks.push(empty_chunk());
        }
        self.slots += 1;
        (self.slots - 1) as u32
    }

    /// The slot's entry, its chunk made unshared first.
    fn entry(&mut self, slot: u32) -> &mut Option<Arc<[u8]>> {
        let slot = slot as usize;
        assert!(slot < self.slots, "slot {slot} does not exist");
        &mut Arc::make_mut(&mut self.chunks[slot / CHUNK])[slot % CHUNK]
    }

    /// Store `row` in `slot` (which exists), replacing what it held.
    pub(crate) fn set(&mut self, slot: u32, row: Arc<[u8]>) {
        *self.entry(slot) = Some(row);
    }

    /// Overwrite the live row in `slot` with `row`: in place when no image holds it and the length is the same,
    /// otherwise with a new allocation.
    pub(crate) fn overwrite(&mut self, slot: u32, row: &[u8]) {
        let stored = self.entry(slot).as_mut().expect("live slot");
        match Arc::get_mut(stored) {
            Some(bytes) if bytes.len() == row.len() => bytes.copy_from_slice(row),
            _ => *stored = Arc::from(row),
        }
    }

    /// Empty `slot` (which exists); returns the row it held.
    pub(crate) fn take(&mut self, slot: u32) -> Option<Arc<[u8]>> {
        self.entry(slot).take()
    }

    /// Every slot with its row if live, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, Option<&[u8]>)> + '_ {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .take(self.slots)
            .enumerate()
            .map(|(slot, r)| (slot as u32, r.as_deref()))
    }

    /// Every live row, in slot order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .filter_map(|r| r.as_deref())
    }

    /// An image of the rows as they are now, which later writes do not change; see the [module docs](self).
    pub(crate) fn freeze(&self) -> FrozenRows {
        FrozenRows {
            chunks: self.chunks.clone(),
        }
    }
}

/// The rows of a [`RowSlab`] as they were when [`RowSlab::freeze`] took them.
#[derive(Clone, Debug, Default)]
pub(crate) struct FrozenRows {
    chunks: Vec<Arc<Chunk>>,
}

impl FrozenRows {
    /// Every row, in slot order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .filter_map(|r| r.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u32, len: usize) -> Arc<[u8]> {
        Arc::from(vec![n as u8; len])
    }

    #[test]
    fn an_image_keeps_its_rows_while_the_slab_is_written() {
        let mut slab = RowSlab::default();
        for n in 0..(2 * CHUNK as u32 + 5) {
            let slot = slab.push_empty();
            assert_eq!(slot, n);
            slab.set(slot, row(n, 4));
        }
        let image = slab.freeze();
        let before: Vec<Vec<u8>> = image.rows().map(<[u8]>::to_vec).collect();
        assert_eq!(before, slab.rows().map(<[u8]>::to_vec).collect::<Vec<_>>());
        // Same length (the in-place path when unshared), another length, a delete, a new slot.
        slab.overwrite(3, &[9; 4]);
        slab.overwrite(CHUNK as u32 + 1, &[9; 7]);
        assert_eq!(slab.take(7).as_deref(), Some(&[7u8; 4][..]));
        let slot = slab.push_empty();
        slab.set(slot, row(1, 1));
        assert_eq!(image.rows().map(<[u8]>::to_vec).collect::<Vec<_>>(), before);
        assert_eq!(slab.get(3), Some(&[9u8; 4][..]));
        assert_eq!(slab.get(CHUNK as u32 + 1), Some(&[9u8; 7][..]));
        assert_eq!(slab.get(7), None);
        assert_eq!(slab.get(slot), Some(&[1u8][..]));
        assert_eq!(slab.iter().count(), 2 * CHUNK + 6);
        assert_eq!(slab.rows().count(), 2 * CHUNK + 5);
        drop(image);
        // Unshared: written in place.
        let at = slab.get(3).expect("live").as_ptr();
        slab.overwrite(3, &[8; 4]);
        assert_eq!(slab.get(3).expect("live").as_ptr(), at);
    }
}
