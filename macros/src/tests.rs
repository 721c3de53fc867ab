//! Unit tests of the expansion functions (placeholder, filled below).
