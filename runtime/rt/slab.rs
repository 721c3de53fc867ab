//! A minimal slab: stable `usize` keys, O(1) insert and remove, free slots reused.
//!
//! Used for the nursery's children, the scope tree's child links and the reactor's
//! sources. Free slots form an intrusive list through `Vacant` entries, so a slab is one
//! allocation. Invariants: `next_free` heads a list that visits exactly the `Vacant`
//! entries, ending at `entries.len()`; `len` counts the `Occupied` ones.

#![forbid(unsafe_code)]

#[derive(Debug)]
enum Entry<T> {
    Occupied(T),
    /// A free slot; holds the next free key.
    Vacant(usize),
}

#[derive(Debug)]
pub(crate) struct Slab<T> {
    entries: Vec<Entry<T>>,
    next_free: usize,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            next_free: 0,
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn insert(&mut self, value: T) -> usize {
        let key = self.next_free;
        if key == self.entries.len() {
            self.entries.push(Entry::Occupied(value));
            self.next_free = key + 1;
        } else {
            match std::mem::replace(&mut self.entries[key], Entry::Occupied(value)) {
                Entry::Vacant(next) => self.next_free = next,
                Entry::Occupied(_) => unreachable!("the free list only holds vacant slots"),
            }
        }
        self.len += 1;
        key
    }

    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let entry = self.entries.get_mut(key)?;
        if matches!(entry, Entry::Vacant(_)) {
            return None;
        }
        let Entry::Occupied(value) = std::mem::replace(entry, Entry::Vacant(self.next_free)) else {
            unreachable!("checked above")
        };
        self.next_free = key;
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match self.entries.get_mut(key)? {
            Entry::Occupied(value) => Some(value),
            Entry::Vacant(_) => None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(k, e)| match e {
                Entry::Occupied(v) => Some((k, v)),
                Entry::Vacant(_) => None,
            })
    }

    pub(crate) fn drain(&mut self) -> Vec<T> {
        self.next_free = 0;
        self.len = 0;
        self.entries
            .drain(..)
            .filter_map(|e| match e {
                Entry::Occupied(v) => Some(v),
                Entry::Vacant(_) => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Slab;

    #[test]
    fn keys_are_stable_and_reused() {
        let mut s = Slab::default();
        let a = s.insert('a');
        let b = s.insert('b');
        assert_eq!(s.remove(a), Some('a'));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get_mut(b), Some(&mut 'b'));
        assert_eq!(s.insert('c'), a);
        assert_eq!(s.len(), 2);
        assert_eq!(s.drain().len(), 2);
        assert!(s.is_empty());
        assert_eq!(s.insert('d'), 0, "a drained slab starts over");
    }
}
