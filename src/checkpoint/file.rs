//! The file checkpoint store.
