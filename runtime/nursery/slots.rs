//! [`Slots`]: a nursery's children by key, the first one kept inline.
//!
//! # State and invariants
//!
//! Key 0 is the inline slot `first`; key `k + 1` is key `k` of the slab `rest`. An insert
//! takes the inline slot when it is free, else a slab key (the slab's own choice). Keys
//! are stable while their entry lives, and iteration goes in key order.
//!
//! Why: a nursery on the per-request path holds one child at a time, and a slab allocates
//! its storage at its first insert; the storage cannot be recycled between nurseries
//! (the entries' type carries the nursery's lifetimes and error type), so one inline slot
//! makes such a nursery's children cost no allocation beyond the child's own.

#![forbid(unsafe_code)]

use slab::Slab;

/// Entries by key, the first inline (see the module docs).
#[derive(Debug)]
pub(super) struct Slots<T> {
    first: Option<T>,
    rest: Slab<T>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            first: None,
            rest: Slab::new(),
        }
    }
}

impl<T> Slots<T> {
    /// Stores `value` and returns its key.
    #[inline]
    pub(super) fn insert(&mut self, value: T) -> usize {
        if self.first.is_none() {
            self.first = Some(value);
            return 0;
        }
        self.rest.insert(value) + 1
    }

    #[inline]
    pub(super) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        match key {
            0 => self.first.as_mut(),
            k => self.rest.get_mut(k - 1),
        }
    }

    /// Removes the entry at `key`, if there is one.
    #[inline]
    pub(super) fn try_remove(&mut self, key: usize) -> Option<T> {
        match key {
            0 => self.first.take(),
            k => self.rest.try_remove(k - 1),
        }
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    #[inline]
    pub(super) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    /// The entries in key order.
    #[inline]
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        let first = self.first.iter().map(|v| (0, v));
        first.chain(self.rest.iter().map(|(k, v)| (k + 1, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::Slots;

    #[test]
    fn keys_are_stable_and_reused_and_iteration_is_in_key_order() {
        let mut s = Slots::default();
        assert!(s.is_empty());
        assert_eq!(s.insert('a'), 0);
        assert_eq!(s.insert('b'), 1);
        assert_eq!(s.insert('c'), 2);
        assert_eq!(s.len(), 3);
        assert_eq!(s.try_remove(0), Some('a'));
        assert_eq!(s.try_remove(0), None);
        assert_eq!(s.get_mut(1), Some(&mut 'b'));
        assert_eq!(s.insert('d'), 0, "the inline slot is taken first");
        assert_eq!(s.try_remove(1), Some('b'));
        assert_eq!(s.insert('e'), 1, "a freed slab key is reused");
        *s.get_mut(2).unwrap() = 'C';
        let all: Vec<(usize, char)> = s.iter().map(|(k, v)| (k, *v)).collect();
        assert_eq!(all, [(0, 'd'), (1, 'e'), (2, 'C')]);
        assert_eq!(s.get_mut(7), None);
        assert_eq!(s.try_remove(7), None);
        for k in 0..3 {
            s.try_remove(k);
        }
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
    }
}
